"""Wires one experiment together: data, supernet, sampler, training, estimation, ground truth, metrics.

This is the only place that seeds. A run directory holds::

    config.toml        resolved configuration (every key, defaults included)
    split.json         the train/held-out split that was used
    checkpoint.pt      training state while training (atomic; removed once supernet.pt exists)
    supernet.pt        trained supernet weights
    train_log.csv      step, loss, lr, seconds
    progress.csv       with [estimate] track_every > 0: step, progress, kendall_tau, spearman on a probe set
    probes.csv         [forgetting] probes: step, arch, loss, acc, ground_truth, trained (harness/forgetting.py)
    decay.csv          [forgetting] decay tracers: trained_step, arch, lag, step, loss, acc, retrained
    estimates.csv      arch, estimate (%), loss, ground_truth (%), nb201_index
    alpha.csv, sharpness.csv, alpha_scores.csv   differentiable strategies only (harness/search.py)
    metrics.json       ranking metrics with CIs, timings, environment -- written last: marks the run finished
    .lock              held (flock) by the process writing the directory; holds its pid and host

An interrupted run resumes from the same directory (same config): training from the last
checkpoint, estimation from the architectures already written to ``estimates.partial.csv``.
"""
from __future__ import annotations

import contextlib
import json
import os
import platform
import random
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd
import torch
from tqdm.auto import tqdm

from . import progress as progress_report
from . import __version__
from .config import Config, ConfigError, differing_keys, relative_to_checkout, tomllib
from .data import DeviceBatches, augment_padding, load_dataset, nb201_split, nb201_test_split, normalization
from .estimate import estimate_archs
from .estimators import ESTIMATORS, Context
from .forgetting import ForgettingMonitor, choose_probes, schedule, summarise
from .fewshot import FewShotSupernet
from .groundtruth import GTQuery, load_ground_truth
from .io import check_writable, save_torch, write_csv, write_json, write_text
from .metrics import kendall_tau, ranking_report, spearman, undefined_last
from .phases import Hooks, check_schedule, target_reached, train_supernet
from .safeload import load_torch, trusting
from .search import AlphaMonitor, MonitorGroup, search_report
from .samplers import SAMPLERS
from .shrinkers import SHRINKERS, Space
from .shrinkers.quality import op_score_tau, space_quality
from .space import Arch, all_archs, parse_arch, sample_archs, unique_archs
from .supernet import Supernet
from .train import total_steps


class RunDirError(RuntimeError):
    """The output directory holds a finished run or a different experiment."""


def resolve_device(name: str) -> torch.device:
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    device = torch.device(name)
    if device.type == "cuda" and not torch.cuda.is_available():
        raise ConfigError(f"[run] device = {name!r} but CUDA is not available; use 'auto' or 'cpu'")
    return device


def environment(device: torch.device, seed: int) -> dict:
    return {"harness": __version__, "python": sys.version.split()[0], "platform": platform.platform(),
            "torch": torch.__version__, "cuda": torch.version.cuda, "device": str(device),
            "device_name": torch.cuda.get_device_name(device) if device.type == "cuda" else platform.processor() or "cpu",
            "cpu_threads": torch.get_num_threads(), "cpu_model": _cpu_model(),
            # the vector ISA level PyTorch's CPU kernels dispatch to (AVX2, AVX512, ...): float results, and so whole
            # training runs, can differ between levels
            "cpu_capability": torch.backends.cpu.get_cpu_capability(),
            "seed": seed, "git_revision": _git_revision(), "host": platform.node()}


def _cpu_model() -> str | None:
    try:
        with open("/proc/cpuinfo") as f:
            return next((line.split(":", 1)[1].strip() for line in f if line.startswith("model name")), None)
    except OSError:
        return platform.processor() or None


def _git_revision() -> str | None:
    try:
        rev = subprocess.run(["git", "rev-parse", "HEAD"], cwd=ROOT, capture_output=True, text=True, timeout=5)
        dirty = subprocess.run(["git", "status", "--porcelain", "--untracked-files=no"], cwd=ROOT,
                               capture_output=True, text=True, timeout=5)
    except (OSError, subprocess.SubprocessError):
        return None
    if rev.returncode != 0:
        return None
    return rev.stdout.strip() + ("-dirty" if dirty.stdout.strip() else "")


