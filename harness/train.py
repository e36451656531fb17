"""The supernet training loop: the measured hot path.

Per step: the sampler plans paths, each runs forward/backward on the same batch (gradients
accumulate), then one clipped SGD step. Nothing here synchronises with the host except every
``log_every`` steps, when the mean loss is read, checked for NaN/inf and logged.
"""
from __future__ import annotations

import contextlib
import math
import random
import signal
import sys
import threading
import time
from dataclasses import dataclass, field
from typing import Callable, Iterator, Protocol

import torch
import torch.nn.functional as F
from torch import nn
from tqdm.auto import tqdm

from . import batched
from . import progress as progress_report
from .config import TrainSection
from .samplers import Sampler
from .space import Arch


class TrainingDiverged(RuntimeError):
    """The training loss became NaN or infinite."""


class Interrupted(KeyboardInterrupt):
    """Ctrl-C during training: the run was checkpointed at ``step`` and resumes when rerun."""

    def __init__(self, step: int, steps: int):
        super().__init__(f"interrupted at step {step}/{steps}; checkpoint saved")
        self.step, self.steps = step, steps


@contextlib.contextmanager
def deferred_interrupt():
    """Within the block a first Ctrl-C (SIGINT) only sets ``flag[0]``, so the loop can stop at the next step
    boundary with a consistent checkpoint; a second Ctrl-C interrupts at once. Outside the main thread (where
    signal handlers cannot be set) it does nothing."""
    flag = [False]
    if threading.current_thread() is not threading.main_thread():
        yield flag
        return

    def handler(signum, frame):
        if flag[0]:
            raise KeyboardInterrupt
        flag[0] = True
        print("\ninterrupt: stopping after this step to save a checkpoint (Ctrl-C again to abort without one)",
              file=sys.stderr)

    previous = signal.signal(signal.SIGINT, handler)
    try:
        yield flag
    finally:
        signal.signal(signal.SIGINT, previous)


class Monitor(Protocol):
    """Measures the model during training (e.g. forgetting probes); its time is not training time."""

    def after_step(self, step: int, archs: list[Arch]) -> bool:
        """Called after every step with the architectures it trained; returns whether it used the model
        (the loop then restores training mode)."""


@dataclass
class TrainState:
    step: int = 0
    paths: int = 0  # forward/backward passes so far (a FairNAS step trains 5)
    log: list[dict] = field(default_factory=list)  # one row per log interval
    progress: list[dict] = field(default_factory=list)  # rows from the ``track`` callback
    seconds: float = 0.0
    running: float = 0.0  # summed loss since the last log row (checkpointed, so a resumed log row is identical)
    since: int = 0  # steps summed in running


