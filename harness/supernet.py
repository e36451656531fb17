"""Weight-sharing supernet over NB201's skeleton.

One set of weights per (cell, edge, op); ``forward(x, arch)`` runs only the chosen single path.
``forward_weighted(x, weights)`` is the mixed-operation mode of differentiable search (DARTS): every op on
every edge runs and the edge outputs ``sum_o weights[e, o] * op_o(x)``; with ``active`` (GDAS) only the active
op of each edge runs. Both use the same modules, so a supernet trained either way is estimated, saved and
loaded exactly like a single-path one. Sampling lives elsewhere (``harness.samplers``); the supernet never
draws architectures or owns architecture parameters.

Batch-norm policy (cell ops only; stem, reductions and the head always keep running statistics):

* ``batch`` -- NB201's search setting: BN without affine parameters and without running
  statistics, so batch statistics are used in training *and* evaluation.
* ``recalibrate`` -- BN keeps running statistics; before an architecture is evaluated its
  statistics are recomputed on training batches (SPOS-style), see :func:`harness.estimate.recalibrate_bn`.
"""
from __future__ import annotations

from typing import Sequence

import torch
from torch import nn

from .nets import Skeleton, make_op
from .space import EDGES, NUM_EDGES, NUM_NODES, NUM_OPS, OPS, PARAMETRIC_OPS, Arch, CellPath

# batch: cell BNs use batch statistics, in training and estimation (NB201's BN=0); recalibrate: running statistics,
# recomputed per architecture before it is estimated (SPOS); track: running statistics tracked during training
# and used as they are (NB201's BN=1, xautodl's --track_running_stats 1)
BN_POLICIES = ("batch", "recalibrate", "track")
# which BNs follow the policy and bn_affine: NB201's search models (xautodl's search_model_random.py) only the
# cells'; NATS-Bench's (generic_model.py, GenericNAS201Model) the last BN before pooling too
BN_SCOPES = ("cells", "cells+lastact")
_NONE, _SKIP = OPS.index("none"), OPS.index("skip_connect")


class SearchCell(nn.Module):
    """A cell holding every op on every edge. ``x: (B, C, H, W) -> (B, C, H, W)``."""

    def __init__(self, c: int, affine: bool, track_running_stats: bool):
        super().__init__()
        self.channels = c
        # edges[e][op]; 'none' holds an Identity placeholder that is never called
        self.edges = nn.ModuleList(
            nn.ModuleList(make_op(name, c, affine, track_running_stats) or nn.Identity() for name in OPS)
            for _ in EDGES
        )
        # With batch statistics and no affine, a parametric op on an all-zero input outputs exactly
        # zero, so zero nodes can be skipped; with running statistics it outputs a constant and must run.
        self.zero_is_absorbing = not track_running_stats and not affine

    def forward(self, x: torch.Tensor, arch: Arch) -> torch.Tensor:
        nodes: list[torch.Tensor | None] = [x] + [None] * (NUM_NODES - 1)
        for e, (src, dst) in enumerate(EDGES):
            op = arch[e]
            if op == _NONE:
                continue
            inp = nodes[src]
            if inp is None:
                if op not in PARAMETRIC_OPS or self.zero_is_absorbing:
                    continue  # skip or pooling of zero is zero
                inp = torch.zeros_like(x)
            out = inp if op == _SKIP else self.edges[e][op](inp)
            nodes[dst] = out if nodes[dst] is None else nodes[dst] + out
        return nodes[-1] if nodes[-1] is not None else torch.zeros_like(x)

    def forward_weighted(self, x: torch.Tensor, weights: torch.Tensor, active: Sequence[int] | None = None
                         ) -> torch.Tensor:
        """Mixed ops: edge ``e`` outputs ``sum_o weights[e, o] * op_o(input)``; weights: (6, 5).

        ``none`` contributes nothing (NB201's DARTS multiplies it by zero). With ``active`` (one op per edge,
        GDAS's hard sample) only that op runs and the other entries of ``weights[e]`` are added as scalars: with
        straight-through weights their value is exactly zero but they pass gradients to alpha, as in NB201's
        GDAS (xautodl ``search_cells.NAS201SearchCell.forward_gdas``).
        """
        nodes: list[torch.Tensor] = [x] + [torch.zeros_like(x) for _ in range(NUM_NODES - 1)]
        for e, (src, dst) in enumerate(EDGES):
            inp, w = nodes[src], weights[e]
            ops = range(1, NUM_OPS) if active is None else (int(active[e]),)
            for op in ops:
                if op != _NONE:
                    nodes[dst] = nodes[dst] + w[op] * (inp if op == _SKIP else self.edges[e][op](inp))
            if active is not None:
                nodes[dst] = nodes[dst] + (w.sum() - w[int(active[e])])
        return nodes[-1]


