"""NASWOT (Mellor et al. 2021, "Neural architecture search without training")."""
from __future__ import annotations

import torch
from torch import nn

from ._proxy import Proxy
from .base import ESTIMATORS


def relu_kernel(net: nn.Module, x: torch.Tensor) -> torch.Tensor:
    """``K = sum over ReLUs of c c^T + (1 - c)(1 - c)^T`` in float64, ``c`` the per-sample binary code of which
    inputs of that ReLU are positive; ``K[i, j]`` is the number of units on which images i and j agree."""
    n = len(x)
    k = torch.zeros(n, n, dtype=torch.float64, device=x.device)

    def add(module, inputs, output):
        c = (inputs[0].detach().reshape(n, -1) > 0).double()
        k.add_(c @ c.T + (1 - c) @ (1 - c).T)

    handles = [m.register_forward_hook(add) for m in net.modules() if isinstance(m, nn.ReLU)]
    try:
        with torch.no_grad():
            net(x)
    finally:
        for h in handles:
            h.remove()
    return k


@ESTIMATORS.register("nwot")
class NASWOT(Proxy):
    """``log |det K|`` of :func:`relu_kernel` over one batch, from one forward in train mode (NASLib
    ``measures/nwot.py``; the original, BayesWatch/nas-without-training, counts only ReLUs that a backward pass
    reached, which in NB201's network are all of them). Labels are not used."""

    def measure(self, net, x, y, ctx):
        sign, logdet = torch.linalg.slogdet(relu_kernel(net, x))
        return float(logdet) if float(sign) != 0 else float("nan")