def select_archs(cfg: Config, gt=None) -> list[Arch]:
    est = cfg.estimate
    if est.archs == "groundtruth":
        if gt is None:
            raise ConfigError("[estimate] archs = 'groundtruth' needs the ground-truth source")
        return gt.archs()
    if est.archs == "all":
        return all_archs()
    if est.archs == "unique":
        return unique_archs()
    if est.archs == "list":
        if not est.arch_list:
            raise ConfigError("[estimate] archs = 'list' needs arch_list = [NB201 strings]")
        return [parse_arch(s) for s in est.arch_list]
    pool = unique_archs() if est.sample_pool == "unique" else all_archs()
    if not 0 < est.sample_size <= len(pool):
        raise ConfigError(f"[estimate] sample_size must be in 1..{len(pool)} for sample_pool={est.sample_pool!r}")
    return sample_archs(est.sample_size, random.Random(est.sample_seed), pool)


LOCK = ".lock"
ROOT = Path(__file__).resolve().parents[1]  # the checkout: run directories store paths relative to it
LEFTOVERS = {"config.toml", "split.json", LOCK}  # all a failed start leaves: nothing trained or estimated yet


class RunDirBusy(RunDirError):
    """Another process holds the run directory's lock (its error is not this run's: nothing is written there)."""


@contextlib.contextmanager
def run_dir_lock(out: Path):
    """Held while this process writes ``out``: an exclusive ``flock`` on ``out/.lock``, which records our pid and
    host. A second process on the same directory (a rerun while stray workers of a killed sweep still run) fails
    at once with :class:`RunDirBusy`. The kernel drops the lock when its holder exits or is killed. Where the
    file system cannot lock (some network or FUSE mounts) the run goes on unlocked, with a warning."""
    import fcntl

    fd = os.open(out / LOCK, os.O_RDWR | os.O_CREAT, 0o644)
    try:
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            holder = os.pread(fd, 200, 0).decode(errors="replace").strip() or "unknown"
            raise RunDirBusy(f"{out} is being written by another process (pid and host: {holder}); wait for it "
                             "to finish or stop it, then rerun") from None
        except OSError as exc:
            print(f"warning: cannot lock {out / LOCK} ({exc}); going on without the lock", file=sys.stderr)
        os.ftruncate(fd, 0)
        os.pwrite(fd, f"{os.getpid()} {platform.node()}\n".encode(), 0)
        yield
    finally:
        os.close(fd)


def run_dir_holder(out: Path) -> str | None:
    """``"PID HOST"`` of the process writing ``out`` now, or None (nobody holds its lock)."""
    try:
        with run_dir_lock(out):
            return None
    except RunDirBusy:
        return (out / LOCK).read_text().strip() or "unknown"
    except FileNotFoundError:  # no such directory
        return None


def same_identity(stored: str, cfg: Config) -> bool:
    """Whether a run directory's ``config.toml`` text is ``cfg``'s: written with paths relative to the checkout
    (:data:`ROOT`), so a checkout moved with its ``../shared/data`` keeps its runs; or, as before that, absolute."""
    return stored in (cfg.identity_toml(ROOT), cfg.identity_toml())


def check_run_dir(out: Path, cfg: Config) -> str:
    """What ``out`` allows, without writing anything: ``"new"``, ``"resume"`` (an unfinished run of this config)
    or ``"reuse"`` (only the leftovers of a failed start, whatever their config). Raises RunDirError otherwise."""
    check_writable(out, "run directory")
    if not out.exists():
        return "new"
    if (out / "metrics.json").exists():
        raise RunDirError(f"{out} holds a finished run (metrics.json exists); choose another --out or remove it")
    names = {p.name for p in out.iterdir()} - {LOCK}  # a lock alone: killed before config.toml was written
    if "config.toml" not in names:
        if names:
            raise RunDirError(f"{out} exists and is not a run directory of this harness; choose another --out")
        return "new"
    stored = (out / "config.toml").read_text()
    if same_identity(stored, cfg):
        return "resume"
    if names <= LEFTOVERS:
        return "reuse"
    try:
        diff = differing_keys(tomllib.loads(stored), cfg.identity(ROOT))
    except tomllib.TOMLDecodeError:
        diff = ["(its config.toml is not valid TOML)"]
    raise RunDirError(f"{out} holds an unfinished run of a different config ({'; '.join(diff[:6])}"
                      f"{'; ...' if len(diff) > 6 else ''}); rerun with that config to resume, or choose another --out")


