"""``gt build``: make a ground-truth table by training architectures stand-alone, as NB201 did for CIFAR.

Each (architecture, seed) is one job: build the stand-alone NB201 network (:class:`harness.nets.NB201Network`),
train it from scratch on the train half of the dataset's NB201 split with the recipe in :class:`BuildSpec`,
and measure accuracy (%) on the held-out half (``valid``), on the test split when the dataset has one
(``test``), and on the training data seen in the last epoch (``train``, as NB201 records it).

Files, for ``--out TABLE.csv``:

- ``TABLE.build.json``: the spec (and, once finished, timings). Written first; a resumed build must match it.
- ``TABLE.partial.csv``: one row per finished job, rewritten atomically after every job, so an interrupted
  build loses at most the jobs in flight and resumes where it stopped.
- ``TABLE.csv``: the compact ground-truth table (seed means, per-seed columns ``..._seed{S}``,
  ``n_seeds_...``); written last, atomically.
"""
from __future__ import annotations

import dataclasses
import json
import math
import os
import random
import sys
import time
from concurrent.futures import ProcessPoolExecutor, as_completed
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pandas as pd
import torch
import torch.nn.functional as F
from torch import nn
from tqdm.auto import tqdm

from .config import ConfigError, check_data_spec, check_device
from .data import DeviceBatches, load_dataset, nb201_split, normalization
from .groundtruth.base import GTQuery, GroundTruthError, is_built_dataset
from .io import check_writable, write_csv, write_json
from .nets import NB201Network
from .space import Arch, all_archs, parse_arch, sample_archs, unique_archs


class BuildError(ValueError):
    """A build spec or output location the builder cannot use."""


@dataclass
class BuildSpec:
    """Everything that determines a ground-truth table. Defaults are NB201's stand-alone recipe
    (xautodl ``configs/nas-benchmark/hyper-opts/200E.config``: SGD Nesterov 0.9, lr 0.1 cosine to 0,
    weight decay 5e-4, batch 256, 200 epochs, crop + flip augmentation, C=16, N=5)."""

    data: str  # load_dataset spec: builtin:NAME, a zip/folder, cifar10:ROOT
    name: str  # built-dataset key of the table's columns, e.g. "digitsm"
    archs: list[str]  # NB201 strings, in table order
    seeds: list[int] = field(default_factory=lambda: [0])
    epochs: int = 200
    C: int = 16
    N: int = 5
    resolution: int = 0  # 0 = native
    batch_size: int = 256
    lr: float = 0.1
    lr_min: float = 0.0
    momentum: float = 0.9
    nesterov: bool = True
    weight_decay: float = 5e-4
    augment: bool = True
    split_seed: int = 0  # seed of the class-stratified split when the dataset has no fixed split
    normalize: str = "cifar10"  # which NB201 mean/std to normalise with
    device: str = "cpu"

    def __post_init__(self) -> None:
        if not is_built_dataset(self.name):
            raise BuildError(f"--name {self.name!r}: use a new lowercase alphanumeric name (not an NB201 dataset)")
        if not self.archs:
            raise BuildError("no architectures to train")
        self.archs = [parse_arch(a).to_str() for a in self.archs]
        if len(set(self.archs)) != len(self.archs):
            raise BuildError("the architecture list repeats an architecture")
        if not self.seeds or len(set(self.seeds)) != len(self.seeds):
            raise BuildError(f"seeds must be distinct and non-empty, got {self.seeds}")
        for key in ("epochs", "C", "N", "batch_size", "lr"):
            if not getattr(self, key) > 0:
                raise BuildError(f"--{key.replace('_', '-')} must be positive, got {getattr(self, key)}")
        for key in ("lr_min", "weight_decay", "resolution", "split_seed"):
            if not getattr(self, key) >= 0:
                raise BuildError(f"--{key.replace('_', '-')} must be >= 0, got {getattr(self, key)}")
        if not 0 <= self.momentum < 1 or (self.nesterov and self.momentum == 0):
            raise BuildError(f"momentum must be in [0, 1) (and > 0 with Nesterov), got {self.momentum}")
        if not all(isinstance(s, int) and 0 <= s < 2**32 for s in self.seeds):
            raise BuildError(f"--seeds must be integers in 0..2^32-1, got {self.seeds}")
        try:
            check_data_spec(self.data, "--data")
        except ConfigError as exc:
            raise BuildError(str(exc)) from None
        try:
            check_device(self.device)
        except ConfigError as exc:
            raise BuildError(str(exc).replace("[run] device", "--device")) from None
        GTQuery(self.name, "valid", self.epochs)  # the table's columns must be a valid query

    def to_dict(self) -> dict:
        return dataclasses.asdict(self)


