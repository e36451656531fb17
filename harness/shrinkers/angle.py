"""The angle-based metric of ABS (Hu et al., ECCV 2020) as used by PWSNAS (Hu, Wang & Gu, "Powering Weight
Sharing NAS With General Search Space Shrinking Framework", IEEE TNNLS 2022).

A child model's angle is the angle between its weight vector at initialisation and now,
theta = arccos(<W0, Wt> / (|W0| |Wt|)), with the vector built as in :mod:`harness.shrinkers.weights`. An
op's score is the mean angle over the child models of the alive space that use it: every alive
architecture (``samples = 0``, exact and cheap, since child angles are sums of per-module terms), or a
covering sample of ``samples``. A larger angle means the weights moved further from initialisation:
more important. The initial weights are stored once, in the run directory (``init_weights.pt``).
"""
from __future__ import annotations

import numpy as np

from .base import SHRINKERS, ScoreContext, Shrinker, Space, covering_sample, mean_by_op
from .weights import angles, op_terms


@SHRINKERS.register("angle")
class AngleShrinker(Shrinker):
    name = "angle"
    needs_init_state = True

    def __init__(self, samples: int = 0):
        if samples < 0:
            raise ValueError(f"samples must be >= 0 (0 = every alive architecture), got {samples}")
        self.samples = samples

    def child_angles(self, model, archs, init_state: dict) -> np.ndarray:
        """Angle of each architecture, computed on the sub-supernet that owns it."""
        out = np.empty(len(archs))
        owners = np.array([model.partition(a) for a in archs])
        for k, net in enumerate(model.subnets()):
            idx = np.flatnonzero(owners == k)
            if len(idx):
                out[idx] = angles([archs[i] for i in idx], *op_terms(net, init_state))
        return out

    def scores(self, model, space: Space, ctx: ScoreContext) -> np.ndarray:
        if ctx.init_state is None:
            raise ValueError("the angle rule needs the supernet's initial weights")
        archs = space.archs() if self.samples == 0 else covering_sample(space, self.samples, ctx.rng)
        return mean_by_op(archs, self.child_angles(model, archs, ctx.init_state), space.mask())