def finished_config_differs(out: Path, cfg: Config) -> list[str]:
    """The keys (with both values) in which the finished run in ``out`` is another experiment than ``cfg``. Its
    config.toml is read as an experiment, not as text: a key the file lacks counts as equal where ``cfg`` holds
    its default (the key came to the harness after that run, which ran without the feature), and a path counts
    as equal where it names the same file (written relative to the checkout then, absolute now)."""
    from .config import PATH_KEYS, flat_keys, load_config

    try:
        theirs = flat_keys(tomllib.loads((out / "config.toml").read_text()))
    except (OSError, tomllib.TOMLDecodeError) as exc:
        return [f"(its config.toml cannot be read: {exc})"]
    mine, default = flat_keys(cfg.identity()), flat_keys(load_config(None).identity())
    paths, root, absent = {f"{s}.{k}" for s, k in PATH_KEYS}, ROOT, object()
    differ = []
    for key in sorted(set(mine) | set(theirs)):
        a, b = theirs.get(key, absent), mine.get(key, absent)
        if a == b or (a is absent and b == default.get(key, absent)):
            continue
        if key in paths and isinstance(a, str) and isinstance(b, str) and a and b and \
                (root / a).resolve() == Path(b).resolve():
            continue
        differ.append(f"{key} = {'(absent)' if a is absent else repr(a)} vs {'(absent)' if b is absent else repr(b)}")
    return differ


def create_run_dir(out: Path, cfg: Config, status: str, lock: contextlib.ExitStack | None = None) -> bool:
    """Make ``out`` a run directory of ``cfg`` (after :func:`check_run_dir` said ``status``); True when resuming.
    With ``lock``, :func:`run_dir_lock` is taken on it (held until the stack closes) before anything else is
    written; a directory another process holds raises :class:`RunDirError`."""
    if lock is not None and status != "new":
        lock.enter_context(run_dir_lock(out))
        if (out / "metrics.json").exists():  # another process finished it since check_run_dir looked
            raise RunDirError(f"{out} holds a finished run (metrics.json exists); choose another --out or remove it")
    if status == "reuse":
        print(f"note: {out} held only the leftovers of a failed start; reusing it", file=sys.stderr)
        (out / "split.json").unlink(missing_ok=True)
    if status != "resume":
        out.mkdir(parents=True, exist_ok=True)
        if lock is not None and status == "new":
            lock.enter_context(run_dir_lock(out))
            if check_run_dir(out, cfg) != "new":  # another process started (or finished) it since we looked
                raise RunDirError(f"{out} was started by another process meanwhile; rerun to resume it")
        write_text(out / "config.toml", cfg.identity_toml(ROOT))
    return status == "resume"


def prepare_run_dir(out: Path, cfg: Config) -> bool:
    """Create ``out`` or check it can be resumed; returns True when resuming."""
    return create_run_dir(out, cfg, check_run_dir(out, cfg))


@dataclass
class Data:
    train: DeviceBatches
    held_out: DeviceBatches
    split_info: dict
    search: DeviceBatches | None = None  # alpha's batches (differentiable strategies)


def _subset(idx: np.ndarray, k: int, seed: int) -> np.ndarray:
    if k <= 0 or k >= len(idx):
        return idx
    return np.sort(np.random.default_rng(seed).choice(idx, size=k, replace=False))


def build_data(cfg: Config, device: torch.device, seed: int) -> Data:
    d = cfg.data
    if not d.train_path:
        raise ConfigError("[data] train_path is empty: point it at CIFAR-10 (a zip/folder of class subfolders "
                          "or cifar10:ROOT); see data/README.md")
    images = load_dataset(d.train_path, "train", cache_dir=d.cache_dir or None)
    if len(images.classes) != cfg.supernet.num_classes:
        raise ConfigError(f"{d.train_path} has {len(images.classes)} classes but [supernet] num_classes = "
                          f"{cfg.supernet.num_classes}")
    if d.holdout == "test":  # NB201's cifar100 / ImageNet16-120 protocol: held-out images from the test set
        held_set = load_dataset(d.test_path or d.train_path, "test", cache_dir=d.cache_dir or None)
        split = nb201_test_split(images, held_set, d.split_file or None, seed=d.split_seed,
                                 original_order=d.original_order)
    else:
        held_set = images
        split = nb201_split(images, d.split_file or None, seed=d.split_seed, original_order=d.original_order)
    train_idx = _subset(split.train, d.train_subset, d.split_seed + 1)
    valid_idx = _subset(split.valid, d.valid_subset, d.split_seed + 2)
    mean, std = normalization(cfg.groundtruth.dataset)
    res = d.resolution or None
    pad = augment_padding(cfg.groundtruth.dataset)
    train_b = DeviceBatches(images, indices=train_idx, device=device, batch_size=cfg.train.batch_size, mean=mean,
                            std=std, augment=d.augment, pad=pad, resolution=res, seed=seed, drop_last=True)
    # held-out batches are cut in stored order (iter_fixed), so they draw no random numbers
    held = DeviceBatches(held_set, indices=valid_idx, device=device, batch_size=cfg.estimate.batch_size, mean=mean,
                         std=std, augment=False, resolution=res)
    info = dict(split.info, n_train_used=int(len(train_idx)), n_valid_used=int(len(valid_idx)),
                source=images.source, resolution=train_b.size[0])
    if held_set is not images:
        info["held_out_source"] = held_set.source
    search = None
    if SAMPLERS.get(cfg.sampler["name"]).differentiable:
        search_idx, overlaps = _search_indices(split.valid, valid_idx, cfg.search.search_subset, d.split_seed + 3)
        # NB201's search loaders draw alpha's batches from the held-out images with the training augmentation
        search = DeviceBatches(held_set, indices=search_idx, device=device, mean=mean, std=std, augment=d.augment,
                               pad=pad, batch_size=cfg.search.batch_size or cfg.train.batch_size, resolution=res,
                               seed=seed + 3, drop_last=True)
        info.update(n_search_used=int(len(search_idx)), search_overlaps_estimation=overlaps)
    return Data(train_b, held, info, search)


