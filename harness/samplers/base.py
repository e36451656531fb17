"""Sampling strategies: what the supernet trains on at each step.

A strategy turns a step into a *plan*: a list of (architecture, loss weight). The training loop
runs every planned path on the same batch, sums ``weight * loss`` (gradients accumulate), and
takes one optimizer step. Uniform sampling plans one path of weight 1; FairNAS plans 5 paths;
the NSAS losses plan the current path plus weighted constraint paths. A path of weight 0 is
evaluated without gradient (no backward pass), as the official NSAS code's detached constraint. After the step the loop
reports the per-path losses through :meth:`Sampler.observe` so strategies with memory
(novelty archives, constraint sets) can update.

To add a strategy: write one file in this package with a ``@SAMPLERS.register("name")`` class
whose constructor takes keyword options (each with a default: these are the config keys), and
import it in ``__init__.py``. The conformance test in ``tests/test_samplers.py`` covers it.
"""
from __future__ import annotations

import random
from typing import Sequence

from ..registry import Registry
from ..space import NUM_EDGES, NUM_OPS, Arch, CellPath

SAMPLERS: Registry[type["Sampler"]] = Registry("sampler")


def check_allowed(allowed: Sequence[Sequence[int]] | None) -> list[list[int]]:
    """``allowed[e]``: the ops that may be drawn on edge ``e`` (the whole space by default; shrinkers narrow it)."""
    if allowed is None:
        return [list(range(NUM_OPS)) for _ in range(NUM_EDGES)]
    out = [sorted(set(int(o) for o in ops)) for ops in allowed]
    if len(out) != NUM_EDGES or any(not ops for ops in out) or any(not 0 <= o < NUM_OPS for ops in out for o in ops):
        raise ValueError(f"allowed must list, for each of the {NUM_EDGES} edges, at least one op index in "
                         f"0..{NUM_OPS - 1}; got {allowed!r}")
    return out


def in_space(arch: Arch, allowed: Sequence[Sequence[int]]) -> bool:
    """Whether every edge of ``arch`` (of every cell, for a per-cell path) uses one of that edge's allowed ops."""
    if isinstance(arch, CellPath):
        return all(in_space(a, allowed) for a in arch)
    return all(op in ops for op, ops in zip(arch, allowed))


def fair_group(allowed: Sequence[Sequence[int]], rng: random.Random) -> list[Arch]:
    """m = (most allowed ops on an edge) architectures that together use every allowed op of every edge: on each
    edge a uniform random permutation of its ops, repeated until m long, and architecture i takes the i-th op of
    each (exactly once each when every edge has m ops; FairNAS's strict fairness)."""
    m = max(len(ops) for ops in allowed)
    columns = []
    for ops in allowed:
        perm: list[int] = []
        while len(perm) < m:
            perm.extend(rng.sample(list(ops), len(ops)))
        columns.append(perm[:m])
    return [Arch(col[i] for col in columns) for i in range(m)]


def draw(allowed: Sequence[Sequence[int]], rng: random.Random) -> Arch:
    """One architecture, each edge's op uniform over its allowed ops."""
    return Arch(rng.choice(ops) for ops in allowed)


class Sampler:
    """Base class. Subclasses implement :meth:`plan`; the runner passes in the ``rng``.

    ``paths_per_step`` is the number of forward/backward passes a step costs once the strategy is warmed
    up (single-path equivalents: a mixed-op pass counts 4, see samplers/differentiable.py);
    ``[train] max_paths`` divides by it so strategies can be compared at equal compute.
    """

    name = "base"
    paths_per_step: float = 1
    differentiable = False  # True: the strategy runs its own step (train_step); see samplers/differentiable.py
    allowed: list[list[int]]

    def passes(self, archs: Sequence[Arch]) -> float:
        """Forward/backward passes (single-path equivalents) the step that trained ``archs`` cost."""
        return len(archs)

    def restrict(self, allowed: Sequence[Sequence[int]]) -> None:
        """Narrow the space mid-run (a shrinker removed ops): from now on no plan trains a removed op,
        so memories that hold removed ops (archives, recent architectures) drop them."""
        self.allowed = check_allowed(allowed)
        self._restricted()

    def _restricted(self) -> None:
        """Hook for strategies with memory: forget what is no longer in ``self.allowed``."""

    def split(self, edges: Sequence[int]) -> None:
        """The supernet was split into few-shot sub-supernets on ``edges`` (harness/phases.py). A strategy whose
        path is one NB201 architecture needs nothing; one that draws per cell must make its cells agree there."""

    def plan(self, step: int, rng: random.Random) -> list[tuple[Arch, float]]:
        raise NotImplementedError

    def observe(self, step: int, archs: Sequence[Arch], losses: Sequence[float]) -> None:
        """Feedback after the step (losses are Python floats only when the loop synchronises)."""

    def state_dict(self) -> dict:
        return {}

    def load_state_dict(self, state: dict) -> None:
        pass