def select_archs(kind: str, seed: int = 0) -> list[Arch]:
    """``all`` | ``unique`` | ``sample:K`` (seeded, from the full space) | ``sample-unique:K`` | ``list:FILE``."""
    name, _, arg = kind.partition(":")
    if name == "all":
        return all_archs()
    if name == "unique":
        return unique_archs()
    if name in ("sample", "sample-unique"):
        pool = all_archs() if name == "sample" else unique_archs()
        if not arg.isdigit() or not 0 < int(arg) <= len(pool):
            raise BuildError(f"--archs {kind!r}: K must be an integer in 1..{len(pool)}")
        return sample_archs(int(arg), random.Random(seed), pool)
    if name == "list":
        try:
            lines = [s.strip() for s in Path(arg).read_text().splitlines()]
        except OSError as exc:
            raise BuildError(f"--archs {kind!r}: cannot read {arg}: {exc}") from exc
        return [parse_arch(s) for s in lines if s and not s.startswith("#")]
    raise BuildError(f"--archs {kind!r}: expected all, unique, sample:K, sample-unique:K or list:FILE")


# ----------------------------------------------------------------------------- one job

@dataclass
class BuildData:
    train: DeviceBatches
    valid: DeviceBatches
    test: DeviceBatches | None
    num_classes: int


def load_build_data(spec: BuildSpec) -> BuildData:
    device = torch.device(spec.device)
    images = load_dataset(spec.data, "train")
    split = nb201_split(images, seed=spec.split_seed)
    mean, std = normalization(spec.normalize)
    res = spec.resolution or None
    kw = dict(device=device, mean=mean, std=std, resolution=res)
    train = DeviceBatches(images, indices=split.train, batch_size=spec.batch_size, augment=spec.augment,
                          drop_last=True, **kw)
    valid = DeviceBatches(images, indices=split.valid, batch_size=1024, **kw)
    try:
        test_images = load_dataset(spec.data, "test")
    except (FileNotFoundError, ValueError):
        test_images = None
    if test_images is not None and test_images.source == images.source:
        test_images = None  # a zip/folder is one split: no separate test set
    test = DeviceBatches(test_images, batch_size=1024, **kw) if test_images is not None else None
    return BuildData(train, valid, test, len(images.classes))


@torch.no_grad()
def _accuracy(model: nn.Module, batches: DeviceBatches) -> float:
    model.eval()
    correct = torch.zeros((), dtype=torch.int64, device=batches.device)
    for x, y in batches.iter_fixed():
        correct += (model(x).argmax(1) == y).sum()
    return 100.0 * correct.item() / batches.n


