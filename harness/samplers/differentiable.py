"""Differentiable search: architecture parameters alpha trained jointly with the supernet weights.

These strategies do not plan single paths; they own alpha (a (6, 5) tensor of per-edge op logits shared by
every cell, as in NB201's DARTS and GDAS) and replace the plan-based step with their own
:meth:`DifferentiableSampler.train_step`: a bilevel step that updates the weights on a training batch (the
loop's SGD optimizer, NB201's recipe) and alpha on a batch of the *search* half (the held-out half of the
cifar10-valid split, less the images kept for estimation) with Adam. The supernet's weights keep the
single-path layout, so the run is estimated exactly like any other (inherited weights of each single path).

Compute is counted in single-path equivalents (``paths_per_step``, for ``[train] max_paths``): a mixed-op
forward/backward counts :data:`MIXED_PASS` = 4 (the four ops that run; ``none`` runs nothing; measured 4.8x a
single path on CPU at C=8, N=2, 16x16) and a forward without backward a third of that.

* ``darts`` (Liu, Simonyan & Yang, ICLR 2019): every op on every edge, weighted by softmax(alpha) (the mixed
  op, :meth:`harness.supernet.Supernet.forward_weighted`). First order by default (weights step, then alpha
  step on the search batch, as xautodl's DARTS-V1); ``unrolled = true`` is the second-order step (alpha step
  first, through a virtual SGD step of the weights with the optimizer's lr, momentum and weight decay, the
  implicit term by finite differences, as DARTS-V2).
* ``sd-darts`` (Zhu, Li, Liu & Wang, "Improving Differentiable Architecture Search via Self-Distillation",
  2023): DARTS plus self-distillation from the supernet's own earlier states. Every ``snapshot_every`` steps the
  supernet (weights and alpha) is copied; the ``teachers`` most recent (``select = "recent"``) or the
  lowest-search-loss of the last ``pool`` (``select = "best"``) are the voting teachers. Their class
  probabilities at ``temperature`` on the training batch are aggregated by :func:`harness.alpha.vote` (``mean``
  of probabilities, or ``majority`` of their argmax), and ``beta * temperature**2 * KL(teacher || student)``
  is added to the weight loss.
"""
from __future__ import annotations

import copy
from typing import Iterator

import torch
import torch.nn.functional as F
from torch import nn

from ..alpha import VOTE_RULES, derived_arch, vote
from ..space import NUM_EDGES, NUM_OPS, Arch
from .base import SAMPLERS, Sampler, check_allowed


MIXED_PASS = 4