class Supernet(Skeleton):
    """``forward(x: (B, 3, H, W), arch) -> logits (B, classes)`` through the single path ``arch``."""

    def __init__(self, C: int = 16, N: int = 5, num_classes: int = 10, bn_policy: str = "batch",
                 bn_affine: bool = False, bn_scope: str = "cells"):
        if bn_policy not in BN_POLICIES:
            raise ValueError(f"unknown bn_policy {bn_policy!r}; valid: {', '.join(BN_POLICIES)}")
        if bn_scope not in BN_SCOPES:
            raise ValueError(f"unknown bn_scope {bn_scope!r}; valid: {', '.join(BN_SCOPES)}")
        self.bn_policy = bn_policy
        self.bn_affine = bn_affine
        self.bn_scope = bn_scope
        super().__init__(C, N, num_classes)
        if bn_scope == "cells+lastact":  # NATS-Bench: the last BN as the cells' (generic_model.py, lastact)
            c = self.lastact[0].num_features
            self.lastact[0] = nn.BatchNorm2d(c, affine=bn_affine, track_running_stats=bn_policy != "batch")

    def make_cell(self, c: int) -> nn.Module:
        return SearchCell(c, affine=self.bn_affine, track_running_stats=self.bn_policy != "batch")

    def forward(self, x: torch.Tensor, arch: Arch | CellPath) -> torch.Tensor:
        """``arch``: one architecture for every cell, or a :class:`~harness.space.CellPath` (one per search cell,
        in order; ABS's per-cell sampling)."""
        per_cell = isinstance(arch, CellPath)
        if per_cell and len(arch) != self.num_search_cells:
            raise ValueError(f"a per-cell path for this supernet needs {self.num_search_cells} architectures "
                             f"(one per search cell), got {len(arch)}")
        x = self.stem(x)
        k = 0
        for cell in self.cells:
            if isinstance(cell, SearchCell):
                x = cell(x, arch[k] if per_cell else arch)
                k += 1
            else:
                x = cell(x)
        return self.head(x)

    @property
    def num_search_cells(self) -> int:
        return sum(isinstance(cell, SearchCell) for cell in self.cells)

    def forward_weighted(self, x: torch.Tensor, weights: torch.Tensor, active: Sequence[int] | None = None
                         ) -> torch.Tensor:
        """Mixed-operation forward (see :meth:`SearchCell.forward_weighted`); weights: (6, 5), shared by every cell
        as in NB201's DARTS and GDAS. ``x: (B, 3, H, W) -> logits (B, classes)``."""
        if weights.shape != (NUM_EDGES, NUM_OPS):
            raise ValueError(f"weights must have shape ({NUM_EDGES}, {NUM_OPS}), got {tuple(weights.shape)}")
        x = self.stem(x)
        for cell in self.cells:
            x = cell.forward_weighted(x, weights, active) if isinstance(cell, SearchCell) else cell(x)
        return self.head(x)

    # One set of shared weights; harness.fewshot.FewShotSupernet has several and routes by architecture.
    def partition(self, arch: Arch) -> int:
        return 0

    def owner(self, arch: Arch) -> "Supernet":
        return self

    def subnets(self) -> list["Supernet"]:
        return [self]

    def op_modules(self, edge: int, op: int) -> list[nn.Module]:
        """The module of (edge, op) in every cell (for op-level metrics and shrinking)."""
        if not 0 <= op < NUM_OPS:
            raise ValueError(f"op index {op} out of range")
        return [cell.edges[edge][op] for cell in self.cells if isinstance(cell, SearchCell)]

    def describe(self) -> dict:
        return {"C": self.C, "N": self.N, "num_classes": self.num_classes, "bn_policy": self.bn_policy,
                "bn_affine": self.bn_affine, "bn_scope": self.bn_scope, "parameters": sum(p.numel() for p in self.parameters())}
