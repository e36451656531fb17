"""Parameter count: the trivial baseline every one-shot method must beat."""
from __future__ import annotations

from ..nets import arch_costs
from .base import ESTIMATORS, Estimator


@ESTIMATORS.register("params")
class Params(Estimator):
    """Parameters of the stand-alone network at the run's sizes (``harness.nets.arch_costs``; NB201's count)."""

    def score(self, archs, ctx):
        return [float(arch_costs(a, ctx.C, ctx.N, ctx.num_classes, ctx.resolution).params) for a in archs]
