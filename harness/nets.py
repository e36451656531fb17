"""NB201 building blocks, the stand-alone network and analytic cost counts.

The module layout follows NB201's ``TinyNetwork`` / ``InferCell`` (xautodl
``models/cell_infers``), so parameter counts match NB201's recorded ones exactly.
"""
from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import nn

from .space import EDGES, NUM_NODES, OPS, Arch, parse_arch


class ReLUConvBN(nn.Sequential):
    """ReLU -> Conv (no bias) -> BN, NB201's parametric cell op."""

    def __init__(self, c_in: int, c_out: int, kernel: int, stride: int, padding: int,
                 affine: bool = True, track_running_stats: bool = True):
        super().__init__(
            nn.ReLU(inplace=False),
            nn.Conv2d(c_in, c_out, kernel, stride=stride, padding=padding, bias=False),
            nn.BatchNorm2d(c_out, affine=affine, track_running_stats=track_running_stats),
        )


def make_op(name: str, c: int, affine: bool = True, track_running_stats: bool = True) -> nn.Module | None:
    """A cell op on ``c`` channels at stride 1 (NB201 cells never change shape).

    Returns ``None`` for ``none``: the edge contributes nothing (NB201's ``Zero`` op multiplies by 0).
    """
    if name == "none":
        return None
    if name == "skip_connect":
        return nn.Identity()
    if name == "nor_conv_1x1":
        return ReLUConvBN(c, c, 1, 1, 0, affine, track_running_stats)
    if name == "nor_conv_3x3":
        return ReLUConvBN(c, c, 3, 1, 1, affine, track_running_stats)
    if name == "avg_pool_3x3":
        return nn.AvgPool2d(3, stride=1, padding=1, count_include_pad=False)
    raise ValueError(f"unknown op {name!r}; valid ops: {', '.join(OPS)}")