def train_standalone(arch: Arch | str, seed: int, data: BuildData, spec: BuildSpec) -> dict:
    """Train one network from scratch; returns accuracies (%) and seconds. The seed sets init and data order."""
    start = time.perf_counter()
    torch.manual_seed(seed)
    data.train.generator.manual_seed(seed)
    model = NB201Network(arch, spec.C, spec.N, data.num_classes).to(data.train.device)
    opt = torch.optim.SGD(model.parameters(), lr=spec.lr, momentum=spec.momentum, nesterov=spec.nesterov,
                          weight_decay=spec.weight_decay)
    steps = spec.epochs * len(data.train)
    sched = torch.optim.lr_scheduler.CosineAnnealingLR(opt, T_max=steps, eta_min=spec.lr_min)
    for epoch in range(spec.epochs):
        model.train()
        correct = torch.zeros((), dtype=torch.int64, device=data.train.device)
        seen = 0
        for x, y in data.train.epoch():
            logits = model(x)
            loss = F.cross_entropy(logits, y)
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
            sched.step()
            correct += (logits.detach().argmax(1) == y).sum()
            seen += len(y)
        if not math.isfinite(loss.item()):  # one host sync per epoch
            raise FloatingPointError(f"{arch} seed {seed}: loss {loss.item()} in epoch {epoch + 1}")
    row = {"arch": parse_arch(arch).to_str(), "seed": seed, "train": 100.0 * correct.item() / seen,
           "valid": _accuracy(model, data.valid)}
    if data.test is not None:
        row["test"] = _accuracy(model, data.test)
    row["seconds"] = time.perf_counter() - start
    return row


# ----------------------------------------------------------------------------- workers

_WORKER: dict = {}


def _init_worker(spec_dict: dict, threads: int) -> None:
    torch.set_num_threads(threads)
    spec = BuildSpec(**spec_dict)
    _WORKER.update(spec=spec, data=load_build_data(spec))


def _run_job(arch: str, seed: int) -> dict:
    return train_standalone(arch, seed, _WORKER["data"], _WORKER["spec"])


# ----------------------------------------------------------------------------- the build

def _paths(out: Path) -> tuple[Path, Path]:
    stem = out.with_suffix("")
    return stem.with_name(stem.name + ".build.json"), stem.with_name(stem.name + ".partial.csv")


def _prepare(spec: BuildSpec, out: Path) -> pd.DataFrame:
    """Check the output location; returns the jobs already finished (empty for a new build)."""
    meta, partial = _paths(out)
    if out.exists():
        raise BuildError(f"{out} exists (a finished table); choose another --out or remove it")
    if meta.exists() and not partial.exists():
        print(f"note: {meta} is the leftover of a start that finished no job; starting afresh", file=sys.stderr)
    elif meta.exists():
        try:
            saved = json.loads(meta.read_text())
        except (json.JSONDecodeError, UnicodeDecodeError) as exc:
            raise BuildError(f"{meta} is not valid JSON ({exc}); remove it and {partial} to start afresh") from None
        if saved.get("spec") != spec.to_dict():
            diff = sorted(k for k in spec.to_dict() if saved.get("spec", {}).get(k) != spec.to_dict()[k])
            raise BuildError(f"{meta} belongs to a build with a different spec (differs in: {', '.join(diff)}); "
                             "rerun with the same options to resume, or choose another --out")
        if partial.exists():
            done = pd.read_csv(partial, dtype={"arch": str})
            if not {"arch", "seed", "valid"} <= set(done.columns):
                raise BuildError(f"{partial} is not a partial build table (columns {list(done.columns)})")
            return done
    check_writable(out, "table")
    out.parent.mkdir(parents=True, exist_ok=True)
    write_json(meta, {"spec": spec.to_dict(), "status": "running"})
    return pd.DataFrame(columns=["arch", "seed", "train", "valid", "seconds"])


def _jobs(spec: BuildSpec, done: pd.DataFrame) -> list[tuple[str, int]]:
    """Jobs not yet done, architecture-major: a partial build already holds complete seed pairs."""
    finished = set(zip(done["arch"], done["seed"].astype(int)))
    return [(a, s) for a in spec.archs for s in spec.seeds if (a, s) not in finished]


