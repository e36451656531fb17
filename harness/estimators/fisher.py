"""Fisher (Theis et al. 2018; Turner et al. 2020, as a zero-cost proxy in Abdelfattah et al. 2021)."""
from __future__ import annotations

import torch
from torch import nn

from ._proxy import Proxy, weighted_layers
from .base import ESTIMATORS


@ESTIMATORS.register("fisher")
class Fisher(Proxy):
    """Per output channel ``k`` of every Conv2d/Linear: ``0.5 * mean_n (sum_hw a * dL/da)^2`` with ``a`` the
    layer's output (before BN and ReLU), summed over channels after multiplying each by the layer's fan-in
    (``C_in * kh * kw``, ``in_features`` for Linear) -- NASLib ``measures/fisher.py`` spreads each channel's value
    over the entries of ``weight[k]`` before the final sum, which is that product."""

    def measure(self, net, x, y, ctx):
        acts: list[tuple[nn.Module, torch.Tensor]] = []

        def keep(module, inputs, output):
            output.retain_grad()
            acts.append((module, output))

        handles = [m.register_forward_hook(keep) for m in weighted_layers(net)]
        try:
            nn.functional.cross_entropy(net(x), y).backward()
        finally:
            for h in handles:
                h.remove()
        total = 0.0
        for module, a in acts:
            if a.grad is None:
                continue
            prod = (a * a.grad).detach()
            per_channel = prod.sum((2, 3)) if prod.dim() == 4 else prod  # (N, C_out)
            fan_in = module.weight[0].numel()
            total += float((0.5 * per_channel.pow(2).mean(0)).sum()) * fan_in
        return total
