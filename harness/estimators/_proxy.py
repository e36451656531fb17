"""What the zero-cost proxies share: the stand-alone network at initialisation, its weights, one batch.

Conventions follow NASLib's pruners (``naslib/predictors/utils/pruners``, Develop 0b51bc18; zero-cost-nas
``foresight/pruners`` has the same math), cited per proxy in docs/methods.md:

* the network is NB201's stand-alone network of the architecture at the run's C, N and classes
  (:class:`harness.nets.NB201Network`: affine BN with running statistics, as NASLib's NB201 graph after
  ``update_batchnorms``), with PyTorch's default initialisation, in train mode (BN uses batch statistics);
* the measured weights are those of every ``Conv2d`` and ``Linear`` (never biases), and per-layer values are
  summed with their sign;
* the data is one batch of training images (``[estimator] batch_size``, NASLib's 64) and the loss cross-entropy.

Where we differ from NASLib, and why: the network is initialised from a seed that is a function of the run seed
and the architecture (:func:`harness.estimators.base.arch_seed`), not from one global random stream in a fixed
order, so a score does not depend on which architectures were scored before it (resumable, and the same in any
order); and every architecture sees the same batch (NASLib draws a fresh augmented one per architecture), so
that scores differ by architecture only. A score that is not finite is returned as NaN (NASLib writes -1e8);
the runner ranks NaN last.
"""
from __future__ import annotations

import math
from typing import Callable, Sequence

import torch
from torch import nn

from ..nets import NB201Network
from ..space import Arch
from .base import Context, Estimator, arch_seed


def network(arch: Arch, ctx: Context, dtype: torch.dtype = torch.float32) -> NB201Network:
    torch.manual_seed(arch_seed(ctx.seed, arch))
    return NB201Network(arch, ctx.C, ctx.N, ctx.num_classes).to(device=ctx.device, dtype=dtype).train()


def weighted_layers(net: nn.Module) -> list[nn.Module]:
    return [m for m in net.modules() if isinstance(m, (nn.Conv2d, nn.Linear))]


def finite(value: float) -> float:
    return float(value) if math.isfinite(value) else math.nan


class Proxy(Estimator):
    """A zero-cost proxy: ``measure(net, x, y, ctx) -> float`` on one architecture's network at initialisation."""

    needs_data = True

    def __init__(self, batch_size: int = 64):
        if batch_size < 2:
            raise ValueError(f"batch_size = {batch_size}: expected at least 2")
        self.batch_size = batch_size

    def options(self) -> dict:
        return {"batch_size": self.batch_size, "init": "pytorch default, seeded per architecture"}

    def measure(self, net: nn.Module, x: torch.Tensor, y: torch.Tensor, ctx: Context) -> float:
        raise NotImplementedError

    def score(self, archs: Sequence[Arch], ctx: Context) -> list[float]:
        x, y = ctx.images[0]
        return [finite(self.measure(network(a, ctx), x, y, ctx)) for a in archs]


def loss_grads(net: nn.Module, x: torch.Tensor, y: torch.Tensor) -> tuple[list[torch.Tensor], list[torch.Tensor]]:
    """The Conv2d/Linear weights and the gradient of the batch's cross-entropy with respect to each."""
    weights = [m.weight for m in weighted_layers(net)]
    loss = nn.functional.cross_entropy(net(x), y)
    return weights, list(torch.autograd.grad(loss, weights, allow_unused=True))


def per_layer_sum(weights, grads, fn: Callable[[torch.Tensor, torch.Tensor], torch.Tensor]) -> float:
    """Sum over layers of ``fn(weight, grad)`` summed over its entries; a layer without gradient counts 0."""
    total = 0.0
    for w, g in zip(weights, grads):
        if g is not None:
            total += float(fn(w.detach(), g).sum())
    return total
