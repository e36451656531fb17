"""SNIP (Lee et al. 2019, as a zero-cost proxy in Abdelfattah et al. 2021)."""
from __future__ import annotations

from ._proxy import Proxy, loss_grads, per_layer_sum
from .base import ESTIMATORS


@ESTIMATORS.register("snip")
class Snip(Proxy):
    """``sum |theta * dL/dtheta|`` over Conv2d/Linear weights for the cross-entropy ``L`` of one batch: the
    connection sensitivity ``|dL/dmask|`` of a ones mask on every weight, which NASLib ``measures/snip.py``
    computes with masked layers (the same number)."""

    def measure(self, net, x, y, ctx):
        weights, grads = loss_grads(net, x, y)
        return per_layer_sum(weights, grads, lambda w, g: (w * g).abs())