def _search_indices(valid: np.ndarray, estimation: np.ndarray, k: int, seed: int) -> tuple[np.ndarray, bool]:
    """alpha's images: the held-out half less the images estimation scores on; when estimation uses the whole
    half, the whole half (as NB201's DARTS, which trains alpha on its valid split), flagged as overlapping."""
    rest = np.setdiff1d(valid, estimation)
    if len(rest) == 0:
        print("note: [data] valid_subset keeps no held-out image out of estimation, so alpha trains on the images "
              "the estimates are scored on (set valid_subset to keep them apart)", file=sys.stderr)
        return _subset(valid, k, seed), True
    return _subset(rest, k, seed), False


def _engine(cfg: Config) -> dict:
    """How estimation executes ([estimate] engine and arch_batch)."""
    return {"engine": cfg.estimate.engine, "arch_batch": cfg.estimate.arch_batch}


def _tracker(cfg: Config, model: Supernet, data: Data, probe: list[Arch], truth: np.ndarray, steps: int):
    """``track(step)``: rank correlation of the probe architectures' inherited-weight accuracy at ``step``."""
    eval_batches = list(data.held_out.iter_fixed())
    calib = list(data.train.iter_fixed(cfg.estimate.recalib_batches)) if model.bn_policy == "recalibrate" else []

    def track(step: int) -> dict:
        rows = estimate_archs(model, probe, eval_batches, calib, progress=False, **_engine(cfg))
        est = np.array([r["estimate"] for r in rows])
        return {"step": step, "progress": step / steps, "kendall_tau": kendall_tau(est, truth),
                "spearman": spearman(est, truth), "n_archs": len(probe)}

    return track


def _first_images(batches, n: int) -> list[tuple[torch.Tensor, torch.Tensor]]:
    out, have = [], 0
    for x, y in batches:
        out.append((x[: n - have], y[: n - have]))
        have += len(out[-1][1])
        if have >= n:
            break
    return out


def _monitor(cfg: Config, model: Supernet, data: Data, archs: list[Arch], truth: np.ndarray,
             steps: int) -> ForgettingMonitor | None:
    """The forgetting probes and decay tracers of ``[forgetting]`` (None when both are off)."""
    f = cfg.forgetting
    probe_every, decay_every = schedule(f, steps)
    if not f.probes and not decay_every:
        return None
    chosen = choose_probes(archs, truth, min(f.probes, len(archs)), random.Random(f.probe_seed)) if f.probes else []
    images = _first_images(data.held_out.iter_fixed(), f.probe_images)
    calib = list(data.train.iter_fixed(cfg.estimate.recalib_batches)) if model.bn_policy == "recalibrate" else []

    def evaluate(todo):
        rows = estimate_archs(model, todo, images, calib, progress=False, **_engine(cfg))
        return [(r["loss"], r["estimate"]) for r in rows]

    return ForgettingMonitor(evaluate, [archs[i] for i in chosen], truth[chosen], probe_every, decay_every,
                             f.decay_lags, steps)


