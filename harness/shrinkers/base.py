"""Search-space shrinking: the alive set of ops per edge, shrinking rules (plugins) and the removal step.

A shrinker scores every alive (edge, op) pair; the schedule (``harness.phases``) then removes the
lowest-scored ones with :func:`choose_removals`, and the sampler only draws from what is left. Scores are
"higher = more important" for every rule.

To add a rule: write one file in this package with a ``@SHRINKERS.register("name")`` class whose
constructor takes keyword options (each with a default: they become ``[shrink.options]`` keys) and
implements :meth:`Shrinker.scores`, and import it in ``__init__.py``. ``tests/test_shrinkers.py`` runs a
conformance test over every registered rule.
"""
from __future__ import annotations

import itertools
import math
import random
from dataclasses import dataclass
from typing import Callable, Sequence

import numpy as np

from ..registry import Registry
from ..samplers.base import fair_group, in_space
from ..space import EDGES, NUM_EDGES, NUM_OPS, OPS, Arch

SHRINKERS: Registry[type["Shrinker"]] = Registry("shrinking rule")
SHRINK_MODES = ("per_edge", "global")


def edge_name(edge: int) -> str:
    src, dst = EDGES[edge]
    return f"{src}->{dst}"


class Space:
    """The alive ops of each edge: ``alive[e]`` is a sorted list of op indices (never empty)."""

    def __init__(self, alive: Sequence[Sequence[int]] | None = None):
        alive = [range(NUM_OPS)] * NUM_EDGES if alive is None else alive
        self.alive = [sorted({int(o) for o in ops}) for ops in alive]
        if len(self.alive) != NUM_EDGES or any(not ops for ops in self.alive):
            raise ValueError(f"a space needs, for each of the {NUM_EDGES} edges, at least one alive op; got {alive!r}")

    @property
    def size(self) -> int:
        return math.prod(len(ops) for ops in self.alive)

    def mask(self) -> np.ndarray:
        """``(6, 5)`` bool: alive[e, op]."""
        out = np.zeros((NUM_EDGES, NUM_OPS), dtype=bool)
        for e, ops in enumerate(self.alive):
            out[e, ops] = True
        return out

    def __contains__(self, arch: Sequence[int]) -> bool:
        return in_space(arch, self.alive)

    def archs(self) -> list[Arch]:
        """Every architecture of the space (product of the alive ops)."""
        return [Arch(ops) for ops in itertools.product(*self.alive)]

    def remove(self, edge: int, op: int) -> None:
        if op not in self.alive[edge]:
            raise ValueError(f"op {OPS[op]} is not alive on edge {edge_name(edge)}")
        if len(self.alive[edge]) == 1:
            raise ValueError(f"refusing to remove the last op of edge {edge_name(edge)}")
        self.alive[edge].remove(op)

    def describe(self) -> list[list[str]]:
        return [[OPS[o] for o in ops] for ops in self.alive]


def covering_sample(space: Space, n: int, rng: random.Random) -> list[Arch]:
    """At least ``n`` architectures of ``space`` such that every alive op of every edge appears in them at
    least ``n // m`` times (``m`` = most alive ops on an edge): FairNAS groups (:func:`fair_group`) until there
    are ``n``. Scores averaged over them leave no op unseen."""
    out: list[Arch] = []
    while len(out) < max(n, 1):
        out.extend(fair_group(space.alive, rng))
    return out


def mean_by_op(archs, values, mask: np.ndarray) -> np.ndarray:
    """``(6, 5)`` mean of ``values`` over the architectures (``(n, 6)`` op indices) using each (edge, op); NaN
    where none does and where ``mask`` (alive[e, op]) is false."""
    ops = np.asarray(archs, dtype=np.int64).reshape(-1, NUM_EDGES)
    values = np.asarray(values, dtype=float)
    out = np.full(mask.shape, np.nan)
    for e in range(NUM_EDGES):
        sums = np.bincount(ops[:, e], weights=values, minlength=mask.shape[1])
        counts = np.bincount(ops[:, e], minlength=mask.shape[1])
        with np.errstate(invalid="ignore", divide="ignore"):
            out[e] = sums / counts
    out[~mask] = np.nan
    return out


@dataclass
class ScoreContext:
    """What a rule may use when scoring: ``evaluate(archs) -> [(loss, acc %)]`` on fixed held-out images
    (the accuracy rule), ``init_state`` (the supernet's weights at initialisation; the angle rule), ``alpha``
    (the sampler's architecture parameters, (6, 5) logits, when it trains them; the magnitude rule) and
    ``rng`` for any sampling."""

    rng: random.Random
    evaluate: Callable[[list[Arch]], list[tuple[float, float]]] | None = None
    init_state: dict | None = None
    alpha: object | None = None  # torch.Tensor (6, 5)


class Shrinker:
    """Base class: ``scores(model, space, ctx) -> (6, 5)`` array, higher = more important, NaN for dead ops."""

    name = "base"
    needs_init_state = False  # keep the supernet's initial weights (once, in the run directory)
    needs_evaluation = False  # evaluates child models on held-out images
    needs_alpha = False  # reads architecture parameters trained jointly (a sampler with shrinkable = True)

    def scores(self, model, space: Space, ctx: ScoreContext) -> np.ndarray:
        raise NotImplementedError


@SHRINKERS.register("none")
class NoShrinker(Shrinker):
    """No shrinking: the whole space stays alive (the baseline every rule is compared with)."""

    name = "none"

    def scores(self, model, space: Space, ctx: ScoreContext) -> np.ndarray:
        raise RuntimeError("the 'none' rule scores nothing; the schedule never calls it")


def choose_removals(scores: np.ndarray, space: Space, mode: str, drop: int, min_ops: int,
                    target_size: int = 0) -> list[tuple[int, int]]:
    """The (edge, op) pairs one shrink round removes; ``space`` is not modified.

    * ``per_edge``: every edge with more than ``min_ops`` alive ops loses its ``drop`` lowest-scored ones
      (never going below ``min_ops``);
    * ``global``: the ``drop`` lowest-scored alive ops over all edges, skipping edges at ``min_ops``.

    ``min_ops`` is at least 1, so no edge is ever emptied. With ``target_size`` > 0 removals stop as soon
    as the space holds at most that many architectures. Ties go to the lower op index (NB201 op order),
    so a round is deterministic. An alive op without a finite score is never removed.
    """
    if mode not in SHRINK_MODES:
        raise ValueError(f"unknown shrink mode {mode!r}; valid: {', '.join(SHRINK_MODES)}")
    if drop < 1 or min_ops < 1:
        raise ValueError(f"drop and min_ops must be >= 1, got drop={drop}, min_ops={min_ops}")
    counts = [len(ops) for ops in space.alive]
    size = math.prod(counts)

    def candidates(edges) -> list[tuple[float, int, int]]:
        return sorted((float(scores[e, o]), o, e) for e in edges for o in space.alive[e]
                      if math.isfinite(scores[e, o]))

    removed: list[tuple[int, int]] = []
    if mode == "per_edge":
        for e in range(NUM_EDGES):
            for score, o, _ in candidates([e])[:max(0, min(drop, counts[e] - min_ops))]:
                if target_size and size <= target_size:
                    return removed
                removed.append((e, o))
                size = size // counts[e] * (counts[e] - 1)
                counts[e] -= 1
        return removed
    for score, o, e in candidates(range(NUM_EDGES)):
        if len(removed) == drop or (target_size and size <= target_size):
            break
        if counts[e] > min_ops:
            removed.append((e, o))
            size = size // counts[e] * (counts[e] - 1)
            counts[e] -= 1
    return removed
