"""Child-model weight vectors, decomposed per module (for the angle and magnitude rules).

A child model's weight vector follows ABS (Hu et al., "Angle-based Search Space Shrinking for Neural
Architecture Search", ECCV 2020, Algorithm 1, and its NB201 code): every parameter outside the cells (stem,
reduction blocks, last BN, classifier), then, for each cell and each of its four input-to-output paths
(0->3, 0->2->3, 0->1->2->3, 0->1->3), the weights of the ops along the path, concatenated. A path with a
``none`` op anywhere is dropped whole (it does not connect input and output); ``skip_connect`` adds no
weights; ``avg_pool_3x3`` adds a fixed surrogate: a 3x3 kernel of 1/9 per channel; convolutions add their
weights (and BN affine parameters when ``bn_affine`` is on). An op on several live paths counts once per
path, as in ABS's block-like construction.

Because the vector is a concatenation, ``<W0, Wt>``, ``|W0|^2`` and ``|Wt|^2`` of a child are sums of
per-module terms: :func:`op_terms` computes them once per scoring round and :func:`child_terms` adds them
up for any number of architectures at once (no weight vector is ever materialised).
"""
from __future__ import annotations

from typing import Sequence

import numpy as np
import torch

from ..space import NUM_EDGES, NUM_OPS, OPS, Arch
from ..supernet import SearchCell, Supernet

# the input-to-output paths of an NB201 cell as edge indices (edges (0,1), (0,2), (1,2), (0,3), (1,3), (2,3))
PATHS: tuple[tuple[int, ...], ...] = ((3,), (1, 5), (0, 2, 5), (0, 4))
_NONE, _POOL = OPS.index("none"), OPS.index("avg_pool_3x3")


def _cell_op(name: str, search_cells: set[int]) -> tuple[int, int] | None:
    """(edge, op) if the parameter ``name`` belongs to a cell op of the supernet, else None."""
    parts = name.split(".")
    if len(parts) > 4 and parts[0] == "cells" and int(parts[1]) in search_cells and parts[2] == "edges":
        return int(parts[3]), int(parts[4])
    return None


def op_terms(net: Supernet, init_state: dict | None = None) -> tuple[np.ndarray, np.ndarray]:
    """``(base (3,), terms (6, 5, 3))`` of ``(<W0, Wt>, |W0|^2, |Wt|^2)`` in float64.

    ``base`` sums every parameter outside the cells; ``terms[e, op]`` sums the op's parameters over all
    cells (every cell uses the same architecture, so the per-cell terms can be added up front), with the
    pooling surrogate for ``avg_pool_3x3``. Without ``init_state`` the first two entries are 0 (magnitude).
    """
    search_cells = {i for i, cell in enumerate(net.cells) if isinstance(cell, SearchCell)}
    keys, values = [], []
    for name, p in net.named_parameters():
        now = p.detach().double()
        if init_state is None:
            values.append(torch.stack([now.new_zeros(()), now.new_zeros(()), (now * now).sum()]))
        else:
            if name not in init_state:
                raise KeyError(f"initial weights lack parameter {name!r}; they belong to another supernet")
            w0 = init_state[name].to(now.device, torch.float64)
            values.append(torch.stack([(w0 * now).sum(), (w0 * w0).sum(), (now * now).sum()]))
        keys.append(_cell_op(name, search_cells))
    stacked = torch.stack(values).cpu().numpy()  # one copy to the host per round
    base, terms = np.zeros(3), np.zeros((NUM_EDGES, NUM_OPS, 3))
    for key, row in zip(keys, stacked):
        if key is None:
            base += row
        else:
            terms[key] += row
    pooled = sum(net.cells[i].channels for i in search_cells) / 9.0  # |kernel of 1/9|^2 per channel
    terms[:, _POOL] = pooled if init_state is not None else (0.0, 0.0, pooled)
    return base, terms


def child_terms(archs: Sequence[Arch], base: np.ndarray, terms: np.ndarray) -> np.ndarray:
    """``(n, 3)``: each architecture's ``(<W0, Wt>, |W0|^2, |Wt|^2)`` from :func:`op_terms`."""
    ops = np.asarray(archs, dtype=np.int64).reshape(-1, NUM_EDGES)
    out = np.tile(base, (len(ops), 1))
    for path in PATHS:
        live = (ops[:, path] != _NONE).all(axis=1)
        contrib = sum(terms[e, ops[:, e]] for e in path)
        out += live[:, None] * contrib
    return out


def angles(archs: Sequence[Arch], base: np.ndarray, terms: np.ndarray) -> np.ndarray:
    """Angle (radians) between each child's weight vector at initialisation and now: 0 = unchanged."""
    dot, n0, nt = child_terms(archs, base, terms).T
    with np.errstate(invalid="ignore", divide="ignore"):
        cos = dot / np.sqrt(n0 * nt)
    return np.arccos(np.clip(cos, -1.0, 1.0))
