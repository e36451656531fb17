"""The plain gradient-times-weight saliency (Abdelfattah et al. 2021)."""
from __future__ import annotations

from ._proxy import Proxy, loss_grads, per_layer_sum
from .base import ESTIMATORS


@ESTIMATORS.register("plain")
class Plain(Proxy):
    """``sum theta * dL/dtheta`` over Conv2d/Linear weights, signed, NASLib ``measures/plain.py``."""

    def measure(self, net, x, y, ctx):
        weights, grads = loss_grads(net, x, y)
        return per_layer_sum(weights, grads, lambda w, g: w * g)