class DifferentiableSampler(Sampler):
    """Owns alpha and its Adam optimizer; the runner calls :meth:`attach` before training.

    Defaults are NB201's DARTS settings (xautodl ``configs/nas-benchmark/algos``): Adam lr 3e-4, betas
    (0.5, 0.999), weight decay 1e-3; alpha initialised as 1e-3 * N(0, 1)."""

    name = "differentiable"
    differentiable = True
    shrinkable = False  # alpha covers every op; only uniform-alpha (joint.py) trains single paths that a round can narrow

    def __init__(self, arch_lr: float = 3e-4, arch_beta1: float = 0.5, arch_beta2: float = 0.999,
                 arch_weight_decay: float = 1e-3, alpha_init_scale: float = 1e-3):
        if arch_lr <= 0 or not (0 <= arch_beta1 < 1 and 0 <= arch_beta2 < 1) or arch_weight_decay < 0:
            raise ValueError("need arch_lr > 0, arch_beta1 and arch_beta2 in [0, 1), arch_weight_decay >= 0")
        if alpha_init_scale < 0:
            raise ValueError(f"alpha_init_scale must be >= 0, got {alpha_init_scale}")
        self.arch_lr, self.arch_betas, self.arch_weight_decay = arch_lr, (arch_beta1, arch_beta2), arch_weight_decay
        self.alpha_init_scale = alpha_init_scale
        self.allowed = [list(range(NUM_OPS)) for _ in range(NUM_EDGES)]
        self.alpha: nn.Parameter | None = None

    def attach(self, model: nn.Module, search: Iterator[tuple[torch.Tensor, torch.Tensor]], steps: int,
               seed: int) -> None:
        """Create alpha on the model's device (seeded) and the stream of search batches the alpha steps use."""
        device = next(model.parameters()).device
        init = torch.randn(NUM_EDGES, NUM_OPS, generator=torch.Generator().manual_seed(seed))
        self.alpha = nn.Parameter((self.alpha_init_scale * init).to(device))
        self.arch_opt = torch.optim.Adam([self.alpha], lr=self.arch_lr, betas=self.arch_betas,
                                         weight_decay=self.arch_weight_decay)
        self.search, self.steps = search, steps
        self.noise = torch.Generator(device).manual_seed(seed + 1)  # for strategies that sample (GDAS)

    def passes(self, archs) -> float:
        return self.paths_per_step

    def _check_attached(self) -> None:
        if self.alpha is None:
            raise RuntimeError(f"{self.name}: call attach(model, search_batches, steps, seed) before training")

    def restrict(self, allowed) -> None:
        if check_allowed(allowed) != self.allowed:
            raise ValueError(f"{self.name} trains every op through alpha; search-space shrinking does not apply to it")

    def plan(self, step: int, rng):
        raise TypeError(f"{self.name} is differentiable: it trains through train_step, not single-path plans")

    def train_step(self, model: nn.Module, x: torch.Tensor, y: torch.Tensor, step: int, rng, opt,
                   grad_clip: float) -> tuple[torch.Tensor, list[Arch]]:
        raise NotImplementedError

    def weight_update(self, model: nn.Module, loss: torch.Tensor, opt, grad_clip: float) -> None:
        opt.zero_grad(set_to_none=True)
        loss.backward()
        if grad_clip > 0:
            nn.utils.clip_grad_norm_(model.parameters(), grad_clip)
        opt.step()

    def arch_update(self, grad: torch.Tensor) -> None:
        self.arch_opt.zero_grad(set_to_none=True)
        self.alpha.grad = grad
        self.arch_opt.step()

    def derived(self) -> Arch:
        """argmax alpha per edge (one host sync)."""
        return derived_arch(self.alpha)

    def state_dict(self) -> dict:
        self._check_attached()
        return {"alpha": self.alpha.detach().clone(), "arch_opt": self.arch_opt.state_dict(),
                "noise": self.noise.get_state(),
                "search": self.search.state_dict() if hasattr(self.search, "state_dict") else None}

    def load_state_dict(self, state: dict) -> None:
        self._check_attached()
        with torch.no_grad():
            self.alpha.copy_(state["alpha"])
        self.arch_opt.load_state_dict(state["arch_opt"])
        self.noise.set_state(state["noise"].to(self.noise.get_state().device))
        if state.get("search") is not None:  # the search batches' order and position (mid-epoch resume)
            self.search.load_state_dict(state["search"])


def _forward(model: nn.Module, x: torch.Tensor, alpha: torch.Tensor) -> torch.Tensor:
    return model.forward_weighted(x, alpha.softmax(-1))