def _train_supernet(cfg: Config, out: Path, model, data: Data, seed: int, progress: bool, archs: list[Arch],
                    truth: np.ndarray, gt_truth) -> tuple[dict, dict]:
    """Train (or resume) with the shrink rounds and split of ``cfg``; returns the train info and the state the
    estimation needs (final space, shrink log, split step), also stored in ``supernet.pt``."""
    sampler = make_sampler(cfg)
    steps = total_steps(cfg.train, len(data.train), sampler.paths_per_step)
    forgetting_monitor = _monitor(cfg, model, data, archs, truth, steps)
    alpha_monitor = None
    if sampler.differentiable:
        sampler.attach(model, data.search.batches(), steps, seed)
        alpha_monitor = _alpha_monitor(cfg, model, sampler, data)
    monitor = MonitorGroup([forgetting_monitor, alpha_monitor]) if alpha_monitor else forgetting_monitor
    k = min(cfg.estimate.track_archs, len(archs))
    hooks = Hooks(monitor=monitor, truth=gt_truth,
                  track=_tracker(cfg, model, data, archs[:k], truth[:k], steps) if cfg.estimate.track_every > 0 else None,
                  evaluate=_scorer(cfg, model, data) if SHRINKERS.get(cfg.shrink.rule).needs_evaluation else None)
    state, shrink = train_supernet(cfg, out, model, sampler, data.train.batches(), steps,
                                   len(data.train), seed, hooks, progress)
    write_csv(out / "train_log.csv", pd.DataFrame(state.log))
    if state.progress:
        write_csv(out / "progress.csv", pd.DataFrame(state.progress))
    if forgetting_monitor is not None:
        for name, frame in zip(("probes.csv", "decay.csv"), forgetting_monitor.frames()):
            write_csv(out / name, frame)
    info = {"steps": steps, "paths": state.paths, "paths_per_step": sampler.paths_per_step, "seconds": state.seconds,
            "steps_per_second": steps / max(state.seconds, 1e-9),
            "final_loss": state.log[-1]["loss"] if state.log else None, "steps_per_epoch": len(data.train)}
    after = {"shrink": shrink.state_dict(), "split_step": getattr(model, "split_step_", None)}
    if alpha_monitor is not None:
        alpha_monitor.finish(state.step)
        after["search"] = dict(alpha_monitor.state_dict(), alpha=sampler.alpha.detach().cpu())
    save_torch(out / "supernet.pt", {"model": model.state_dict(), "describe": model.describe(), "train": info, **after})
    (out / "checkpoint.pt").unlink(missing_ok=True)
    return info, after


def make_sampler(cfg: Config):
    options = dict(cfg.sampler)
    cls = SAMPLERS.get(options.pop("name"))
    if getattr(cls, "needs_cells", False):  # one architecture per search cell (harness/samplers/percell.py)
        options["cells"] = 3 * cfg.supernet.N
    return cls(**options)


def _alpha_monitor(cfg: Config, model, sampler, data: Data) -> AlphaMonitor:
    """alpha's record and the sharpness measurements of ``[search]`` (every ... epochs -> steps)."""
    spe, s = len(data.train), cfg.search
    every = (lambda epochs: max(1, round(epochs * spe)) if epochs > 0 else 0)
    images = _first_images(data.search.iter_fixed(), s.sharpness_images) if s.sharpness_every > 0 else []
    return AlphaMonitor(sampler, model, spe, every(s.alpha_every), every(s.sharpness_every), images,
                        s.sharpness_iters, cfg.run.seed)


def _scorer(cfg: Config, model, data: Data):
    """``evaluate(archs) -> [(loss, acc)]`` on the first ``[shrink] score_images`` held-out images."""
    images = _first_images(data.held_out.iter_fixed(), cfg.shrink.score_images)
    calib = list(data.train.iter_fixed(cfg.estimate.recalib_batches)) if model.bn_policy == "recalibrate" else []
    def evaluate(todo):
        rows = estimate_archs(model, todo, images, calib, progress=False, **_engine(cfg))
        return [(r["loss"], r["estimate"]) for r in rows]

    return evaluate


def _forgetting_summary(cfg: Config, out: Path, steps: int) -> dict | None:
    """The forgetting block of metrics.json, from the run's probes.csv / decay.csv."""
    if not (out / "probes.csv").exists():
        return None
    probes, decay = pd.read_csv(out / "probes.csv"), pd.read_csv(out / "decay.csv")
    probe_every, decay_every = schedule(cfg.forgetting, steps)
    return dict(summarise(probes, decay), probe_every=probe_every, decay_every=decay_every,
                decay_lags=cfg.forgetting.decay_lags, probe_images=cfg.forgetting.probe_images)


def _estimate(cfg: Config, out: Path, model, data: Data, archs: list[Arch], progress: bool,
              name: str = "estimates") -> tuple[pd.DataFrame, float]:
    partial = out / f"{name}.partial.csv"
    done = pd.read_csv(partial) if partial.exists() else pd.DataFrame(columns=["arch", "estimate", "loss"])
    finished = set(done["arch"])
    todo = [a for a in archs if a.to_str() not in finished]
    rows = done.to_dict("records")

    def flush(chunk: list[dict]) -> None:
        rows.extend(chunk)
        write_csv(partial, pd.DataFrame(rows))
        progress_report.advance(len(rows))

    progress_report.begin("estimate" if name == "estimates" else "space", len(rows) + len(todo), len(rows))

    start = time.perf_counter()
    eval_batches = list(data.held_out.iter_fixed())
    calib = list(data.train.iter_fixed(cfg.estimate.recalib_batches)) if model.bn_policy == "recalibrate" else []
    estimate_archs(model, todo, eval_batches, calib, on_flush=flush, progress=progress, **_engine(cfg))
    seconds = time.perf_counter() - start
    frame = pd.DataFrame(rows).set_index("arch").loc[[a.to_str() for a in archs]].reset_index()
    return frame, seconds


