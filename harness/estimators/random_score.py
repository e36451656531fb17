"""A seeded random score: the floor."""
from __future__ import annotations

import random

from .base import ESTIMATORS, Estimator, arch_seed


@ESTIMATORS.register("random")
class RandomScore(Estimator):
    """A uniform random score per architecture, a function of the run seed and the architecture: the floor any
    estimator has to beat (its expected Kendall tau is 0)."""

    def score(self, archs, ctx):
        return [random.Random(arch_seed(ctx.seed, a)).random() for a in archs]
