"""Uniform single-path sampling (SPOS, Guo et al. 2020; RandomNAS, Li & Talwalkar 2019).

Each step trains one architecture drawn uniformly from the space: every edge's op is drawn
independently and uniformly from the ops still allowed on that edge.
"""
from __future__ import annotations

import random
from typing import Sequence

from ..space import Arch
from .base import SAMPLERS, Sampler, check_allowed, draw


@SAMPLERS.register("uniform")
class UniformSampler(Sampler):
    name = "uniform"

    def __init__(self, allowed: Sequence[Sequence[int]] | None = None):
        self.allowed = check_allowed(allowed)

    def plan(self, step: int, rng: random.Random) -> list[tuple[Arch, float]]:
        return [(draw(self.allowed, rng), 1.0)]