def make_estimator(cfg: Config):
    options = dict(cfg.estimator)
    return ESTIMATORS.get(options.pop("name"))(**options)


def _proxy_images(train: DeviceBatches, batch_size: int, batches: int, seed: int) -> list:
    """``batches`` batches of ``batch_size`` un-augmented training images, a seeded draw from the training split
    (the same for every architecture of the run)."""
    n = train.n
    if n < batch_size * batches:
        raise ConfigError(f"[estimator] batch_size = {batch_size} needs {batch_size * batches} training images; the "
                          f"training split has {n}")
    order = torch.randperm(n, generator=torch.Generator().manual_seed(seed))[:batch_size * batches].to(train.device)
    x, y = train.images[order], train.labels[order]
    return [(x[i:i + batch_size].contiguous(), y[i:i + batch_size]) for i in range(0, len(y), batch_size)]


def _score_archs(est, name: str, ctx: Context, out: Path, archs: list[Arch], progress: bool,
                 flush_every: int = 16) -> pd.DataFrame:
    """Scores of ``archs`` (resumable: finished rows are kept in estimates.partial.csv), with the seconds each
    took; progress with an ETA."""
    partial = out / "estimates.partial.csv"
    done = pd.read_csv(partial) if partial.exists() else None
    rows = [] if done is None else done.to_dict("records")
    finished = {r["arch"] for r in rows}
    todo = [a for a in archs if a.to_str() not in finished]
    progress_report.begin("estimate", len(archs), len(rows))
    bar = tqdm(total=len(archs), initial=len(rows), desc=name, unit="arch", disable=not progress,
               leave=False)
    for start in range(0, len(todo), flush_every):
        chunk = todo[start:start + flush_every]
        t0 = time.perf_counter()
        scores = est.score(chunk, ctx)
        per_arch = (time.perf_counter() - t0) / len(chunk)
        for a, sc in zip(chunk, scores):
            row = dict(sc) if isinstance(sc, dict) else {"estimate": sc}
            rows.append({"arch": a.to_str(), **row, "seconds": per_arch})
        write_csv(partial, pd.DataFrame(rows))
        progress_report.advance(len(rows))
        bar.update(len(chunk))
    bar.close()
    frame = pd.DataFrame(rows).set_index("arch").loc[[a.to_str() for a in archs]].reset_index()
    if hasattr(est, "combine"):
        frame.insert(1, "estimate", est.combine(frame))
    return frame


def _run_estimator(cfg: Config, out: Path, status: str, device: torch.device, gt, query, archs: list[Arch],
                   truth: np.ndarray, progress: bool, lock: contextlib.ExitStack) -> dict:
    """A run whose estimator needs no supernet (``[estimator] name``): score the architectures, query the ground
    truth, write estimates.csv and metrics.json as a supernet run does."""
    est = make_estimator(cfg)
    seed = cfg.run.seed
    random.seed(seed)
    np.random.seed(seed)
    torch.manual_seed(seed)
    images, split_info, resolution = [], None, cfg.data.resolution or 32
    if est.needs_data:
        data = build_data(cfg, device, seed)
        images = _proxy_images(data.train, est.batch_size, est.batches, seed)
        split_info, resolution = data.split_info, data.split_info["resolution"]
    create_run_dir(out, cfg, status, lock)
    if split_info is not None:
        write_json(out / "split.json", split_info)
    ctx = Context(C=cfg.supernet.C, N=cfg.supernet.N, num_classes=cfg.supernet.num_classes, resolution=resolution,
                  device=device, seed=seed, gt=gt, query=query, images=images)
    frame = _score_archs(est, cfg.estimator["name"], ctx, out, archs, progress)
    frame["ground_truth"] = truth
    frame["nb201_index"] = [gt.nb201_index(a) for a in archs]
    write_csv(out / "estimates.csv", frame)
    score = frame["estimate"].to_numpy(dtype=float)
    undefined = ~np.isfinite(score)
    ranked = undefined_last(score)
    seconds = float(frame["seconds"].sum())
    name = cfg.estimator["name"]
    metrics = {
        "strategy": name,
        "ranking": ranking_report(ranked, truth, cfg.metrics.bootstrap, cfg.metrics.confidence, seed),
        "ground_truth": {"source": relative_to_checkout(str(cfg.groundtruth.source), ROOT), "query": query.key, "dataset": query.dataset,
                         "metric": query.metric, "epochs": query.epochs, "seeds": query.seeds},
        "estimator": {"name": name, "options": est.options(), "needs_data": est.needs_data, "seed": seed,
                      "device": str(device), "seconds": seconds, "seconds_per_arch": seconds / max(len(archs), 1),
                      "undefined": int(undefined.sum()),
                      "network": {"C": ctx.C, "N": ctx.N, "num_classes": ctx.num_classes, "resolution": resolution}},
        "estimate": {"n_archs": len(archs), "seconds": seconds, "archs_per_second": len(archs) / max(seconds, 1e-9),
                     "mean_estimate": float(np.nanmean(score)) if (~undefined).any() else None},
        "split": split_info,
        "environment": environment(device, seed),
    }
    write_json(out / "metrics.json", metrics)
    (out / "estimates.partial.csv").unlink(missing_ok=True)
    return metrics


