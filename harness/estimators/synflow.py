"""SynFlow (Tanaka et al. 2020, as a zero-cost proxy in Abdelfattah et al. 2021)."""
from __future__ import annotations

import copy
import math

import torch
from torch import nn

from ._proxy import Proxy, network, weighted_layers
from .base import ESTIMATORS


@ESTIMATORS.register("synflow")
class SynFlow(Proxy):
    """``log sum_l |theta_l * dR/dtheta_l|`` over Conv2d/Linear weights, where ``R`` is the sum of the outputs of
    the network with BN removed and every parameter and buffer replaced by its absolute value, in float64, on one
    all-ones input. Data-independent: no image is used (``needs_data`` is false). NASLib ``measures/synflow.py``
    (logged by ``predictors/zerocost.py``)."""

    needs_data = False

    def __init__(self):
        self.batch_size = 0  # no data

    def options(self) -> dict:
        return {"input": "ones (1, 3, H, W)", "dtype": "float64", "bn": "removed", "init": "pytorch default, seeded per architecture"}

    def score(self, archs, ctx):
        return [self.measure(network(a, ctx), None, None, ctx) for a in archs]

    def measure(self, net, x, y, ctx) -> float:
        net = copy.deepcopy(net)
        for name, module in list(net.named_modules()):
            for child_name, child in list(module.named_children()):
                if isinstance(child, nn.BatchNorm2d):
                    setattr(module, child_name, nn.Identity())
        net = net.double()
        with torch.no_grad():
            for t in list(net.parameters()) + list(net.buffers()):
                if t.is_floating_point():
                    t.abs_()
        ones = torch.ones(1, 3, ctx.resolution, ctx.resolution, dtype=torch.float64, device=ctx.device)
        weights = [m.weight for m in weighted_layers(net)]
        grads = torch.autograd.grad(net(ones).sum(), weights, allow_unused=True)
        total = sum(float((w.detach() * g).abs().sum()) for w, g in zip(weights, grads) if g is not None)
        if not math.isfinite(total):
            return math.nan
        return math.log(total) if total > 0 else (0.0 if total == 0 else math.nan)
