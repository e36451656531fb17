"""Weight-norm baseline (ours): an op is as important as its weights are large.

Score of (edge, op): the L2 norm of the op's weights over every cell, sqrt(sum over cells |W|^2); with
several sub-supernets (few-shot), the mean of their norms. Parameter-free ops get the norms of the angle
rule's surrogates (:mod:`harness.shrinkers.weights`): ``avg_pool_3x3`` a 3x3 kernel of 1/9 per channel,
``skip_connect`` and ``none`` nothing (0), so they are the first to go -- the known blind spot of this
baseline, kept as it is so the comparison shows it.

This rule was called ``magnitude`` before; ABS's magnitude baseline is a different rule (softmax of a jointly
trained alpha, :mod:`harness.shrinkers.magnitude`), which now has that name.
"""
from __future__ import annotations

import numpy as np

from .base import SHRINKERS, ScoreContext, Shrinker, Space
from .weights import op_terms


@SHRINKERS.register("weight-norm")
class WeightNormShrinker(Shrinker):
    name = "weight-norm"

    def scores(self, model, space: Space, ctx: ScoreContext) -> np.ndarray:
        norms = np.mean([np.sqrt(op_terms(net)[1][:, :, 2]) for net in model.subnets()], axis=0)
        norms[~space.mask()] = np.nan
        return norms