def strategy_label(cfg: Config) -> str:
    """The name a run is compared under: the sampler, plus the shrinking rule and ``few-shot`` when used. A round
    after training (``at_end``, ABS's regime) adds ``-at-end`` to the rule, and the official few-shot schedule
    adds ``-fresh``, so different regimes are never pooled as seeds of one."""
    name = cfg.sampler["name"] + ("-unrolled" if cfg.sampler.get("unrolled") else "")  # DARTS's second order
    rule = cfg.shrink.rule + ("-at-end" if cfg.shrink.at_end else "")
    split = "few-shot" + ("-fresh" if cfg.split.schedule == "fresh" else "")
    return "+".join([name] + ([rule] if cfg.shrink.rule != "none" else []) + ([split] if cfg.split.edges else []))


def build_model(cfg: Config, device: torch.device):
    """The supernet; with ``[split] edges`` wrapped so that it can split into few-shot sub-supernets."""
    s = cfg.supernet
    model = Supernet(s.C, s.N, s.num_classes, s.bn_policy, s.bn_affine, s.bn_scope).to(device)
    return FewShotSupernet(model, cfg.split.edges) if cfg.split.edges else model


def _space_archs(cfg: Config, gt, space: Space) -> list[Arch]:
    """Non-isomorphic architectures of the final space that the ground truth holds (one per class, the
    first in base-5 order), at most ``[shrink] estimate_space`` of them (a seeded sample beyond that)."""
    seen: dict[str, Arch] = {}
    for arch in sorted(a for a in gt.archs() if a in space):
        seen.setdefault(arch.canonical(), arch)
    archs = list(seen.values())
    if len(archs) > cfg.shrink.estimate_space:
        archs = sorted(sample_archs(cfg.shrink.estimate_space, random.Random(cfg.estimate.sample_seed), archs))
    return archs


def _shrink_report(cfg: Config, out: Path, model, data: Data, gt, query, after: dict, progress: bool) -> dict | None:
    """The ``shrink`` block of metrics.json: the final space, its quality against ground truth, the rule's
    op-score quality per round, and ranking within the space (from ``space_estimates.csv``)."""
    if cfg.shrink.rule == "none":
        return None
    space = Space(after["shrink"]["alive"])
    known = gt.archs()
    quality = space_quality(space.mask(), np.asarray(known), gt.query_many(known, query))
    log = pd.DataFrame(after["shrink"]["log"], columns=["round", "step", "score", "true_importance"])
    taus = [op_score_tau(g["score"].to_numpy(), g["true_importance"].to_numpy()) for _, g in log.groupby("round")]
    block = {"rule": cfg.shrink.rule, "options": cfg.shrink.options, "mode": cfg.shrink.mode,
             "rounds": after["shrink"]["done_rounds"], "round_steps": sorted(log["step"].unique().tolist()),
             "reached_target": target_reached(cfg.shrink, space),
             "final_space": space.describe(), **quality,
             "op_score_tau_by_round": taus, "op_score_tau_first_round": taus[0] if taus else None,
             "ranking_in_space": None, "n_space_estimated": 0}
    archs = _space_archs(cfg, gt, space) if cfg.shrink.estimate_space > 0 else []
    if len(archs) >= 2:
        frame, _ = _estimate(cfg, out, model, data, archs, progress, name="space_estimates")
        frame["ground_truth"] = gt.query_many(archs, query)
        write_csv(out / "space_estimates.csv", frame)
        block["ranking_in_space"] = ranking_report(frame["estimate"].to_numpy(), frame["ground_truth"].to_numpy(),
                                                   cfg.metrics.bootstrap, cfg.metrics.confidence, cfg.run.seed)
        block["n_space_estimated"] = len(archs)
    return block


