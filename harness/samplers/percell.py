"""Per-cell uniform sampling: ABS's NB201 supernet (Hu et al., "Angle-based Search Space Shrinking for Neural
Architecture Search", ECCV 2020; megvii-model/AngleNAS).

In ABS's angle runs on NB201 (``NAS-Bench-201/exps/angle/dropnode_by_angle.py:39-41``) the supernet trains in
``dropnode`` mode: every search cell draws its own ops (``lib/models/cell_searchs/search_cells.py:98-116``,
``forward_dropnode``, called once per cell from ``search_model_spos.py:137-148``). For each node i = 1, 2, 3, the
ops of its incoming edges are drawn independently and uniformly from the edge's alive ops; if they are all
``none`` the node's draw is repeated (``while True ... if has_non_zero: break``). So node 1, which has a single
incoming edge, never takes ``none`` on edge 0->1, and every node has a live input in every cell.

A plan is one :class:`~harness.space.CellPath` (one architecture per search cell) of weight 1. The harness sets
``cells`` to the supernet's number of search cells (3N).

``reject_empty_nodes = false`` draws each edge uniformly with no rejection (per-cell SPOS). Where an edge's
alive ops are only ``none`` for every input of a node (possible after shrinking with ``min_ops = 1``) the
official loop would never end; here the node keeps its all-``none`` draw.

Under a few-shot split (:meth:`PerCellSampler.split`, called by harness/phases.py) every cell of a step shares
the ops of the split edges, drawn once per step, so the path belongs to one sub-supernet; each cell draws its
other edges on its own. This is the official few-shot supernet's sampling (aoiang/few-shot-NAS,
``Few-Shot_NasBench201/few-shot-nas-lib/models/cell_searchs/rank_model.py:97-111``: each search cell takes a
``random.choice`` from the pool of the 3,125 architectures with the sub-supernet's op on edge 1<-0), with the
sub-supernet drawn uniformly per step instead of trained one after another (docs/methods.md).
"""
from __future__ import annotations

import random
from typing import Sequence

from ..space import EDGES, NUM_NODES, OPS, Arch, CellPath
from .base import SAMPLERS, Sampler, check_allowed

_NONE = OPS.index("none")
# the edges into node i (i = 1..3), in NB201 edge order
_INCOMING = [[e for e, (_, dst) in enumerate(EDGES) if dst == node] for node in range(1, NUM_NODES)]


def draw_cell(allowed: Sequence[Sequence[int]], rng: random.Random, reject_empty_nodes: bool = True,
              fixed: dict[int, int] | None = None) -> Arch:
    """One cell's ops: per node, its incoming edges drawn uniformly from ``allowed``, redrawn while all are
    ``none`` (``reject_empty_nodes``), in node order and edge order within a node (as ``forward_dropnode``).
    ``fixed`` (edge -> op) pins some edges; only the others are drawn and redrawn."""
    fixed = fixed or {}
    ops = [fixed.get(e, 0) for e in range(len(EDGES))]
    for edges in _INCOMING:
        free = [e for e in edges if e not in fixed]
        live_fixed = any(fixed[e] != _NONE for e in edges if e in fixed)
        possible = reject_empty_nodes and not live_fixed and any(o != _NONE for e in free for o in allowed[e])
        while free:
            for e in free:
                ops[e] = rng.choice(allowed[e])
            if not possible or any(ops[e] != _NONE for e in free):
                break
    return Arch(ops)


@SAMPLERS.register("per-cell")
class PerCellSampler(Sampler):
    name = "per-cell"
    needs_cells = True  # the runner passes cells = the supernet's number of search cells

    def __init__(self, reject_empty_nodes: bool = True, cells: int = 15,
                 allowed: Sequence[Sequence[int]] | None = None):
        if isinstance(cells, bool) or not isinstance(cells, int) or cells < 1:
            raise ValueError(f"cells must be a positive number of search cells, got {cells!r}")
        self.reject_empty_nodes = bool(reject_empty_nodes)
        self.cells = cells
        self.allowed = check_allowed(allowed)
        self.shared_edges: tuple[int, ...] = ()  # the few-shot split edges, once the supernet is split

    def split(self, edges: Sequence[int]) -> None:
        """The supernet was split on ``edges``: from now on all cells of a path share those edges' ops."""
        self.shared_edges = tuple(int(e) for e in edges)

    def plan(self, step: int, rng: random.Random) -> list[tuple[CellPath, float]]:
        fixed = {e: rng.choice(self.allowed[e]) for e in self.shared_edges}
        return [(CellPath(draw_cell(self.allowed, rng, self.reject_empty_nodes, fixed) for _ in range(self.cells)),
                 1.0)]
