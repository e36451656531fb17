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
    metrics.json       ranking metrics with CIs, timings, environment -- written last: marks the run finished

An interrupted run resumes from the same directory (same config): training from the last
checkpoint, estimation from the architectures already written to ``estimates.partial.csv``.
"""
from __future__ import annotations

import json
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

from . import __version__
from .config import Config, ConfigError
from .data import DeviceBatches, load_dataset, nb201_split, normalization
from .estimate import estimate_archs
from .forgetting import ForgettingMonitor, choose_probes, schedule, summarise
from .groundtruth import GTQuery, load_ground_truth
from .io import save_torch, write_csv, write_json, write_text
from .metrics import kendall_tau, ranking_report, spearman
from .samplers import SAMPLERS
from .space import Arch, all_archs, parse_arch, sample_archs, unique_archs
from .supernet import Supernet
from .train import TrainState, make_optimizer, total_steps, train


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
            "cpu_threads": torch.get_num_threads(), "seed": seed, "git_revision": _git_revision()}


def _git_revision() -> str | None:
    root = Path(__file__).resolve().parents[1]
    try:
        rev = subprocess.run(["git", "rev-parse", "HEAD"], cwd=root, capture_output=True, text=True, timeout=5)
        dirty = subprocess.run(["git", "status", "--porcelain", "--untracked-files=no"], cwd=root,
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


def prepare_run_dir(out: Path, cfg: Config) -> bool:
    """Create ``out`` or check it can be resumed; returns True when resuming."""
    toml = cfg.to_toml()
    if (out / "metrics.json").exists():
        raise RunDirError(f"{out} holds a finished run (metrics.json exists); choose another --out or remove it")
    if (out / "config.toml").exists():
        if (out / "config.toml").read_text() != toml:
            raise RunDirError(f"{out} holds an unfinished run with a different config; choose another --out")
        return True
    if out.exists() and any(out.iterdir()):
        raise RunDirError(f"{out} exists and is not a run directory of this harness; choose another --out")
    out.mkdir(parents=True, exist_ok=True)
    write_text(out / "config.toml", toml)
    return False


@dataclass
class Data:
    train: DeviceBatches
    held_out: DeviceBatches
    split_info: dict


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
    split = nb201_split(images, d.split_file or None, seed=d.split_seed, original_order=d.original_order)
    train_idx = _subset(split.train, d.train_subset, d.split_seed + 1)
    valid_idx = _subset(split.valid, d.valid_subset, d.split_seed + 2)
    mean, std = normalization(cfg.groundtruth.dataset)
    res = d.resolution or None
    train_b = DeviceBatches(images, indices=train_idx, device=device, batch_size=cfg.train.batch_size, mean=mean,
                            std=std, augment=d.augment, resolution=res, seed=seed, drop_last=True)
    # held-out batches are cut in stored order (iter_fixed), so they draw no random numbers
    held = DeviceBatches(images, indices=valid_idx, device=device, batch_size=cfg.estimate.batch_size, mean=mean,
                         std=std, augment=False, resolution=res)
    info = dict(split.info, n_train_used=int(len(train_idx)), n_valid_used=int(len(valid_idx)),
                source=images.source, resolution=train_b.size[0])
    return Data(train_b, held, info)


def _tracker(cfg: Config, model: Supernet, data: Data, probe: list[Arch], truth: np.ndarray, steps: int):
    """``track(step)``: rank correlation of the probe architectures' inherited-weight accuracy at ``step``."""
    eval_batches = list(data.held_out.iter_fixed())
    calib = list(data.train.iter_fixed(cfg.estimate.recalib_batches)) if model.bn_policy == "recalibrate" else []

    def track(step: int) -> dict:
        rows = estimate_archs(model, probe, eval_batches, calib, progress=False)
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
        return [(r["loss"], r["estimate"]) for r in estimate_archs(model, todo, images, calib, progress=False)]

    return ForgettingMonitor(evaluate, [archs[i] for i in chosen], truth[chosen], probe_every, decay_every,
                             f.decay_lags, steps)


