"""Ground truth from the official NAS-Bench-201 files (``NAS-Bench-201-v1_0-e61699.pth``,
``NAS-Bench-201-v1_1-096897.pth``), read through the ``nas_201_api`` package's own result classes.

We do not use ``NASBench201API``: its ``__init__`` calls ``torch.load`` without ``weights_only=False``
(which fails on torch >= 2.6) and deep-copies the multi-GB dict. Loading takes minutes and many GB of
RAM; export a compact table once (``export_table``) and use that afterwards.
"""
from __future__ import annotations

import sys
from pathlib import Path

import numpy as np

from harness.space import Arch, ArchError

from .base import DATASET_KEYS, DATASETS, EPOCHS, GroundTruth, GroundTruthError, GTQuery, all_queries, as_arch

# our metric -> NB201 setname, per dataset (cifar10 is trained on train+valid: no valid split)
SETNAMES: dict[str, dict[str, str]] = {
    "cifar10-valid": {"train": "train", "valid": "x-valid", "test": "ori-test"},
    "cifar10": {"train": "train", "test": "ori-test"},
    "cifar100": {"train": "train", "valid": "x-valid", "test": "x-test"},
    "ImageNet16-120": {"train": "train", "valid": "x-valid", "test": "x-test"},
}
HPS: dict[int, str] = {12: "less", 200: "full"}  # epochs -> key in arch2infos[i]
REQUIRED_KEYS = ("meta_archs", "arch2infos", "evaluated_indexes")


