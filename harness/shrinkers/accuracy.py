"""Accuracy baseline: an op is as important as the child models that use it are accurate.

Each round draws a covering sample of ``samples`` child models from the alive space (every alive op of
every edge appears in at least ``samples // m`` of them, m = most alive ops on an edge), evaluates each with
the current shared weights on fixed held-out images (``[shrink] score_images``; BN as for estimation),
and scores an op by the mean accuracy (``measure = "acc"``) or mean negative loss (``"neg_loss"``) of the
sampled child models containing it.
"""
from __future__ import annotations

import numpy as np

from .base import SHRINKERS, ScoreContext, Shrinker, Space, covering_sample, mean_by_op

MEASURES = ("acc", "neg_loss")


@SHRINKERS.register("accuracy")
class AccuracyShrinker(Shrinker):
    name = "accuracy"
    needs_evaluation = True

    def __init__(self, samples: int = 100, measure: str = "acc"):
        if samples < 1:
            raise ValueError(f"samples must be >= 1, got {samples}")
        if measure not in MEASURES:
            raise ValueError(f"measure must be one of {', '.join(MEASURES)}, got {measure!r}")
        self.samples, self.measure = samples, measure

    def scores(self, model, space: Space, ctx: ScoreContext) -> np.ndarray:
        if ctx.evaluate is None:
            raise ValueError("the accuracy rule needs held-out images to evaluate child models on")
        archs = covering_sample(space, self.samples, ctx.rng)
        loss, acc = np.asarray(ctx.evaluate(archs), dtype=float).T
        return mean_by_op(archs, acc if self.measure == "acc" else -loss, space.mask())