def _train_supernet(cfg: Config, out: Path, model: Supernet, data: Data, seed: int, progress: bool,
                    archs: list[Arch], truth: np.ndarray) -> dict:
    sampler_opts = dict(cfg.sampler)
    sampler = SAMPLERS.get(sampler_opts.pop("name"))(**sampler_opts)
    steps = total_steps(cfg.train, len(data.train), sampler.paths_per_step)
    monitor = _monitor(cfg, model, data, archs, truth, steps)
    opt, sched = make_optimizer(model, cfg.train, steps)
    rng, state = random.Random(seed), TrainState()
    ckpt = out / "checkpoint.pt"
    if ckpt.exists():
        saved = torch.load(ckpt, map_location=next(model.parameters()).device, weights_only=False)
        model.load_state_dict(saved["model"])
        opt.load_state_dict(saved["optimizer"])
        sched.load_state_dict(saved["scheduler"])
        sampler.load_state_dict(saved["sampler"])
        rng.setstate(saved["rng"])
        if monitor is not None:
            monitor.load_state_dict(saved["monitor"])
        data.train.generator.set_state(saved["generator"].to(data.train.generator.get_state().device))
        state = TrainState(**saved["state"])
        print(f"resuming training at step {state.step}/{steps}", file=sys.stderr)

    def checkpoint(st: TrainState) -> None:
        save_torch(ckpt, {"model": model.state_dict(), "optimizer": opt.state_dict(),
                          "scheduler": sched.state_dict(), "sampler": sampler.state_dict(), "rng": rng.getstate(),
                          "generator": data.train.generator.get_state(), "state": vars(st),
                          "monitor": monitor.state_dict() if monitor is not None else None})

    k = min(cfg.estimate.track_archs, len(archs))
    track = _tracker(cfg, model, data, archs[:k], truth[:k], steps) if cfg.estimate.track_every > 0 else None
    state = train(model, sampler, data.train.batches(), cfg.train, steps, rng, opt, sched, state,
                  checkpoint=checkpoint, progress=progress, track=track, track_every=cfg.estimate.track_every,
                  monitor=monitor)
    write_csv(out / "train_log.csv", pd.DataFrame(state.log))
    if state.progress:
        write_csv(out / "progress.csv", pd.DataFrame(state.progress))
    if monitor is not None:
        for name, frame in zip(("probes.csv", "decay.csv"), monitor.frames()):
            write_csv(out / name, frame)
    info = {"steps": steps, "paths": state.paths, "paths_per_step": sampler.paths_per_step, "seconds": state.seconds,
            "steps_per_second": steps / max(state.seconds, 1e-9),
            "final_loss": state.log[-1]["loss"] if state.log else None, "steps_per_epoch": len(data.train)}
    save_torch(out / "supernet.pt", {"model": model.state_dict(), "describe": model.describe(), "train": info})
    ckpt.unlink(missing_ok=True)
    return info


def _forgetting_summary(cfg: Config, out: Path, steps: int) -> dict | None:
    """The forgetting block of metrics.json, from the run's probes.csv / decay.csv."""
    if not (out / "probes.csv").exists():
        return None
    probes, decay = pd.read_csv(out / "probes.csv"), pd.read_csv(out / "decay.csv")
    probe_every, decay_every = schedule(cfg.forgetting, steps)
    return dict(summarise(probes, decay), probe_every=probe_every, decay_every=decay_every,
                decay_lags=cfg.forgetting.decay_lags, probe_images=cfg.forgetting.probe_images)


