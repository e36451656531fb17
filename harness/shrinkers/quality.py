"""How good a shrunk space and a rule's op scores are, against ground truth. Arrays in, numbers out.

``ops``: ``(n, 6)`` op indices of the architectures the ground truth holds, ``acc``: their accuracies
(all 15,625 for NB201's table; fewer for a built benchmark, which then bounds what can be measured).
"""
from __future__ import annotations

import math

import numpy as np

from ..metrics import kendall_tau
from .base import mean_by_op
from ..space import NUM_EDGES


def inside(ops: np.ndarray, mask: np.ndarray) -> np.ndarray:
    """``(n,)`` bool: which architectures use only alive ops (``mask``: ``(6, 5)`` alive[e, op])."""
    ops = np.asarray(ops, dtype=np.int64).reshape(-1, NUM_EDGES)
    return mask[np.arange(NUM_EDGES), ops].all(axis=1)


def op_importance(ops: np.ndarray, acc: np.ndarray, mask: np.ndarray) -> np.ndarray:
    """``(6, 5)``: the true importance of each alive (edge, op), the mean ground-truth accuracy of the
    architectures of the space ``mask`` that use it; NaN for dead ops and ops no known architecture uses."""
    ops = np.asarray(ops, dtype=np.int64).reshape(-1, NUM_EDGES)
    keep = inside(ops, mask)
    return mean_by_op(ops[keep], np.asarray(acc, dtype=float)[keep], mask)


def op_score_tau(scores: np.ndarray, importance: np.ndarray) -> float:
    """Kendall tau between a rule's op scores and the ops' true importance over the (edge, op) pairs where
    both are defined (all edges pooled); NaN with fewer than 3 pairs."""
    ok = np.isfinite(scores) & np.isfinite(importance)
    return kendall_tau(scores[ok], importance[ok]) if ok.sum() >= 3 else math.nan


def space_quality(mask: np.ndarray, ops: np.ndarray, acc: np.ndarray, tops=(1, 5)) -> dict:
    """Size of the space, the fraction of the true top-k% architectures still in it, and space regret (the
    global best accuracy minus the best accuracy inside the space, in points)."""
    acc = np.asarray(acc, dtype=float)
    keep = inside(ops, mask)
    order = np.argsort(-acc, kind="stable")
    out = {"space_size": int(np.prod(mask.sum(axis=1))), "known_in_space": int(keep.sum()), "known": int(len(acc))}
    for k in tops:
        top = order[:max(1, math.ceil(len(acc) * k / 100))]
        out[f"top{k}pct_retained"] = float(keep[top].mean())
    best = float(acc.max())
    best_in = float(acc[keep].max()) if keep.any() else math.nan
    out.update(best_overall=best, best_in_space=best_in, space_regret=best - best_in)
    return out