class OfficialGroundTruth(GroundTruth):
    """Seed-mean accuracies from an official NB201 ``.pth`` file (``ArchResults.get_metrics(is_random=False)``)."""

    def __init__(self, path: "str | Path", verbose: bool = True):
        self.path = Path(path)
        self.source = str(self.path)
        if verbose:
            print(
                f"note: loading the official NAS-Bench-201 file {self.path.name} takes minutes and many GB of RAM; "
                "run `gt export` once and use the compact CSV table afterwards",
                file=sys.stderr,
            )
        data = _load(self.path)
        self._meta = list(data["meta_archs"])
        self._results = self._build_results(data)  # index -> {epochs: ArchResults}
        self._indices = sorted(self._results)
        self._archs = [self._parse(i) for i in self._indices]
        self._row = {a: k for k, a in enumerate(self._archs)}
        if len(self._row) != len(self._archs):
            raise GroundTruthError(f"{self.path}: 'meta_archs' lists the same architecture twice")
        self._available = self._scan()
        self._cache: dict[str, np.ndarray] = {}

    # ---- loading ---------------------------------------------------------------------------------
    def _build_results(self, data: dict) -> dict:
        from nas_201_api import ArchResults  # lazy: pulls in torch

        results = {}
        infos = data["arch2infos"]
        for index in sorted(infos):
            entry = infos.pop(index)  # pop so the raw weights can be freed as we go
            try:
                by_epochs = {ep: ArchResults.create_from_state_dict(entry[hp]) for ep, hp in HPS.items()}
            except Exception as exc:  # a malformed record; name it instead of a bare KeyError/AssertionError
                raise GroundTruthError(
                    f"{self.path}: arch2infos[{index}] is not an NB201 record "
                    f"(expected {{'less': ArchResults state, 'full': ArchResults state}}): {exc!r}"
                ) from exc
            for res in by_epochs.values():
                res.clear_params()  # network weights are most of the file; we never use them
            results[int(index)] = by_epochs
        return results

    def _parse(self, index: int) -> Arch:
        if not 0 <= index < len(self._meta):
            raise GroundTruthError(f"{self.path}: arch2infos has index {index} but meta_archs has {len(self._meta)} entries")
        try:
            return Arch.from_str(self._meta[index])
        except ArchError as exc:
            raise GroundTruthError(f"{self.path}: meta_archs[{index}]: {exc}") from exc

    def _scan(self) -> list[GTQuery]:
        """Which queries the file holds: a (dataset, setname, hp) present for at least one architecture."""
        found: set[tuple[str, str, int]] = set()
        for by_epochs in self._results.values():
            for ep, res in by_epochs.items():
                for ds in res.get_dataset_names():
                    for seed in res.dataset_seed[ds]:
                        trial = res.all_results[(ds, seed)]
                        names = set(trial.get_eval_set())
                        if trial.train_acc1es is not None:
                            names.add("train")
                        found.update((ds, name, ep) for name in names)
        return [q for q in all_queries() if (q.dataset, SETNAMES[q.dataset][q.metric], q.epochs) in found]

    # ---- GroundTruth interface -------------------------------------------------------------------
    def queries(self) -> list[GTQuery]:
        return list(self._available)

    def _column(self, q: GTQuery) -> np.ndarray:
        if q.key not in self._cache:
            self._cache[q.key] = np.array([self._value(i, q) for i in self._indices], dtype=np.float64)
        return self._cache[q.key]

    def _value(self, index: int, q: GTQuery) -> float:
        res = self._results[index][q.epochs]
        if q.dataset not in res.dataset_seed or not res.dataset_seed[q.dataset]:
            return np.nan
        try:
            # is_random=False: the mean over all seeds (True would pick one seed at random)
            acc = res.get_metrics(q.dataset, SETNAMES[q.dataset][q.metric], is_random=False)["accuracy"]
        except (KeyError, AssertionError, TypeError, IndexError):
            return np.nan  # this arch lacks the split or epoch record: reported as missing by query()
        return np.nan if acc is None else float(acc)

    def nb201_index(self, arch: "Arch | str") -> int | None:
        return self._indices[self._position(arch)]

    def arch_results(self, arch: "Arch | str", epochs: int):
        """The package's ``ArchResults`` (weights cleared) for per-seed or per-epoch detail."""
        if epochs not in HPS:
            raise GroundTruthError(f"unknown epochs {epochs!r}; valid epochs: {', '.join(map(str, EPOCHS))}")
        return self._results[self.nb201_index(arch)][epochs]

    def costs(self, arch: "Arch | str", dataset: str = "cifar10") -> dict[str, float]:
        """``params_mb`` (millions of parameters) and ``flops_mb`` (MFLOPs) from the 200-epoch record."""
        if dataset not in DATASETS:
            raise GroundTruthError(f"unknown dataset {dataset!r}; valid values: {', '.join(DATASETS)}")
        res = self._results[self.nb201_index(arch)][200]
        if dataset not in res.dataset_seed:
            raise GroundTruthError(f"{self.source} has no compute costs on {dataset} for {as_arch(arch)}")
        info = res.get_compute_costs(dataset)
        return {"params_mb": float(info["params"]), "flops_mb": float(info["flops"])}

    def extra_columns(self) -> dict[str, np.ndarray]:
        out = {"params_mb_cifar10": [], "flops_mb_cifar10": []}
        for arch in self._archs:
            try:
                c = self.costs(arch, "cifar10")
            except GroundTruthError:
                c = {"params_mb": np.nan, "flops_mb": np.nan}
            out["params_mb_cifar10"].append(c["params_mb"])
            out["flops_mb_cifar10"].append(c["flops_mb"])
        for ds in DATASETS:
            for ep in EPOCHS:
                counts = [len(self._results[i][ep].dataset_seed.get(ds, ())) for i in self._indices]
                if any(counts):
                    out[f"n_seeds_{DATASET_KEYS[ds]}_{ep}"] = counts
        return {k: np.asarray(v, dtype=np.float64) for k, v in out.items()}


def _load(path: Path) -> dict:
    """Unpickle the official file with torch's weights-only unpickler (:mod:`harness.safeload`): tensors, plain
    containers and numpy scalars load; a file naming any other global is refused before it runs."""
    from harness.safeload import UnsafeFileError, load_torch

    if not path.is_file():
        raise GroundTruthError(f"official NB201 file not found: {path}")
    try:
        data = load_torch(path, "NAS-Bench-201 .pth file")
    except UnsafeFileError:
        raise
    except Exception as exc:  # truncated zip, bad pickle, EOF...: all mean "not a usable file"
        raise GroundTruthError(
            f"cannot read {path} as an official NAS-Bench-201 .pth file (truncated or corrupt?): {exc!r}"
        ) from exc
    if not isinstance(data, dict):
        raise GroundTruthError(f"{path}: expected a dict with keys {list(REQUIRED_KEYS)}, got {type(data).__name__}")
    missing = [k for k in REQUIRED_KEYS if k not in data]
    if missing:
        raise GroundTruthError(
            f"{path}: not an official NAS-Bench-201 file: missing keys {missing} "
            f"(expected {list(REQUIRED_KEYS)}, found {sorted(map(str, data))[:10]})"
        )
    if not isinstance(data["arch2infos"], dict) or not isinstance(data["meta_archs"], (list, tuple)):
        raise GroundTruthError(f"{path}: 'meta_archs' must be a list and 'arch2infos' a dict of per-index records")
    return data