def _estimate(cfg: Config, out: Path, model: Supernet, data: Data, archs: list[Arch], progress: bool) -> tuple[pd.DataFrame, float]:
    partial = out / "estimates.partial.csv"
    done = pd.read_csv(partial) if partial.exists() else pd.DataFrame(columns=["arch", "estimate", "loss"])
    finished = set(done["arch"])
    todo = [a for a in archs if a.to_str() not in finished]
    rows = done.to_dict("records")

    def flush(chunk: list[dict]) -> None:
        rows.extend(chunk)
        write_csv(partial, pd.DataFrame(rows))

    start = time.perf_counter()
    eval_batches = list(data.held_out.iter_fixed())
    calib = list(data.train.iter_fixed(cfg.estimate.recalib_batches)) if model.bn_policy == "recalibrate" else []
    estimate_archs(model, todo, eval_batches, calib, on_flush=flush, progress=progress)
    seconds = time.perf_counter() - start
    frame = pd.DataFrame(rows).set_index("arch").loc[[a.to_str() for a in archs]].reset_index()
    return frame, seconds


def run_experiment(cfg: Config, out: str | Path, progress: bool = True) -> dict:
    """Run (or resume) one experiment into ``out``; returns the metrics dict also written to metrics.json."""
    out = Path(out)
    device = resolve_device(cfg.run.device)
    if not cfg.groundtruth.source:
        raise ConfigError("[groundtruth] source is empty: give the compact table or the official .pth file")
    gt = load_ground_truth(cfg.groundtruth.source)
    query = gt.check_query(GTQuery(cfg.groundtruth.dataset, cfg.groundtruth.metric, cfg.groundtruth.epochs,
                                   cfg.groundtruth.seeds))
    archs = select_archs(cfg, gt)
    truth = gt.query_many(archs, query)  # fails now, not after training, if an arch is missing
    resuming = prepare_run_dir(out, cfg)
    seed = cfg.run.seed
    random.seed(seed)
    np.random.seed(seed)
    torch.manual_seed(seed)
    data = build_data(cfg, device, seed)
    write_json(out / "split.json", data.split_info)
    model = Supernet(cfg.supernet.C, cfg.supernet.N, cfg.supernet.num_classes, cfg.supernet.bn_policy,
                     cfg.supernet.bn_affine).to(device)
    print(f"supernet: {json.dumps(model.describe())} on {device}" + (" (resuming)" if resuming else ""), file=sys.stderr)
    if (out / "supernet.pt").exists():
        saved = torch.load(out / "supernet.pt", map_location=device, weights_only=False)
        model.load_state_dict(saved["model"])
        train_info = dict(saved["train"], resumed_after_training=True)
    else:
        train_info = _train_supernet(cfg, out, model, data, seed, progress, archs, np.asarray(truth, dtype=float))
    frame, est_seconds = _estimate(cfg, out, model, data, archs, progress)
    frame["ground_truth"] = truth
    frame["nb201_index"] = [gt.nb201_index(a) for a in archs]
    write_csv(out / "estimates.csv", frame)
    metrics = {
        "strategy": cfg.sampler["name"],
        "ranking": ranking_report(frame["estimate"].to_numpy(), truth, cfg.metrics.bootstrap,
                                  cfg.metrics.confidence, seed),
        "ground_truth": {"source": str(cfg.groundtruth.source), "query": query.key, "dataset": query.dataset,
                         "metric": query.metric, "epochs": query.epochs, "seeds": query.seeds},
        "estimator": {"name": "inherited-weights accuracy", "bn_policy": model.bn_policy, "sampler": cfg.sampler},
        "train": train_info,
        "forgetting": _forgetting_summary(cfg, out, train_info["steps"]),
        "estimate": {"n_archs": len(archs), "seconds": est_seconds, "archs_per_second": len(archs) / max(est_seconds, 1e-9),
                     "held_out_images": data.held_out.n},
        "split": data.split_info,
        "supernet": model.describe(),
        "environment": environment(device, seed),
    }
    write_json(out / "metrics.json", metrics)
    (out / "estimates.partial.csv").unlink(missing_ok=True)
    return metrics