def _load_trained(out: Path, model, device: torch.device) -> tuple[dict, dict]:
    saved = load_torch(out / "supernet.pt", "run checkpoint", map_location=device)
    if saved.get("split_step") is not None:
        model.split(saved["split_step"])
    model.load_state_dict(saved["model"])
    after = {"shrink": saved.get("shrink", {"alive": Space().alive, "done_rounds": 0, "log": []}),
             "split_step": saved.get("split_step")}
    if "search" in saved:
        after["search"] = saved["search"]
    return dict(saved["train"], resumed_after_training=True), after


def run_experiment(cfg: Config, out: str | Path, progress: bool = True) -> dict:
    """Run (or resume) one experiment into ``out``; returns the metrics dict also written to metrics.json.

    Everything that can fail on the config or the inputs fails before ``out`` is first written."""
    with trusting(cfg.run.trust_pickle), contextlib.ExitStack() as lock:
        metrics = _run_experiment(cfg, Path(out), progress, lock)
        (Path(out) / LOCK).unlink(missing_ok=True)  # a finished directory holds the run only
        return metrics


def _run_experiment(cfg: Config, out: Path, progress: bool, lock: contextlib.ExitStack) -> dict:
    device = resolve_device(cfg.run.device)
    if cfg.run.threads:
        torch.set_num_threads(cfg.run.threads)
    if not cfg.groundtruth.source:
        raise ConfigError("[groundtruth] source is empty: give the compact table or the official .pth file")
    gt = load_ground_truth(cfg.groundtruth.source)
    query = gt.check_query(GTQuery(cfg.groundtruth.dataset, cfg.groundtruth.metric, cfg.groundtruth.epochs,
                                   cfg.groundtruth.seeds))
    archs = select_archs(cfg, gt)
    truth = gt.query_many(archs, query)  # fails now, not after training, if an arch is missing
    status = check_run_dir(out, cfg)  # refuses a finished or different run before the data is loaded
    if not ESTIMATORS.get(cfg.estimator["name"]).trains:
        return _run_estimator(cfg, out, status, device, gt, query, archs, np.asarray(truth, dtype=float), progress,
                              lock)
    seed = cfg.run.seed
    random.seed(seed)
    np.random.seed(seed)
    torch.manual_seed(seed)
    data = build_data(cfg, device, seed)
    check_schedule(cfg, len(data.train), total_steps(cfg.train, len(data.train), make_sampler(cfg).paths_per_step))
    resuming = create_run_dir(out, cfg, status, lock)  # the first write: everything above can fail harmlessly
    write_json(out / "split.json", data.split_info)
    model = build_model(cfg, device)
    print(f"supernet: {json.dumps(model.describe())} on {device}" + (" (resuming)" if resuming else ""), file=sys.stderr)
    if (out / "supernet.pt").exists():
        train_info, after = _load_trained(out, model, device)
    else:
        known = gt.archs() if cfg.shrink.rule != "none" else []
        gt_truth = (np.asarray(known), gt.query_many(known, query)) if known else None
        train_info, after = _train_supernet(cfg, out, model, data, seed, progress, archs,
                                            np.asarray(truth, dtype=float), gt_truth)
    frame, est_seconds = _estimate(cfg, out, model, data, archs, progress)
    frame["ground_truth"] = truth
    frame["nb201_index"] = [gt.nb201_index(a) for a in archs]
    final = Space(after["shrink"]["alive"])
    frame["in_space"] = [a in final for a in archs]
    write_csv(out / "estimates.csv", frame)
    metrics = {
        "strategy": strategy_label(cfg),
        "ranking": ranking_report(frame["estimate"].to_numpy(), truth, cfg.metrics.bootstrap,
                                  cfg.metrics.confidence, seed),
        "ground_truth": {"source": relative_to_checkout(str(cfg.groundtruth.source), ROOT), "query": query.key, "dataset": query.dataset,
                         "metric": query.metric, "epochs": query.epochs, "seeds": query.seeds},
        "estimator": {"name": "inherited-weights accuracy", "bn_policy": model.bn_policy, "sampler": cfg.sampler},
        "train": train_info,
        "forgetting": _forgetting_summary(cfg, out, train_info["steps"]),
        "shrink": _shrink_report(cfg, out, model, data, gt, query, after, progress),
        "few_shot": model.describe().get("few_shot"),
        "alpha": search_report(out, after.get("search"), gt, query, archs, truth, cfg.metrics, seed),
        "estimate": {"n_archs": len(archs), "seconds": est_seconds, "archs_per_second": len(archs) / max(est_seconds, 1e-9),
                     "held_out_images": data.held_out.n, "mean_estimate": float(frame["estimate"].mean())},
        "split": data.split_info,
        "supernet": model.describe(),
        "environment": environment(device, seed),
    }
    write_json(out / "metrics.json", metrics)
    for name in ("estimates", "space_estimates"):
        (out / f"{name}.partial.csv").unlink(missing_ok=True)
    return metrics