def total_steps(cfg: TrainSection, steps_per_epoch: int, paths_per_step: float = 1) -> int:
    """Optimizer steps of a run: ``max_paths`` / the strategy's paths per step (equal compute), else
    ``max_steps``, else ``epochs`` of the training split."""
    if cfg.max_paths > 0:
        return max(1, int(cfg.max_paths // paths_per_step))
    return cfg.max_steps if cfg.max_steps > 0 else max(1, math.ceil(cfg.epochs * steps_per_epoch))


class ZeroingSGD(torch.optim.SGD):
    """SGD whose ``zero_grad`` zeroes gradients in place, as PyTorch 1.x's did (``[train] unsampled_ops =
    "zero"``): a parameter off the sampled path keeps a zero gradient instead of None, so SGD still applies
    momentum and weight decay to it. Parameters that never had a gradient stay None, as in 1.x."""

    def zero_grad(self, set_to_none: bool = True) -> None:
        super().zero_grad(set_to_none=False)


def make_optimizer(model: nn.Module, cfg: TrainSection, steps: int):
    """NB201's search recipe: SGD Nesterov, cosine from lr to lr_min over the run (per step)."""
    cls = ZeroingSGD if cfg.unsampled_ops == "zero" else torch.optim.SGD
    opt = cls(model.parameters(), lr=cfg.lr, momentum=cfg.momentum, nesterov=cfg.nesterov,
              weight_decay=cfg.weight_decay)
    sched = torch.optim.lr_scheduler.CosineAnnealingLR(opt, T_max=steps, eta_min=cfg.lr_min)
    return opt, sched


def train_step(model: nn.Module, sampler: Sampler, x: torch.Tensor, y: torch.Tensor, step: int,
               rng: random.Random, opt: torch.optim.Optimizer, grad_clip: float,
               engine: str = "eager") -> tuple[torch.Tensor, list[Arch]]:
    """One optimizer step over the sampler's plan; returns the weighted loss (a device scalar) and the
    architectures trained (the plan's order: the strategy's current architecture first).

    ``engine = "batched"`` runs the plan through :func:`batched_plan_losses` (several paths per pass on CUDA);
    ``"eager"`` one path at a time through ``model(x, arch)``, the reference it is tested against.
    """
    opt.zero_grad(set_to_none=True)
    plan = sampler.plan(step, rng)
    if engine == "batched" and batched.supports(model):
        losses = batched_plan_losses(model, plan, x, y)
    else:
        losses = _eager_plan_losses(model, plan, x, y)
    if grad_clip > 0:
        nn.utils.clip_grad_norm_(model.parameters(), grad_clip)
    opt.step()
    archs = [a for a, _ in plan]
    sampler.observe(step, archs, losses)
    return sum(w * loss for (_, w), loss in zip(plan, losses)), archs


def paths_per_pass(device: torch.device) -> int:
    """Paths the batched step runs in one pass: on CPU one (measured fastest there: larger activations leave the
    cache, reports/perf/README.md), on a launch-bound GPU all of a plan's paths at once."""
    return 1 if device.type == "cpu" else 64


def batched_plan_losses(model: nn.Module, plan, x: torch.Tensor, y: torch.Tensor) -> list[torch.Tensor]:
    """Forward and backward of every path of ``plan`` (``[(arch, weight)]``) through :mod:`harness.batched`;
    the gradients, BN running statistics and per-path losses equal :func:`_eager_plan_losses`'s to float rounding.

    The plan is cut into runs of consecutive paths with the same sub-supernet and the same gradient mode (weight 0:
    evaluated only), so BN running statistics are updated in plan order. Parameters that only paths whose loss
    does not depend on them touched keep no gradient, as in the eager step (:func:`harness.batched.live_parameters`).
    """
    params = [p for p in model.parameters()]
    was_none = [p for p in params if p.grad is None]
    live: set[int] = set()
    losses: list[torch.Tensor | None] = [None] * len(plan)
    per_pass = paths_per_pass(x.device)
    runs: list[tuple[int, bool, list[int]]] = []
    for i, (arch, weight) in enumerate(plan):
        key = (model.partition(arch), weight != 0)
        if runs and runs[-1][:2] == key and len(runs[-1][2]) < per_pass:
            runs[-1][2].append(i)
        else:
            runs.append((*key, [i]))
    for part, grad, members in runs:
        net = model.subnets()[part]
        paths = [plan[i][0] for i in members]
        with torch.set_grad_enabled(grad):
            logits = batched.forward_paths(net, x, paths, batched.Norm("train", len(paths)))
            per_path = F.cross_entropy(logits.permute(0, 2, 1), y[:, None].expand(-1, len(paths)),
                                       reduction="none").mean(0)
        if grad:
            weights = torch.tensor([float(plan[i][1]) for i in members], device=x.device, dtype=per_path.dtype)
            (weights @ per_path).backward()
            live |= batched.live_parameters(net, paths)
        for i, loss in zip(members, per_path.detach()):
            losses[i] = loss
    for p in was_none:
        if id(p) not in live:
            p.grad = None
    return losses


def _eager_plan_losses(model: nn.Module, plan, x: torch.Tensor, y: torch.Tensor) -> list[torch.Tensor]:
    losses = []
    for arch, weight in plan:
        if weight == 0:  # evaluated only: no gradient (NSAS's official constraint_grad = false)
            with torch.no_grad():
                loss = F.cross_entropy(model(x, arch), y)
        else:
            loss = F.cross_entropy(model(x, arch), y)
            (weight * loss).backward()  # gradients of the plan's paths accumulate into one step
        losses.append(loss.detach())
    return losses


def train(model: nn.Module, sampler: Sampler, batches: Iterator, cfg: TrainSection, steps: int,
          rng: random.Random, opt, sched, state: TrainState,
          checkpoint: Callable[[TrainState], None] | None = None, progress: bool = True,
          track: Callable[[int], dict] | None = None, track_every: int = 0,
          monitor: Monitor | None = None) -> TrainState:
    """Train from ``state.step`` to ``steps``; calls ``checkpoint(state)`` every ``checkpoint_every`` steps.

    With ``track``, ``track(step)`` is called every ``track_every`` steps and at the end; its row is kept in
    ``state.progress`` (it may evaluate the model; training mode is restored afterwards, and its time is not
    counted as training time).
    """
    with deferred_interrupt() as interrupted:
        return _train(model, sampler, batches, cfg, steps, rng, opt, sched, state, checkpoint, progress, track,
                      track_every, monitor, interrupted)


def _train(model, sampler, batches, cfg, steps, rng, opt, sched, state, checkpoint, progress, track, track_every,
           monitor, interrupted) -> TrainState:
    model.train()
    device = next(model.parameters()).device
    running = torch.tensor(state.running, device=device)
    since = state.since
    start = time.perf_counter()
    bar = tqdm(total=steps, initial=state.step, desc="train", unit="step", disable=not progress, leave=False)
    while state.step < steps:
        x, y = next(batches)
        if sampler.differentiable:  # a bilevel step of its own (harness/samplers/differentiable.py)
            loss_t, archs = sampler.train_step(model, x, y, state.step, rng, opt, cfg.grad_clip)
        else:
            loss_t, archs = train_step(model, sampler, x, y, state.step, rng, opt, cfg.grad_clip, cfg.engine)
        running += loss_t
        sched.step()
        state.step += 1
        state.paths += sampler.passes(archs)
        since += 1
        bar.update(1)
        progress_report.advance(state.step)
        if monitor is not None:
            paused = time.perf_counter()
            if monitor.after_step(state.step, archs):
                model.train()
            start += time.perf_counter() - paused
        due_log = state.step % cfg.log_every == 0 or state.step == steps
        stop = interrupted[0] and checkpoint is not None and state.step < steps
        due_ckpt = checkpoint is not None and state.step < steps and (
            stop or cfg.checkpoint_every > 0 and state.step % cfg.checkpoint_every == 0)
        if due_log or due_ckpt:
            # the only host sync: once per log interval, and before a checkpoint so a diverged model
            # never overwrites the last good one
            loss = running.item() / since
            if not math.isfinite(loss):
                bar.close()
                raise TrainingDiverged(
                    f"training loss became {loss} between steps {state.step - since} and {state.step}; "
                    "the last checkpoint in the run directory is intact (lower [train] lr or raise grad_clip)")
        if due_log:
            state.log.append({"step": state.step, "paths": state.paths, "loss": loss, "lr": sched.get_last_lr()[0],
                              "seconds": round(state.seconds + time.perf_counter() - start, 3)})
            bar.set_postfix(loss=f"{loss:.3f}")
            running.zero_()
            since = 0
        if track is not None and track_every > 0 and (state.step % track_every == 0 or state.step == steps):
            paused = time.perf_counter()
            state.progress.append(track(state.step))
            model.train()
            start += time.perf_counter() - paused  # tracking is measurement, not training
        if due_ckpt:
            now = time.perf_counter()
            state.seconds += now - start  # fold elapsed time in so the checkpoint carries it
            start = now
            state.running, state.since = running.item(), since
            checkpoint(state)
            if stop:
                bar.close()
                raise Interrupted(state.step, steps)
    bar.close()
    state.seconds += time.perf_counter() - start
    state.running, state.since = 0.0, 0  # a phase boundary starts a new log interval (as before)
    return state
