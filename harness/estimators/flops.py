"""FLOPs: the second trivial baseline."""
from __future__ import annotations

from ..nets import arch_costs
from .base import ESTIMATORS, Estimator


@ESTIMATORS.register("flops")
class Flops(Estimator):
    """Multiply-accumulates of the stand-alone network's convolutions and classifier at the run's sizes and
    resolution (xautodl's ``get_model_infos`` convention, as NB201 records FLOPs)."""

    def score(self, archs, ctx):
        return [float(arch_costs(a, ctx.C, ctx.N, ctx.num_classes, ctx.resolution).flops) for a in archs]
