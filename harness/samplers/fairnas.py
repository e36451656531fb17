"""FairNAS strict fairness (Chu, Zhang & Xu, "FairNAS: Rethinking Evaluation Fairness of Weight Sharing
Neural Architecture Search", ICCV 2021, Algorithm 1).

Each step trains m architectures on the same batch: on every edge an independent uniform random
permutation of the edge's ops is drawn, and architecture i takes the i-th op of each edge's permutation.
So within a step each op on each edge is trained exactly once (m = 5 on the full space). The m
gradients are accumulated (each path's loss has weight ``path_weight``, 1 = FairNAS's sum) and one
optimizer step is taken.

When a shrinker has left edges with different numbers of ops, m is the largest number; an edge with
fewer ops repeats its permutation, so its ops are trained floor(m/n) or ceil(m/n) times per step.
"""
from __future__ import annotations

import random
from typing import Sequence

from ..space import Arch
from .base import SAMPLERS, Sampler, check_allowed, fair_group


@SAMPLERS.register("fairnas")
class FairNASSampler(Sampler):
    name = "fairnas"

    def __init__(self, path_weight: float = 1.0, allowed: Sequence[Sequence[int]] | None = None):
        if not path_weight > 0:
            raise ValueError(f"path_weight must be > 0, got {path_weight}")
        self.path_weight = float(path_weight)
        self.allowed = check_allowed(allowed)
        self._restricted()

    def _restricted(self) -> None:
        self.paths_per_step = max(len(ops) for ops in self.allowed)

    def group(self, rng: random.Random) -> list[Arch]:
        """m architectures that together use every allowed op of every edge (exactly once when m = n)."""
        return fair_group(self.allowed, rng)

    def plan(self, step: int, rng: random.Random) -> list[tuple[Arch, float]]:
        return [(arch, self.path_weight) for arch in self.group(rng)]
