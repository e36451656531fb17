"""Supernet training in phases: the training loop (``harness.train.train``, untouched) runs from one event
to the next, and each event changes what is trained afterwards:

* a **shrink round** (``[shrink]``): the rule scores every alive (edge, op), the lowest-scored are removed
  (:func:`harness.shrinkers.choose_removals`), the sampler is restricted to what is left, and every score
  and decision is logged (``shrink.csv``: round, step, epoch, edge, op, score, true importance, removed);
* the **few-shot split** (``[split]``): the supernet becomes sub-supernets (:mod:`harness.fewshot`) and the
  optimizer moves over to their parameters.

Rounds fall at ``warmup_epochs``, then every ``shrink_every`` epochs, until every edge is down to ``min_ops``
(or the space to ``target_size``). A checkpoint is written after every event, holding the alive space, the
log and whether the split happened, so an interrupted run resumes with the same space and model layout.
"""
from __future__ import annotations

import random
import sys
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable

import numpy as np
import pandas as pd
import torch

from . import progress as progress_report
from .config import Config, ConfigError, ShrinkSection
from .fewshot import FewShotSupernet, continue_training
from .io import save_torch, write_csv
from .safeload import load_torch
from .shrinkers import SHRINKERS, ScoreContext, Space, choose_removals, edge_name
from .shrinkers.quality import op_importance, op_score_tau
from .space import NUM_EDGES, NUM_OPS, OPS
from .train import TrainState, make_optimizer, train


def round_steps(sh: ShrinkSection, steps_per_epoch: int, steps: int) -> list[int]:
    """Steps after which a shrink round may run (they stop early once the target is reached)."""
    if sh.rule == "none":
        return []
    first, every = round(sh.warmup_epochs * steps_per_epoch), max(1, round(sh.shrink_every * steps_per_epoch))
    out = list(range(first, steps, every)) + ([steps] if sh.at_end else [])
    if not out:
        raise ConfigError(f"[shrink] rule = {sh.rule!r} but warmup_epochs = {sh.warmup_epochs} is not inside the run "
                          f"({steps} steps = {steps / steps_per_epoch:.2f} epochs of {steps_per_epoch} steps): no "
                          "round would run; lower warmup_epochs (or set at_end = true for a round after training)")
    return out[:sh.max_rounds] if sh.max_rounds > 0 else out


