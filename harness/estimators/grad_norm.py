"""Gradient norm (Abdelfattah et al. 2021)."""
from __future__ import annotations

from ._proxy import Proxy, loss_grads, per_layer_sum
from .base import ESTIMATORS


@ESTIMATORS.register("grad_norm")
class GradNorm(Proxy):
    """``sum_l ||dL/dW_l||_2``: the sum over Conv2d/Linear layers of each weight gradient's Frobenius norm (not
    one global norm), NASLib ``measures/grad_norm.py``."""

    def measure(self, net, x, y, ctx):
        weights, grads = loss_grads(net, x, y)
        return per_layer_sum(weights, grads, lambda w, g: g.norm())