def build(spec: BuildSpec, out: str | Path, workers: int = 1, progress: bool = True) -> pd.DataFrame:
    """Run (or resume) a build; returns the final table, also written to ``out``."""
    out = Path(out)
    done = _prepare(spec, out)
    meta, partial = _paths(out)
    todo = _jobs(spec, done)
    rows = done.to_dict("records")
    if todo:
        print(f"gt build: {len(todo)} jobs to run ({len(rows)} already done) with {workers} worker(s)",
              file=sys.stderr)
    start = time.perf_counter()
    bar = tqdm(total=len(todo), desc="gt build", unit="net", disable=not progress)
    for row in _execute(spec, todo, workers):
        rows.append(row)
        write_csv(partial, pd.DataFrame(rows))
        bar.update(1)
        bar.set_postfix(valid=f"{row['valid']:.1f}")
    bar.close()
    table = results_table(spec, pd.DataFrame(rows))
    write_csv(out, table)
    write_json(meta, {"spec": spec.to_dict(), "status": "finished", "jobs": len(rows),
                      "job_seconds_total": float(pd.DataFrame(rows)["seconds"].sum()),
                      "wall_seconds_last_session": time.perf_counter() - start, "workers_last_session": workers,
                      "torch": torch.__version__})
    partial.unlink(missing_ok=True)
    return table


def _execute(spec: BuildSpec, todo: list[tuple[str, int]], workers: int):
    if not todo:
        return
    if workers <= 1:
        _init_worker(spec.to_dict(), torch.get_num_threads())
        for arch, seed in todo:
            yield _run_job(arch, seed)
        return
    threads = max(1, (os.cpu_count() or 1) // workers)
    import multiprocessing as mp
    ctx = mp.get_context("spawn")  # fork after torch has started threads can deadlock
    with ProcessPoolExecutor(workers, mp_context=ctx, initializer=_init_worker,
                             initargs=(spec.to_dict(), threads)) as pool:
        futures = [pool.submit(_run_job, a, s) for a, s in todo]
        try:
            for fut in as_completed(futures):
                yield fut.result()
        except BaseException:
            for f in futures:
                f.cancel()
            raise


def results_table(spec: BuildSpec, rows: pd.DataFrame) -> pd.DataFrame:
    """Jobs (arch, seed, train, valid[, test]) -> the compact ground-truth table in ``spec.archs`` order."""
    key, E = spec.name, spec.epochs
    metrics = [m for m in ("train", "valid", "test") if m in rows.columns and rows[m].notna().any()]
    wide = rows.pivot_table(index="arch", columns="seed", values=metrics, aggfunc="first")
    table = pd.DataFrame({"arch": spec.archs})
    archs = [Arch.from_str(a) for a in spec.archs]
    # no nb201_index: the official index is an arbitrary order only NB201's own file defines
    table["isomorphism_class"] = [a.canonical() for a in archs]
    for m in metrics:
        per_seed = wide[m].reindex(index=spec.archs, columns=spec.seeds)
        table[f"{key}_{m}_{E}"] = per_seed.mean(axis=1).to_numpy()
        for s in spec.seeds:
            table[f"{key}_{m}_{E}_seed{s}"] = per_seed[s].to_numpy()
    table[f"n_seeds_{key}_{E}"] = wide["valid"].reindex(index=spec.archs, columns=spec.seeds).notna().sum(axis=1).to_numpy()
    return table


def seed_agreement(table_path: str | Path, name: str, epochs: int, metric: str = "valid") -> dict:
    """Kendall tau / Spearman between every pair of seeds of a built table (the benchmark's noise floor)."""
    from scipy import stats

    from .groundtruth import TableGroundTruth

    gt = TableGroundTruth.from_csv(table_path)
    seeds = gt.seed_values(GTQuery(name, metric, epochs))
    if len(seeds) < 2:
        raise GroundTruthError(f"{table_path} keeps {len(seeds)} seed(s) of {name} {metric}; need two to compare")
    out = {}
    keys = sorted(seeds)
    for i, a in enumerate(keys):
        for b in keys[i + 1:]:
            ok = ~np.isnan(seeds[a]) & ~np.isnan(seeds[b])
            out[f"seed{a}_vs_seed{b}"] = {
                "n_archs": int(ok.sum()),
                "kendall_tau": float(stats.kendalltau(seeds[a][ok], seeds[b][ok]).statistic),
                "spearman": float(stats.spearmanr(seeds[a][ok], seeds[b][ok]).statistic),
                "mean_abs_diff": float(np.abs(seeds[a][ok] - seeds[b][ok]).mean())}
    return out
