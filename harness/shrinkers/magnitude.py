"""ABS's magnitude baseline (Hu et al., ECCV 2020, the NB201 comparison of its Table/Figure on shrinking metrics;
megvii-model/AngleNAS ``NAS-Bench-201/exps/angle/dropnode_by_magnitude.py``).

An op's score is its architecture weight softmax(alpha)[edge, op], with alpha trained jointly with the supernet
(``get_arch_parameters``, lines 93-101: ``softmax(arch_parameters, dim=-1)`` read per (edge, op)). The training
that produces alpha is the ``uniform-alpha`` sampler (:mod:`harness.samplers.joint`): weights on uniform
single paths, alpha on search batches through the mixed op. This rule only reads alpha, so it needs that
sampler (the config says so otherwise).

The softmax runs over the edge's alive ops (the ones alpha is still trained over). In the official NB201 run
there is one round, with every op alive, so this is the official score; after an earlier round ours
renormalises over what is left, where the official code would still divide by the removed ops' weights too.
"""
from __future__ import annotations

import numpy as np
import torch

from .base import SHRINKERS, ScoreContext, Shrinker, Space


@SHRINKERS.register("magnitude")
class MagnitudeShrinker(Shrinker):
    name = "magnitude"
    needs_alpha = True

    def scores(self, model, space: Space, ctx: ScoreContext) -> np.ndarray:
        if ctx.alpha is None:
            raise ValueError("the magnitude rule reads architecture parameters; train with sampler 'uniform-alpha' "
                             "(the rule formerly called 'magnitude', the L2 norm of op weights, is now 'weight-norm')")
        mask = torch.from_numpy(space.mask())
        alpha = torch.as_tensor(ctx.alpha).detach().double().cpu()
        probs = alpha.masked_fill(~mask, float("-inf")).softmax(-1).numpy()
        probs[~mask.numpy()] = np.nan
        return probs
