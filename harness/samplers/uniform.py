"""Uniform single-path sampling (SPOS, Guo et al. 2020; RandomNAS, Li & Talwalkar 2019).

Each step trains one architecture drawn uniformly from the space: every edge's op is drawn
independently and uniformly from the ops still allowed on that edge.
"""
from __future__ import annotations

import random
from typing import Sequence

from ..space import NUM_EDGES, NUM_OPS, Arch
from .base import SAMPLERS, Sampler


@SAMPLERS.register("uniform")
class UniformSampler(Sampler):
    name = "uniform"

    def __init__(self, allowed: Sequence[Sequence[int]] | None = None):
        # allowed[e] = ops that may be drawn on edge e (the whole space by default; shrinkers narrow it)
        self.allowed = [list(range(NUM_OPS)) for _ in range(NUM_EDGES)] if allowed is None else [list(a) for a in allowed]
        if len(self.allowed) != NUM_EDGES or any(not a for a in self.allowed):
            raise ValueError("allowed must list at least one op for each of the 6 edges")

    def plan(self, step: int, rng: random.Random) -> list[tuple[Arch, float]]:
        return [(Arch(rng.choice(ops) for ops in self.allowed), 1.0)]