@SAMPLERS.register("darts")
class DARTSSampler(DifferentiableSampler):
    name = "darts"

    def __init__(self, unrolled: bool = False, arch_lr: float = 3e-4, arch_beta1: float = 0.5,
                 arch_beta2: float = 0.999, arch_weight_decay: float = 1e-3, alpha_init_scale: float = 1e-3):
        super().__init__(arch_lr, arch_beta1, arch_beta2, arch_weight_decay, alpha_init_scale)
        self.unrolled = bool(unrolled)
        # first order: weight pass + alpha pass; unrolled adds the virtual step, the search pass through it and
        # the two finite-difference passes
        self.paths_per_step = (5 if self.unrolled else 2) * MIXED_PASS
        self._shadow: nn.Module | None = None
        self.search_loss_: torch.Tensor | None = None

    def weight_loss(self, model: nn.Module, x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        return F.cross_entropy(_forward(model, x, self.alpha.detach()), y)

    def train_step(self, model, x, y, step, rng, opt, grad_clip):
        self._check_attached()
        xs, ys = next(self.search)
        if self.unrolled:  # DARTS-V2: alpha through a virtual weight step first
            self.arch_update(self.unrolled_grad(model, x, y, xs, ys, opt))
        loss = self.weight_loss(model, x, y)
        self.weight_update(model, loss, opt, grad_clip)
        if not self.unrolled:  # DARTS-V1: weights, then alpha on the search batch
            search_loss = F.cross_entropy(_forward(model, xs, self.alpha), ys)
            (grad,) = torch.autograd.grad(search_loss, self.alpha)
            self.arch_update(grad)
            self.search_loss_ = search_loss.detach()  # of the weights just updated (sd-darts's "best" teachers)
        return loss.detach(), [self.derived()]

    def unrolled_grad(self, model, x, y, xs, ys, opt) -> torch.Tensor:
        """d L_search(w', alpha) / d alpha with w' = w - lr * (momentum * buf + grad L_train(w) + wd * w), the
        second-order term by central finite differences (DARTS eq. 7-8, epsilon = 0.01 / ||grad_w' L_search||)."""
        params = [p for p in model.parameters()]
        group = opt.param_groups[0]
        lr, mom, wd = group["lr"], group.get("momentum", 0.0), group.get("weight_decay", 0.0)
        grads = torch.autograd.grad(self.weight_loss(model, x, y), params, allow_unused=True)
        if self._shadow is None:
            self._shadow = copy.deepcopy(model)
        shadow = self._shadow
        with torch.no_grad():
            for sp, p, g in zip(shadow.parameters(), params, grads):
                buf = opt.state.get(p, {}).get("momentum_buffer")
                d = (g if g is not None else torch.zeros_like(p)) + wd * p + (mom * buf if buf is not None else 0.0)
                sp.copy_(p - lr * d)
            for sb, b in zip(shadow.buffers(), model.buffers()):
                sb.copy_(b)
        out = torch.autograd.grad(F.cross_entropy(_forward(shadow, xs, self.alpha), ys),
                                  [self.alpha] + list(shadow.parameters()), allow_unused=True)
        d_alpha, d_w = out[0], [g if g is not None else torch.zeros_like(p) for g, p in zip(out[1:], params)]
        eps = 0.01 / (torch.cat([g.flatten() for g in d_w]).norm() + 1e-12)

        def train_grad_alpha(sign: float) -> torch.Tensor:
            # w +- eps * dw with eps on the device: no host read (it was one per parameter and step, ~800 on a GPU)
            step = torch._foreach_mul(d_w, sign * eps)
            with torch.no_grad():
                torch._foreach_add_(params, step)
            (g_a,) = torch.autograd.grad(F.cross_entropy(_forward(model, x, self.alpha), y), self.alpha)
            with torch.no_grad():
                torch._foreach_sub_(params, step)
            return g_a

        implicit = (train_grad_alpha(1.0) - train_grad_alpha(-1.0)) / (2 * eps)
        return d_alpha - lr * implicit


@SAMPLERS.register("sd-darts")
class SDDARTSSampler(DARTSSampler):
    name = "sd-darts"
    SELECT = ("recent", "best")

    def __init__(self, teachers: int = 3, select: str = "recent", pool: int = 6, snapshot_every: int = 1,
                 beta: float = 1.0, temperature: float = 2.0, vote: str = "mean", unrolled: bool = False,
                 arch_lr: float = 3e-4, arch_beta1: float = 0.5, arch_beta2: float = 0.999,
                 arch_weight_decay: float = 1e-3, alpha_init_scale: float = 1e-3):
        super().__init__(unrolled, arch_lr, arch_beta1, arch_beta2, arch_weight_decay, alpha_init_scale)
        if teachers < 1 or snapshot_every < 1 or beta < 0 or temperature <= 0:
            raise ValueError("sd-darts needs teachers >= 1, snapshot_every >= 1, beta >= 0, temperature > 0")
        if select not in self.SELECT:
            raise ValueError(f"select = {select!r}; valid: {', '.join(self.SELECT)}")
        if vote not in VOTE_RULES:
            raise ValueError(f"vote = {vote!r}; valid: {', '.join(VOTE_RULES)}")
        if select == "best" and pool < teachers:
            raise ValueError(f"select = 'best' needs pool ({pool}) >= teachers ({teachers})")
        self.teachers, self.select, self.snapshot_every = teachers, select, snapshot_every
        self.pool = pool if select == "best" else teachers
        self.beta, self.temperature, self.vote = beta, temperature, vote
        self.snapshots_: list[dict] = []  # {"step", "loss", "alpha", "model"}, oldest first
        self.paths_per_step = self.paths_per_step + teachers * MIXED_PASS / 3  # teacher forwards

    def passes(self, archs) -> float:
        return self.paths_per_step - (self.teachers - len(self.chosen())) * MIXED_PASS / 3

    def chosen(self) -> list[dict]:
        """The voting teachers among the stored snapshots: the most recent, or the lowest search loss."""
        if self.select == "recent":
            return self.snapshots_[-self.teachers:]
        return sorted(self.snapshots_, key=lambda s: (s["loss"], -s["step"]))[:self.teachers]

    def teacher_distribution(self, x: torch.Tensor) -> torch.Tensor | None:
        """The voted teacher probabilities on ``x``, (B, classes); None before the first snapshot."""
        chosen = self.chosen()
        if not chosen:
            return None
        with torch.no_grad():
            probs = torch.stack([(_forward(s["model"], x, s["alpha"]) / self.temperature).softmax(-1) for s in chosen])
        return vote(probs, self.vote)

    def weight_loss(self, model, x, y):
        logits = _forward(model, x, self.alpha.detach())
        loss = F.cross_entropy(logits, y)
        teacher = self.teacher_distribution(x)
        if teacher is None or self.beta == 0:
            return loss
        student = F.log_softmax(logits / self.temperature, -1)
        kl = F.kl_div(student, teacher, reduction="batchmean")  # KL(teacher || student)
        return loss + self.beta * self.temperature ** 2 * kl

    def train_step(self, model, x, y, step, rng, opt, grad_clip):
        loss, archs = super().train_step(model, x, y, step, rng, opt, grad_clip)
        if (step + 1) % self.snapshot_every == 0:
            self.snapshot(model, step + 1)
        return loss, archs

    def snapshot(self, model: nn.Module, step: int, loss: float | None = None) -> None:
        """Store the supernet after ``step`` steps (reusing the oldest slot's module once the pool is full).
        ``loss``: its search loss (for ``select = "best"``): by default the loss of this step's alpha update,
        which DARTS-V1 computes on exactly these weights; with ``unrolled`` one extra search batch is measured."""
        if loss is None and self.select == "best":
            if self.unrolled or self.search_loss_ is None:
                xs, ys = next(self.search)
                with torch.no_grad():
                    self.search_loss_ = F.cross_entropy(_forward(model, xs, self.alpha), ys)
            loss = float(self.search_loss_)
        slot = self.snapshots_.pop(0) if len(self.snapshots_) >= self.pool else {"model": copy.deepcopy(model)}
        with torch.no_grad():
            for t, s in zip(slot["model"].state_dict().values(), model.state_dict().values()):
                t.copy_(s)
        slot.update(step=step, loss=loss, alpha=self.alpha.detach().clone())
        slot["model"].train()
        self.snapshots_.append(slot)

    def state_dict(self) -> dict:
        return dict(super().state_dict(), snapshots=[
            {"step": s["step"], "loss": s["loss"], "alpha": s["alpha"], "model": s["model"].state_dict()}
            for s in self.snapshots_])

    def load_state_dict(self, state: dict) -> None:
        super().load_state_dict(state)
        self.snapshots_ = []
        for saved in state.get("snapshots", []):
            module = copy.deepcopy(self._template)
            module.load_state_dict(saved["model"])
            module.train()
            self.snapshots_.append({"step": saved["step"], "loss": saved["loss"], "alpha": saved["alpha"],
                                    "model": module})

    def attach(self, model, search, steps, seed) -> None:
        super().attach(model, search, steps, seed)
        self._template = model  # the layout snapshots are restored into