class ResNetBasicblock(nn.Module):
    """NB201's reduction block between stages: stride-2 residual block."""

    def __init__(self, c_in: int, c_out: int, affine: bool = True, track_running_stats: bool = True):
        super().__init__()
        self.conv_a = ReLUConvBN(c_in, c_out, 3, 2, 1, affine, track_running_stats)
        self.conv_b = ReLUConvBN(c_out, c_out, 3, 1, 1, affine, track_running_stats)
        self.downsample = nn.Sequential(
            nn.AvgPool2d(kernel_size=2, stride=2, padding=0),
            nn.Conv2d(c_in, c_out, kernel_size=1, stride=1, padding=0, bias=False),
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.downsample(x) + self.conv_b(self.conv_a(x))


class InferCell(nn.Module):
    """A fixed-architecture NB201 cell. ``x: (B, C, H, W) -> (B, C, H, W)``."""

    def __init__(self, arch: Arch, c: int):
        super().__init__()
        self.arch = arch
        self.layers = nn.ModuleList()
        self._live: list[tuple[int, int, int]] = []  # (src, dst, layer index); 'none' edges are dropped
        for (src, dst), op in zip(EDGES, arch):
            layer = make_op(OPS[op], c)
            if layer is not None:
                self._live.append((src, dst, len(self.layers)))
                self.layers.append(layer)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        nodes: list[torch.Tensor | None] = [x] + [None] * (NUM_NODES - 1)
        for src, dst, k in self._live:
            # An all-'none' node is exactly zero; NB201 materialises it as x*0, so ops on it still run.
            inp = nodes[src] if nodes[src] is not None else torch.zeros_like(x)
            out = self.layers[k](inp)
            nodes[dst] = out if nodes[dst] is None else nodes[dst] + out
        return nodes[-1] if nodes[-1] is not None else torch.zeros_like(x)


def stage_channels(C: int, N: int) -> list[tuple[int, bool]]:
    """(channels, is_reduction) for each layer of the skeleton: N cells, reduction, N cells, reduction, N cells."""
    return [(C, False)] * N + [(2 * C, True)] + [(2 * C, False)] * N + [(4 * C, True)] + [(4 * C, False)] * N


class Skeleton(nn.Module):
    """NB201's macro skeleton: stem, 3 stages of cells with reductions, BN-ReLU, pooling, classifier.

    Subclasses supply ``make_cell(c)`` and run cells in ``forward_cells``.
    """

    def __init__(self, C: int, N: int, num_classes: int, affine: bool = True, track_running_stats: bool = True):
        super().__init__()
        self.C, self.N, self.num_classes = C, N, num_classes
        self.stem = nn.Sequential(nn.Conv2d(3, C, 3, padding=1, bias=False), nn.BatchNorm2d(C))
        self.cells = nn.ModuleList()
        c_prev = C
        for c, reduction in stage_channels(C, N):
            self.cells.append(ResNetBasicblock(c_prev, c) if reduction else self.make_cell(c))
            c_prev = c
        self.lastact = nn.Sequential(nn.BatchNorm2d(c_prev), nn.ReLU(inplace=False))
        self.global_pooling = nn.AdaptiveAvgPool2d(1)
        self.classifier = nn.Linear(c_prev, num_classes)

    def make_cell(self, c: int) -> nn.Module:
        raise NotImplementedError

    def head(self, x: torch.Tensor) -> torch.Tensor:
        x = self.global_pooling(self.lastact(x))
        return self.classifier(x.flatten(1))


class NB201Network(Skeleton):
    """Stand-alone NB201 network for one architecture. ``x: (B, 3, H, W) -> logits (B, classes)``."""

    def __init__(self, arch: Arch | str, C: int = 16, N: int = 5, num_classes: int = 10):
        self.arch = parse_arch(arch)
        super().__init__(C, N, num_classes)

    def make_cell(self, c: int) -> nn.Module:
        return InferCell(self.arch, c)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.stem(x)
        for cell in self.cells:
            x = cell(x)
        return self.head(x)


def count_parameters(module: nn.Module) -> int:
    """Trainable parameter count as NB201 records it (``count_parameters_in_MB`` x 1e6)."""
    return sum(p.numel() for p in module.parameters())


@dataclass(frozen=True)
class Costs:
    params: int  # parameters
    flops: int  # multiply-accumulates of convs and linears (NB201's "FLOPs")


def arch_costs(arch: Arch | str, C: int = 16, N: int = 5, num_classes: int = 10, resolution: int = 32) -> Costs:
    """Analytic parameters and FLOPs of the stand-alone network, without building it.

    FLOPs follow xautodl's ``get_model_infos``: conv = k*k*Cin*Cout*Hout*Wout, linear = in*out + out;
    pooling, BN and additions are not counted. This reproduces NB201's published range exactly
    (7.78M-220.12M at C=16, N=5, 32x32). NASLib's zero-cost ``flops`` uses another convention (it adds
    k*k per pooled output element, 3 per ReLU-Conv-BN output element and a constant), so its values
    are 0.16M-7M higher. Tested against module hooks in ``tests/test_nets.py``.
    """
    arch = parse_arch(arch)
    n1x1 = sum(OPS[o] == "nor_conv_1x1" for o in arch)
    n3x3 = sum(OPS[o] == "nor_conv_3x3" for o in arch)
    params = 27 * C + 2 * C  # stem conv + BN
    flops = 27 * C * resolution * resolution
    size, c_prev = resolution, C
    for c, reduction in stage_channels(C, N):
        if reduction:
            size = (size - 1) // 2 + 1  # 3x3 stride-2 conv with padding 1
            area = size * size
            params += 9 * c_prev * c + 2 * c + 9 * c * c + 2 * c + c_prev * c
            flops += (9 * c_prev * c + 9 * c * c + c_prev * c) * area
        else:
            area = size * size
            params += n1x1 * (c * c + 2 * c) + n3x3 * (9 * c * c + 2 * c)
            flops += (n1x1 * c * c + n3x3 * 9 * c * c) * area
        c_prev = c
    params += 2 * c_prev + c_prev * num_classes + num_classes  # last BN + classifier
    flops += c_prev * num_classes + num_classes
    return Costs(params=params, flops=flops)