def rounds_needed(sh: ShrinkSection) -> int:
    """Rounds that take every edge from 5 ops to ``min_ops`` (fewer when ``target_size`` stops them first)."""
    per_edge = NUM_OPS - sh.min_ops
    return -(-per_edge // sh.drop) if sh.mode == "per_edge" else -(-per_edge * NUM_EDGES // sh.drop)


def target_reached(sh: ShrinkSection, space: Space) -> bool:
    """Every edge is down to ``min_ops``, or the space to ``target_size`` (when set)."""
    return (all(len(ops) <= sh.min_ops for ops in space.alive)
            or 0 < sh.target_size and space.size <= sh.target_size)


@dataclass
class ShrinkState:
    """The alive space, the rounds run so far and their log (one row per alive (edge, op) per round)."""

    cfg: ShrinkSection
    steps_per_epoch: int
    rounds: list[int]  # candidate round steps
    space: Space = field(default_factory=Space)
    done_rounds: int = 0
    log: list[dict] = field(default_factory=list)

    @property
    def finished(self) -> bool:
        return self.cfg.rule == "none" or target_reached(self.cfg, self.space)

    def due(self, step: int) -> bool:
        return not self.finished and self.done_rounds < len(self.rounds) and self.rounds[self.done_rounds] <= step

    def next_step(self) -> int | None:
        return None if self.finished or self.done_rounds >= len(self.rounds) else self.rounds[self.done_rounds]

    def run_round(self, model, step: int, ctx: ScoreContext, truth: tuple[np.ndarray, np.ndarray] | None) -> None:
        rule = SHRINKERS.get(self.cfg.rule)(**self.cfg.options)
        scores = rule.scores(model, self.space, ctx)
        mask = self.space.mask()
        importance = op_importance(*truth, mask) if truth is not None else np.full(mask.shape, np.nan)
        removed = choose_removals(scores, self.space, self.cfg.mode, self.cfg.drop, self.cfg.min_ops,
                                  self.cfg.target_size)
        for e, ops in enumerate(self.space.alive):
            for o in ops:
                self.log.append({"round": self.done_rounds + 1, "step": step, "epoch": step / self.steps_per_epoch,
                                 "edge": e, "edge_name": edge_name(e), "op": o, "op_name": OPS[o],
                                 "score": float(scores[e, o]), "true_importance": float(importance[e, o]),
                                 "removed": (e, o) in removed})
        for e, o in removed:
            self.space.remove(e, o)
        self.done_rounds += 1
        tau = op_score_tau(scores, importance)
        print(f"shrink round {self.done_rounds} at step {step}: removed "
              f"{', '.join(f'{OPS[o]} on {edge_name(e)}' for e, o in removed) or 'nothing'}; space {self.space.size} "
              f"architectures; op-score tau {tau:.3f}", file=sys.stderr)

    def frame(self) -> pd.DataFrame:
        return pd.DataFrame(self.log, columns=["round", "step", "epoch", "edge", "edge_name", "op", "op_name", "score",
                                               "true_importance", "removed"])

    def state_dict(self) -> dict:
        return {"alive": self.space.alive, "done_rounds": self.done_rounds, "log": self.log}

    def load_state_dict(self, state: dict) -> None:
        self.space, self.done_rounds, self.log = Space(state["alive"]), state["done_rounds"], list(state["log"])


@dataclass
class Hooks:
    """What the runner lends the phases: probes/tracking during training, scoring and ground truth."""

    monitor: object | None = None
    track: Callable[[int], dict] | None = None
    evaluate: Callable | None = None  # child models on fixed held-out images -> [(loss, acc)] (accuracy rule)
    truth: tuple[np.ndarray, np.ndarray] | None = None  # (ops (n, 6), accuracy) of the architectures the ground truth holds


def initial_weights(out: Path, model, needed: bool) -> dict | None:
    """The supernet's parameters at initialisation, stored once in ``init_weights.pt`` (the angle rule)."""
    if not needed:
        return None
    path = out / "init_weights.pt"
    if path.exists():
        return load_torch(path, "run checkpoint")
    state = {n: p.detach().cpu().clone() for n, p in model.subnets()[0].named_parameters()}
    save_torch(path, state)
    return state


def _global_rngs() -> dict:
    """Python's, numpy's and torch's global generators (nothing in training should draw from them, but a
    plugin might; a resumed run then still draws what an uninterrupted one would)."""
    state = {"python": random.getstate(), "numpy": np.random.get_state(), "torch": torch.get_rng_state()}
    if torch.cuda.is_available() and torch.cuda.is_initialized():
        state["cuda"] = torch.cuda.get_rng_state_all()
    return state


def _set_global_rngs(state: dict | None) -> None:
    if not state:
        return
    random.setstate(state["python"])
    np.random.set_state(state["numpy"])
    torch.set_rng_state(state["torch"])
    if "cuda" in state and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(state["cuda"])


def _restore_batches(batches, saved: dict) -> None:
    if "batches" in saved:
        batches.load_state_dict(saved["batches"])
    else:  # an older checkpoint: the generator only (resumes at the start of a new epoch)
        gen = batches.source.generator
        gen.set_state(saved["generator"].to(gen.get_state().device))


def check_schedule(cfg: Config, steps_per_epoch: int, steps: int) -> tuple[list[int], int | None]:
    """The steps of the shrink rounds and of the split; ConfigError when they do not fit in the run (the runner
    calls this before it writes anything)."""
    rounds = round_steps(cfg.shrink, steps_per_epoch, steps)
    split_at = None if not cfg.split.edges or cfg.split.after_shrink else round(cfg.split.at_epochs * steps_per_epoch)
    needed = rounds_needed(cfg.shrink)
    if cfg.split.after_shrink and not cfg.shrink.target_size and needed > len(rounds):
        raise ConfigError(f"[split] after_shrink: shrinking needs {needed} rounds to reach min_ops = "
                          f"{cfg.shrink.min_ops} but the run has room for {len(rounds)}, so the supernet would "
                          "never be split; shorten warmup_epochs/shrink_every or raise drop")
    if split_at is not None and split_at >= steps:
        raise ConfigError(f"[split] at_epochs = {cfg.split.at_epochs} is not inside the run ({steps} steps = "
                          f"{steps / steps_per_epoch:.2f} epochs): the supernet would never be split")
    return rounds, split_at


def train_supernet(cfg: Config, out: Path, model, sampler, batches, steps: int, steps_per_epoch: int,
                   seed: int, hooks: Hooks, progress: bool = True) -> tuple[TrainState, ShrinkState]:
    """Train ``model`` for ``steps`` optimizer steps with the shrink rounds and split of ``cfg`` (resuming from
    ``out/checkpoint.pt`` when it exists); returns the training state and the shrink state."""
    rounds, split_at = check_schedule(cfg, steps_per_epoch, steps)
    shrink = ShrinkState(cfg.shrink, steps_per_epoch, rounds)
    init_state = initial_weights(out, model, SHRINKERS.get(cfg.shrink.rule).needs_init_state)
    # [split] schedule = "fresh" (the official few-shot protocol, aoiang/few-shot-NAS
    # Few-Shot_NasBench201/exps/supernet/few-shot-supernet_train.py:116,142,146-147: each sub-supernet starts from
    # the transferred weights with a new SGD and cosine schedule): one schedule up to the split, a new one after
    fresh = cfg.split.schedule == "fresh" and split_at is not None
    before_split, after_split = (split_at, steps - split_at) if fresh else (steps, steps)
    opt, sched = make_optimizer(model, cfg.train, before_split)
    rng, state = random.Random(seed), TrainState()
    ckpt = out / "checkpoint.pt"
    if ckpt.exists():
        saved = load_torch(ckpt, "run checkpoint", map_location=next(model.parameters()).device)
        if saved.get("split_step") is not None:
            model.split(saved["split_step"])
            sampler.split(model.edges)
            opt, sched = make_optimizer(model, cfg.train, after_split)
        model.load_state_dict(saved["model"])
        opt.load_state_dict(saved["optimizer"])
        sched.load_state_dict(saved["scheduler"])
        shrink.load_state_dict(saved["shrink"])
        sampler.restrict(shrink.space.alive)
        sampler.load_state_dict(saved["sampler"])
        rng.setstate(saved["rng"])
        if hooks.monitor is not None:
            hooks.monitor.load_state_dict(saved["monitor"])
        _restore_batches(batches, saved)
        _set_global_rngs(saved.get("global_rngs"))
        state = TrainState(**saved["state"])
        print(f"resuming training at step {state.step}/{steps}", file=sys.stderr)

    def checkpoint(st: TrainState) -> None:
        save_torch(ckpt, {"model": model.state_dict(), "optimizer": opt.state_dict(), "scheduler": sched.state_dict(),
                          "sampler": sampler.state_dict(), "rng": rng.getstate(), "batches": batches.state_dict(),
                          "global_rngs": _global_rngs(),
                          "state": vars(st), "shrink": shrink.state_dict(),
                          "split_step": getattr(model, "split_step_", None),
                          "monitor": hooks.monitor.state_dict() if hooks.monitor is not None else None})

    def events(step: int) -> bool:
        nonlocal opt, sched
        changed = False
        while shrink.due(step):
            ctx = ScoreContext(random.Random(f"shrink-{seed}-{shrink.done_rounds}"), hooks.evaluate, init_state,
                               getattr(sampler, "alpha", None))
            shrink.run_round(model, step, ctx, hooks.truth)
            sampler.restrict(shrink.space.alive)
            write_csv(out / "shrink.csv", shrink.frame())
            changed = True
        want_split = (split_at is not None and step >= split_at) or (cfg.split.after_shrink and shrink.finished)
        if isinstance(model, FewShotSupernet) and want_split and not model.is_split:
            parent = dict(model.nets[0].named_parameters())
            model.split(step)
            sampler.split(model.edges)
            if fresh:
                opt, sched = make_optimizer(model, cfg.train, after_split)
            else:
                opt, sched = continue_training(model, parent, opt, sched,
                                               lambda m: make_optimizer(m, cfg.train, steps))
            print(f"few-shot split at step {step}: {len(model.nets)} sub-supernets on edges "
                  f"{[edge_name(e) for e in model.edges]}", file=sys.stderr)
            changed = True
        return changed

    progress_report.begin("train", steps, state.step)
    while True:
        if events(state.step) and state.step < steps:
            checkpoint(state)
        if state.step >= steps:
            break
        pending = [s for s in (shrink.next_step(), split_at) if s is not None and s > state.step]
        state = train(model, sampler, batches, cfg.train, min(pending + [steps]), rng, opt, sched, state,
                      checkpoint=checkpoint, progress=progress, track=hooks.track,
                      track_every=cfg.estimate.track_every, monitor=hooks.monitor)
    return state, shrink
