"""Ground truth from NATS-Bench's topology search space (``NATS-tss-v1_0-3ffb9-simple``): NB201's cell space with
the result files NATS-Bench released, read directly and safely (no ``nats_bench`` package needed).

The simple format is a directory: ``meta.pickle.pbz2`` (``meta_archs``, the 15,625 architecture strings in index
order) and one ``{index:06d}.pickle.pbz2`` per architecture. Each holds ``{"12": record, "200": record}`` (the
training schedules, NB201's hp), and a record is an ``ArchResults`` state dict: ``dataset_seed`` (dataset ->
seeds) and ``all_results`` ((dataset, seed) -> a ``ResultsCount`` state dict with ``epochs``, ``train_acc1es``
{epoch: acc}, ``eval_acc1es`` {"x-valid@199": acc, ...}, ``params``, ``flop``). A query's value is what
``ArchResults.get_metrics(dataset, setname, is_random=False)`` returns in ``nats_bench/api_utils.py``: the mean
over the seeds of the accuracy after the last epoch, on NB201's set name for the metric (:data:`SETNAMES`).
"""
from __future__ import annotations

import re
import sys
from pathlib import Path

import numpy as np
from tqdm.auto import tqdm

from harness.space import Arch, ArchError

from .base import DATASET_KEYS, GroundTruth, GroundTruthError, GTQuery, all_queries
from .official import SETNAMES

META = "meta.pickle.pbz2"
_RECORD = re.compile(r"^(\d{6})\.pickle\.pbz2$")
HPS = {12: "12", 200: "200"}  # epochs -> key in a record file


def is_nats_dir(path: "str | Path") -> bool:
    return Path(path).is_dir() and (Path(path) / META).is_file()


def _load(path: Path, kind: str):
    from harness.safeload import PICKLE_GLOBALS, UnsafeFileError, load_pickle

    try:
        return load_pickle(path, kind, PICKLE_GLOBALS | {("collections", "OrderedDict")}, bz2=True)
    except UnsafeFileError:
        raise
    except Exception as exc:  # not bz2, truncated, not a pickle
        raise GroundTruthError(f"cannot read {path} as a NATS-Bench {kind} (truncated or corrupt?): {exc!r}") from exc


def _accuracy(result: dict, setname: str) -> float:
    """One trial's accuracy after its last epoch on ``setname`` (``train`` or an eval set name)."""
    last = int(result["epochs"]) - 1
    if setname == "train":
        return float(result["train_acc1es"][last])
    return float(result["eval_acc1es"][f"{setname}@{last}"])


class NATSTopologyGroundTruth(GroundTruth):
    """Seed-mean accuracies of the architectures whose record files the directory holds, in index order."""

    def __init__(self, path: "str | Path", progress: bool = True):
        self.path = Path(path)
        self.source = str(self.path)
        if not is_nats_dir(self.path):
            raise GroundTruthError(f"{self.path} is not a NATS-Bench topology directory (no {META} in it); give the "
                                   "NATS-tss-v1_0-3ffb9-simple folder")
        meta = _load(self.path / META, "meta file")
        if not isinstance(meta, dict) or not isinstance(meta.get("meta_archs"), (list, tuple)):
            raise GroundTruthError(f"{self.path / META}: expected a dict with 'meta_archs', the architecture strings")
        names = self._meta = list(meta["meta_archs"])
        files = sorted((int(m.group(1)), f) for f in self.path.iterdir() if (m := _RECORD.match(f.name)))
        if not files:
            raise GroundTruthError(f"{self.path}: no architecture record (000000.pickle.pbz2 ...) next to {META}")
        self._indices, self._archs = [], []
        values: dict[str, list[float]] = {}
        self._extra: dict[str, list[float]] = {"params_mb_cifar10": [], "flops_mb_cifar10": []}
        for row, (index, f) in enumerate(tqdm(files, desc="NATS-Bench records", unit="arch", disable=not progress,
                                              file=sys.stderr)):
            if index >= len(names):
                raise GroundTruthError(f"{f}: index {index} but {META} lists {len(names)} architectures")
            try:
                arch = Arch.from_str(names[index])
            except ArchError as exc:
                raise GroundTruthError(f"{self.path / META}: meta_archs[{index}]: {exc}") from exc
            self._indices.append(index)
            self._archs.append(arch)
            self._read(f, _load(f, "architecture record"), row, values)
        self._row = {a: k for k, a in enumerate(self._archs)}
        if len(self._row) != len(self._archs):
            raise GroundTruthError(f"{self.path}: 'meta_archs' lists the same architecture twice")
        n = len(self._archs)
        self._columns = {k: np.array(v + [np.nan] * (n - len(v)), dtype=np.float64) for k, v in values.items()}
        self._available = [q for q in all_queries() if q.key in self._columns
                           and not np.isnan(self._columns[q.key]).all()]

    def _read(self, f: Path, record, row: int, values: dict) -> None:
        """Add one architecture's values at ``row`` of every column (NaN where its record lacks one)."""
        def put(column: dict, key: str, value: float) -> None:
            column.setdefault(key, [])
            column[key].extend([np.nan] * (row - len(column[key])))
            column[key].append(value)

        try:
            for epochs, hp in HPS.items():
                rec = record[hp]
                for dataset, seeds in rec["dataset_seed"].items():
                    if dataset not in SETNAMES or not seeds:
                        continue
                    trials = [rec["all_results"][(dataset, s)] for s in seeds]
                    for metric, setname in SETNAMES[dataset].items():
                        try:
                            accs = [_accuracy(t, setname) for t in trials]
                        except (KeyError, IndexError, TypeError):
                            continue  # this schedule did not evaluate the set
                        q = GTQuery(dataset, metric, epochs)
                        put(values, q.key, float(np.mean(accs)))
                        for s, acc in zip(seeds, accs):
                            put(self._extra, f"{q.key}_seed{int(s)}", acc)
                    put(self._extra, f"n_seeds_{DATASET_KEYS[dataset]}_{epochs}", float(len(seeds)))
                    if epochs == 200 and dataset == "cifar10":
                        put(self._extra, "params_mb_cifar10", float(trials[0]["params"]))
                        put(self._extra, "flops_mb_cifar10", float(trials[0]["flop"]))
        except (KeyError, TypeError, AttributeError) as exc:
            raise GroundTruthError(f"{f}: not a NATS-Bench topology record (expected {{'12': ArchResults state, "
                                   f"'200': ArchResults state}}): {exc!r}") from exc

    def queries(self) -> list[GTQuery]:
        return list(self._available)

    def _column(self, q: GTQuery) -> np.ndarray:
        return self._columns[q.key]

    def nb201_index(self, arch: "Arch | str") -> int | None:
        return self._indices[self._position(arch)]

    def extra_columns(self) -> dict[str, np.ndarray]:
        n = len(self._archs)
        return {k: np.array(v + [np.nan] * (n - len(v)), dtype=np.float64) for k, v in self._extra.items()
                if not np.isnan(np.array(v, dtype=float)).all()}
