"""GraSP (Wang et al. 2020, as a zero-cost proxy in Abdelfattah et al. 2021)."""
from __future__ import annotations

import torch
from torch import nn

from ._proxy import Proxy, per_layer_sum, weighted_layers
from .base import ESTIMATORS


@ESTIMATORS.register("grasp")
class Grasp(Proxy):
    """``sum -theta * (H g)`` over Conv2d/Linear weights, signed: ``g`` the loss gradient on one batch, ``H g``
    the Hessian-gradient product from a second, graph-building pass on the same batch. Temperature 1 and one
    iteration, as NASLib ``measures/grasp.py`` (the sign is the reference's, chosen empirically there)."""

    def measure(self, net, x, y, ctx):
        weights = [m.weight for m in weighted_layers(net)]
        g = torch.autograd.grad(nn.functional.cross_entropy(net(x), y), weights, allow_unused=True)
        g_f = torch.autograd.grad(nn.functional.cross_entropy(net(x), y), weights, create_graph=True,
                                  allow_unused=True)
        z = sum((a.detach() * b).sum() for a, b in zip(g, g_f) if a is not None and b is not None)
        hg = torch.autograd.grad(z, weights, allow_unused=True)
        return per_layer_sum(weights, hg, lambda w, h: -w * h)
