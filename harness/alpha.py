"""Architecture parameters (alpha) of differentiable search: what they say about architectures, and how sharp
the validation loss is around them.

``alpha`` is a (6, 5) tensor, one row of op logits per edge in NB201 order, shared by every cell (NB201's
DARTS and GDAS). Everything here is a pure function of alpha and, for sharpness, of a loss closure.
"""
from __future__ import annotations

from typing import Callable

import numpy as np
import torch

from .space import NUM_EDGES, NUM_OPS, OPS, PARAMETRIC_OPS, Arch

VOTE_RULES = ("mean", "majority")


def check_alpha(alpha) -> np.ndarray:
    a = np.asarray(alpha.detach().cpu() if isinstance(alpha, torch.Tensor) else alpha, dtype=np.float64)
    if a.shape != (NUM_EDGES, NUM_OPS) or not np.isfinite(a).all():
        raise ValueError(f"alpha must be a finite ({NUM_EDGES}, {NUM_OPS}) array, got shape {a.shape}")
    return a


def log_softmax(alpha) -> np.ndarray:
    a = check_alpha(alpha)
    shifted = a - a.max(axis=1, keepdims=True)
    return shifted - np.log(np.exp(shifted).sum(axis=1, keepdims=True))


def alpha_score(alpha, ops: np.ndarray) -> np.ndarray:
    """The alpha-score of architectures: sum over edges of log-softmax(alpha)[edge, op]; ops: (n, 6) -> (n,).

    It is the log-probability of the architecture under the per-edge softmax distributions, so the derived
    architecture (argmax per edge) scores highest."""
    ops = np.asarray(ops, dtype=np.int64).reshape(-1, NUM_EDGES)
    return log_softmax(alpha)[np.arange(NUM_EDGES), ops].sum(axis=1)


def rank_by_score(scores: np.ndarray, indices: np.ndarray) -> np.ndarray:
    """Ranks 1..n (1 = highest score); equal scores are ordered by NB201 index, so the ranking is total and
    the same on every machine for the same scores (alpha at initialisation ties many architectures)."""
    scores, indices = np.asarray(scores, dtype=np.float64), np.asarray(indices)
    order = np.lexsort((indices, -scores))
    ranks = np.empty(len(scores), dtype=np.int64)
    ranks[order] = np.arange(1, len(scores) + 1)
    return ranks


def derived_arch(alpha) -> Arch:
    """The architecture DARTS derives: the highest-alpha op of every edge (the first on a tie)."""
    return Arch(int(o) for o in check_alpha(alpha).argmax(axis=1))


def parameter_free_fraction(arch: Arch) -> float:
    """Share of the 6 edges whose op has no parameters (none, skip_connect, avg_pool_3x3): DARTS's collapse."""
    return sum(op not in PARAMETRIC_OPS for op in arch) / NUM_EDGES


def op_probabilities(alpha) -> dict[str, float]:
    """Flat ``{"e{edge}_{op}": softmax probability}`` for logging alpha per epoch."""
    p = np.exp(log_softmax(alpha))
    return {f"e{e}_{OPS[o]}": float(p[e, o]) for e in range(NUM_EDGES) for o in range(NUM_OPS)}


def vote(probs: torch.Tensor, rule: str = "mean") -> torch.Tensor:
    """Aggregate teacher predictions into one teacher distribution. probs: (T, B, C) -> (B, C).

    ``mean``: the mean of the teachers' (temperature-softened) class probabilities. ``majority``: each teacher
    votes for its argmax class and the distribution is the share of votes per class (hard voting)."""
    if probs.ndim != 3 or probs.shape[0] < 1:
        raise ValueError(f"teacher probabilities must be (T >= 1, B, C), got {tuple(probs.shape)}")
    if rule == "mean":
        return probs.mean(0)
    if rule == "majority":
        votes = torch.nn.functional.one_hot(probs.argmax(-1), probs.shape[-1]).to(probs.dtype)
        return votes.mean(0)
    raise ValueError(f"unknown vote rule {rule!r}; valid: {', '.join(VOTE_RULES)}")


def _power(hvp: Callable[[torch.Tensor], torch.Tensor], v: torch.Tensor, iters: int, tol: float
           ) -> tuple[float, int]:
    """Power iteration on the symmetric operator ``hvp``: (largest-magnitude eigenvalue, iterations used)."""
    v = v / v.norm()
    value = 0.0
    for i in range(1, iters + 1):
        hv = hvp(v)
        new = float((hv * v).sum())  # Rayleigh quotient
        norm = hv.norm()
        if float(norm) == 0.0:
            return 0.0, i
        v = hv / norm
        if i > 1 and abs(new - value) <= tol * max(abs(value), 1e-12):
            return new, i
        value = new
    return value, iters


def dominant_eigenvalue(loss_fn: Callable[[torch.Tensor], torch.Tensor], alpha: torch.Tensor, iters: int = 20,
                        generator: torch.Generator | None = None, tol: float = 1e-3) -> tuple[float, int]:
    """The largest eigenvalue of the Hessian of ``loss_fn(alpha)`` with respect to ``alpha`` (the sharpness of
    RobustDARTS / SD-DARTS), by power iteration with Hessian-vector products (double backward); returns
    (eigenvalue, iterations used).

    Power iteration converges to the largest-*magnitude* eigenvalue; when that one is negative, a second power
    iteration on the shifted operator H - lambda I (whose eigenvalues are then all >= 0) finds the largest one.
    The gradient graph is built once; each iteration is one Hessian-vector product. Each run stops when the
    Rayleigh quotient changes by less than ``tol`` (relative) or after ``iters`` iterations."""
    a = alpha.detach().clone().requires_grad_(True)
    (grad,) = torch.autograd.grad(loss_fn(a), a, create_graph=True)

    def hvp(v: torch.Tensor) -> torch.Tensor:
        return torch.autograd.grad(grad, a, grad_outputs=v, retain_graph=True)[0]

    start = torch.randn(a.shape, generator=generator, device="cpu").to(device=a.device, dtype=a.dtype)
    first, used = _power(hvp, start, iters, tol)
    if first >= 0:
        return first, used
    shifted, more = _power(lambda v: hvp(v) - first * v, start, iters, tol)
    return shifted + first, used + more
