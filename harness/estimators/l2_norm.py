"""The L2 norm of the weights at initialisation (a NASLib baseline proxy)."""
from __future__ import annotations

from ._proxy import Proxy, network, weighted_layers
from .base import ESTIMATORS


@ESTIMATORS.register("l2_norm")
class L2Norm(Proxy):
    """``sum_l ||W_l||_2`` over the Conv2d/Linear weights of the architecture's network at initialisation; no
    data. NASLib ``measures/l2_norm.py`` on its NB201 graph, which holds only the chosen ops (zero-cost-nas's
    NB201 model holds all five ops on every edge, so its l2_norm also counts unused ones)."""

    needs_data = False

    def __init__(self):
        self.batch_size = 0

    def options(self):
        return {"init": "pytorch default, seeded per architecture"}

    def score(self, archs, ctx):
        return [sum(float(m.weight.detach().norm()) for m in weighted_layers(network(a, ctx))) for a in archs]
