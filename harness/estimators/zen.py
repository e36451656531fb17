"""Zen-score (Lin et al. 2021, ZenNAS)."""
from __future__ import annotations

import math

import torch
from torch import nn

from ._proxy import Proxy, weighted_layers
from .base import ESTIMATORS, arch_seed


@ESTIMATORS.register("zen")
class Zen(Proxy):
    """``log E_n sum_chw |f(x) - f(x + gamma * eps)| + sum_BN log sqrt(mean_c running_var)``: ``f`` the feature
    map before global pooling, ``x`` and ``eps`` standard Gaussian images of the batch's shape, ``gamma = 1e-2``,
    Conv2d/Linear weights re-drawn from N(0, 1) with zero biases and BN weights 1, biases 0, both forwards in train
    mode without gradients (the BN term reads the running variances after them), one repeat. As NASLib
    ``measures/zen.py``, which keeps NB201's residual links (ZenNAS removes them for scoring) and BN eps 1e-5.
    The images' values are not used, only their shape."""

    needs_data = True

    def __init__(self, batch_size: int = 64, mixup_gamma: float = 1e-2):
        super().__init__(batch_size)
        if not mixup_gamma > 0:
            raise ValueError(f"mixup_gamma = {mixup_gamma}: expected > 0")
        self.mixup_gamma = mixup_gamma

    def options(self):
        return dict(super().options(), mixup_gamma=self.mixup_gamma, repeat=1)

    def measure(self, net, x, y, ctx):
        gen = torch.Generator(device=x.device).manual_seed(arch_seed(ctx.seed + 1, net.arch))
        with torch.no_grad():
            for m in weighted_layers(net):
                m.weight.normal_(generator=gen)
                if m.bias is not None:
                    m.bias.zero_()
            for m in net.modules():
                if isinstance(m, nn.BatchNorm2d) and m.weight is not None:
                    m.weight.fill_(1.0)
                    m.bias.zero_()
            a = torch.randn(x.shape, generator=gen, device=x.device, dtype=x.dtype)
            eps = torch.randn(x.shape, generator=gen, device=x.device, dtype=x.dtype)
            feats = []
            hook = net.global_pooling.register_forward_hook(lambda m, i, o: feats.append(i[0]))
            try:
                net(a)
                net(a + self.mixup_gamma * eps)
            finally:
                hook.remove()
            delta = float((feats[0] - feats[1]).abs().sum((1, 2, 3)).mean())
            bn = sum(math.log(math.sqrt(float(m.running_var.mean()))) for m in net.modules()
                     if isinstance(m, nn.BatchNorm2d) and m.running_var is not None)
        return math.log(delta) + bn if delta > 0 else float("nan")
