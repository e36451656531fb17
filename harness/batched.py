"""Architecture-batched supernet forward: K paths through one supernet in one pass.

:func:`forward_paths` runs ``K`` paths on the same images ``x: (B, 3, H, W)`` and returns logits ``(B, K,
classes)``: the same numbers as ``K`` calls of ``Supernet.forward(x, path)``, up to float rounding. It serves
estimation (:func:`harness.estimate.estimate_archs`), the multi-path training step (FairNAS, NSAS, few-shot;
:func:`harness.train.train_step`), and everything built on them (forgetting probes, the accuracy shrinker,
``track_every``).

How it works:

* The images are laid out sample-major: row ``b * K + k`` is image ``b`` under path ``k``, so a ``(B * K, C, H, W)``
  activation viewed as ``(B, K * C, H, W)`` has one BN channel per (path, channel). A BN over that view gives every
  path its own batch statistics in one native call, exactly as if the path ran alone.
* The stem sees the same images under every path, so it runs once, on ``B`` images.
* At each edge, each op runs once, on the rows of the paths that chose it (gathered with ``index_select`` and
  added back with ``index_add``). An op that the single path would not call (``none``, an op on a node that is
  still zero where zero is absorbing) is not called for that path here either, so a parameter gets a gradient
  exactly when some path's single-path forward would have given it one.

BN statistics follow one of four modes (:class:`Norm`):

``eval``        running statistics as stored (one set shared by every path), batch statistics where a BN has none
                (``bn_policy = "batch"``);
``calibrate``   batch statistics per path, and each path's mean and unbiased variance are summed into a table
                (``bn_policy = "recalibrate"``: the cumulative average over calibration batches);
``table``       each path normalised with its own row of that table;
``train``       batch statistics per path, and the running statistics updated once per path in path order, as
                the sequential single-path forwards would (the EMA of the sequence, applied in closed form).
"""
from __future__ import annotations

from typing import Sequence

import torch
import torch.nn.functional as F
from torch import nn

from .nets import ReLUConvBN, ResNetBasicblock
from .space import EDGES, NUM_NODES, OPS, PARAMETRIC_OPS, Arch, CellPath
from .supernet import SearchCell, Supernet

_NONE, _SKIP = OPS.index("none"), OPS.index("skip_connect")
MODES = ("eval", "calibrate", "table", "train")
Path = Arch | CellPath


def supports(model: nn.Module) -> bool:
    """Whether ``model`` is made of plain :class:`Supernet` s (one, or a few-shot set), which this engine runs
    exactly; anything else (a subclass with its own forward, a test double) runs eagerly."""
    nets = model.subnets() if hasattr(model, "subnets") else []
    return bool(nets) and all(type(n) is Supernet for n in nets)


class Norm:
    """How :func:`forward_paths` treats every BN (see the module docstring). ``table`` maps a BN module to
    ``[sum of means (K, C), sum of unbiased variances (K, C), batches]``."""

    def __init__(self, mode: str, k: int, table: dict | None = None):
        if mode not in MODES:
            raise ValueError(f"unknown BN mode {mode!r}; valid: {', '.join(MODES)}")
        self.mode, self.k = mode, k
        self.table = {} if table is None else table

    def __call__(self, bns: nn.BatchNorm2d | Sequence[nn.BatchNorm2d], x: torch.Tensor,
                 groups: torch.Tensor | None, n: int) -> torch.Tensor:
        """``x: (B * n, m * C, H, W)``, rows sample-major over ``n`` paths (``groups``: their indices, None = all K;
        ``n = 1`` with groups None at the stem, shared by every path), channels the ``m`` BNs of ``bns`` side by
        side (the outputs of one merged convolution; every BN normalises its own channels, as alone)."""
        bns = [bns] if isinstance(bns, nn.BatchNorm2d) else list(bns)
        bn, m = bns[0], len(bns)
        c = bn.num_features
        weight = None if bn.weight is None else _cat([b.weight for b in bns])
        bias = None if bn.bias is None else _cat([b.bias for b in bns])
        tracked = bn.track_running_stats and bn.running_mean is not None
        if self.mode == "eval" and tracked:  # per-sample: the shared running statistics
            return F.batch_norm(x, _cat([b.running_mean for b in bns]), _cat([b.running_var for b in bns]),
                                weight, bias, False, 0.0, bn.eps)
        if n > 1:
            x = x.contiguous()  # the (B, n * m * C, H, W) view needs NCHW memory
            weight = None if weight is None else weight.repeat(n)
            bias = None if bias is None else bias.repeat(n)
        xv = x.view(x.shape[0] // n, n * m * c, *x.shape[2:]) if n > 1 else x
        if not tracked or self.mode == "eval":
            return F.batch_norm(xv, None, None, weight, bias, True, 0.0, bn.eps).view_as(x)
        if self.mode == "table":
            idx = slice(None) if groups is None else groups
            rm = torch.stack([self.table[b][0][idx] / self.table[b][2] for b in bns], 1)  # (paths, m, C)
            rv = torch.stack([self.table[b][1][idx] / self.table[b][2] for b in bns], 1)
            if groups is None and n == 1:  # the stem: every path has the same statistics
                rm, rv = rm[:1], rv[:1]
            return F.batch_norm(xv, rm.reshape(-1), rv.reshape(-1), weight, bias, False, 0.0,
                                bn.eps).view_as(x)
        # calibrate / train: batch statistics per path; momentum 1 makes the buffers the batch mean and
        # the unbiased batch variance (what a running-statistics update uses)
        bm = torch.zeros(n * m * c, dtype=x.dtype, device=x.device)
        bv = torch.ones(n * m * c, dtype=x.dtype, device=x.device)
        out = F.batch_norm(xv, bm, bv, weight, bias, True, 1.0, bn.eps).view_as(x)
        bm, bv = bm.view(n, m, c), bv.view(n, m, c)
        rows = torch.arange(self.k, device=x.device) if groups is None else groups
        for j, b in enumerate(bns):
            mean, var = bm[:, j], bv[:, j]
            if groups is None and n == 1:  # the stem: the same statistics for every path
                mean, var = mean.expand(self.k, c), var.expand(self.k, c)
            if self.mode == "calibrate":
                entry = self.table.get(b)
                if entry is None:
                    entry = self.table[b] = [torch.zeros(self.k, c, dtype=x.dtype, device=x.device),
                                             torch.zeros(self.k, c, dtype=x.dtype, device=x.device), 0]
                entry[0].index_add_(0, rows, mean)
                entry[1].index_add_(0, rows, var)
                entry[2] += 1  # a module runs once per forward, so this counts calibration batches
            else:
                _ema(b, mean, var)
        return out


def _cat(tensors: list[torch.Tensor]) -> torch.Tensor:
    return tensors[0] if len(tensors) == 1 else torch.cat(tensors)


def _ema(bn: nn.BatchNorm2d, means: torch.Tensor, variances: torch.Tensor) -> None:
    """Running statistics after ``len(means)`` updates in order, each ``r <- (1 - m) r + m s_i``."""
    m = bn.momentum
    if m is None:
        raise ValueError("the batched training step needs a BN momentum (cumulative averaging is for calibration)")
    n = means.shape[0]
    with torch.no_grad():
        decay = (1 - m) ** torch.arange(n - 1, -1, -1, dtype=means.dtype, device=means.device)
        bn.running_mean.mul_((1 - m) ** n).add_(m * (decay @ means.detach()))
        bn.running_var.mul_((1 - m) ** n).add_(m * (decay @ variances.detach()))
        bn.num_batches_tracked.add_(n)


def _conv(conv: nn.Conv2d, x: torch.Tensor, weight: torch.Tensor | None = None) -> torch.Tensor:
    """``conv(x)``, or with ``weight`` in place of ``conv.weight`` (the weights of several like convolutions
    stacked along the output channels); on CPU in channels-last memory, where oneDNN's NCHW kernels for these
    small channel counts are several times slower (a 1x1 conv up to 25x). The output stays channels-last (a
    per-path BN over several paths makes it contiguous again, see :class:`Norm`)."""
    if x.device.type == "cpu":
        x = x.contiguous(memory_format=torch.channels_last)
    if weight is None:
        return conv(x)
    return F.conv2d(x, weight, conv.bias, conv.stride, conv.padding, conv.dilation, conv.groups)


_INV_COUNTS: dict = {}


def _avg_pool(x: torch.Tensor) -> torch.Tensor:
    """NB201's 3x3 average pool (stride 1, padding 1, ``count_include_pad=False``) as a depthwise box-sum conv
    times the reciprocal count of each position: the same values (to rounding), and on CPU about 4x faster than
    ``avg_pool2d`` without padding counts."""
    c, h, w = x.shape[1:]
    key = (c, h, w, x.device, x.dtype)
    if key not in _INV_COUNTS:
        ones = torch.ones(1, 1, h, w, device=x.device, dtype=x.dtype)
        counts = F.conv2d(ones, torch.ones(1, 1, 3, 3, device=x.device, dtype=x.dtype), padding=1)
        _INV_COUNTS[key] = (torch.ones(c, 1, 3, 3, device=x.device, dtype=x.dtype), counts.reciprocal())
    kernel, inv = _INV_COUNTS[key]
    return F.conv2d(x, kernel, padding=1, groups=c) * inv


def _rcb(block: ReLUConvBN, x: torch.Tensor, groups, n: int, norm: Norm) -> torch.Tensor:
    relu, conv, bn = block
    return norm(bn, _conv(conv, F.relu(x)), groups, n)


def _cell(cell: SearchCell, x: torch.Tensor, archs: Sequence[Arch], norm: Norm) -> torch.Tensor:
    """``x: (B, K, C, H, W)`` -> the cell's output under each path, same shape.

    Nodes are expanded source by source. Out of one source node, the ReLU runs once, the convolutions of one kernel
    size that serve the same paths run as one convolution over their stacked weights (with their BNs side by
    side), and a pooling that feeds several nodes runs once. Each destination node sums its inputs in the single
    path's order (by source). Outside training, an op whose output cannot reach the cell output is not run."""
    b, k = x.shape[:2]
    tail = x.shape[2:]
    c = tail[0]
    nodes: list[torch.Tensor | None] = [x] + [None] * (NUM_NODES - 1)
    written = [[True] * k] + [[False] * k for _ in range(NUM_NODES - 1)]  # node holds a value for path g
    owned = [False] * NUM_NODES  # the node's tensor was allocated here (so it may be updated in place)
    grad = torch.is_grad_enabled()
    # training must run dead ops too: their BN running statistics move in the single-path step
    reach = None if norm.mode == "train" else [_reaches_output(a) for a in archs]
    for src in range(NUM_NODES - 1):
        # (kind, members) -> the (destination, module) pairs it serves; kind: ("conv", kernel) or (op,)
        groups: dict[tuple, list[tuple[int, nn.Module]]] = {}
        for e, (s, dst) in enumerate(EDGES):
            if s != src:
                continue
            by_op: dict[int, list[int]] = {}
            for g, arch in enumerate(archs):
                op = arch[e]
                if op == _NONE or reach is not None and not reach[g][dst]:
                    continue
                if not written[src][g] and (op not in PARAMETRIC_OPS or cell.zero_is_absorbing):
                    continue  # the single path skips it too
                by_op.setdefault(op, []).append(g)
            for op, members in by_op.items():
                module = cell.edges[e][op]
                if isinstance(module, ReLUConvBN):
                    kind = ("conv", module[1].kernel_size)
                elif op == _SKIP or isinstance(module, nn.AvgPool2d):
                    kind = (op,)
                else:
                    raise TypeError(f"no batched rule for {type(module).__name__}")
                groups.setdefault(kind + (tuple(members),), []).append((dst, module))
        if not groups:
            continue
        value = nodes[src] if nodes[src] is not None else x.new_zeros(x.shape)
        relu = None
        for key, targets in groups.items():
            members = key[-1]
            n = len(members)
            full = n == k
            idx = None if full else torch.tensor(members, device=x.device)
            if key[0] == "conv":
                relu = F.relu(value) if relu is None else relu
                flat = (relu if full else relu.index_select(1, idx)).reshape(b * n, *tail)
                blocks = [module for _, module in targets]
                weight = _cat([block[1].weight for block in blocks])
                out = norm([block[2] for block in blocks], _conv(blocks[0][1], flat, weight), idx, n)
                out = out.view(b, n, len(blocks) * c, *tail[1:])
                pieces = [out[:, :, j * c:(j + 1) * c] for j in range(len(blocks))]
            else:
                inp = value if full else value.index_select(1, idx)
                piece = inp if key[0] == _SKIP else _avg_pool(inp.reshape(b * n, *tail)).view(b, n, *tail)
                pieces = [piece] * len(targets)
            for (dst, _), out in zip(targets, pieces):
                if full:
                    if nodes[dst] is None:
                        nodes[dst] = out  # may alias another node or tensor: never updated in place
                    elif owned[dst] and not grad:
                        nodes[dst].add_(out)
                    else:
                        nodes[dst], owned[dst] = nodes[dst] + out, True
                else:
                    if nodes[dst] is None:
                        nodes[dst], owned[dst] = x.new_zeros(x.shape), True
                    if grad or not owned[dst]:
                        nodes[dst], owned[dst] = nodes[dst].index_add(1, idx, out), True
                    else:
                        nodes[dst].index_add_(1, idx, out)
                for g in members:
                    written[dst][g] = True
    return nodes[-1] if nodes[-1] is not None else x.new_zeros(x.shape)


def _reduction(block: ResNetBasicblock, x: torch.Tensor, norm: Norm) -> torch.Tensor:
    b, k = x.shape[:2]
    flat = x.reshape(b * k, *x.shape[2:])
    pool, conv = block.downsample
    out = _rcb(block.conv_b, _rcb(block.conv_a, flat, None, k, norm), None, k, norm) + _conv(conv, pool(flat))
    return out.view(b, k, *out.shape[1:])


def forward_paths(model: Supernet, x: torch.Tensor, paths: Sequence[Path], norm: Norm) -> torch.Tensor:
    """Logits ``(B, K, classes)`` of ``K = len(paths)`` paths of ``model`` (one :class:`Supernet`) on ``x``."""
    k = len(paths)
    if k == 0:
        raise ValueError("no paths to run")
    per_cell = [isinstance(p, CellPath) for p in paths]
    cells = model.num_search_cells
    for p, pc in zip(paths, per_cell):
        if pc and len(p) != cells:
            raise ValueError(f"a per-cell path for this supernet needs {cells} architectures, got {len(p)}")
    conv, bn = model.stem
    # the stem stays NCHW: its 3-channel channels-last convolution's weight gradient is off by ~1e-3 in float32 on
    # CPU (tests/test_batched.py caught it), and it is one convolution of the whole network
    h = norm(bn, conv(x), None, 1)
    if k > 1:
        h = h.contiguous()  # (B, C, H, W): the same for every path
    h = h.unsqueeze(1).expand(h.shape[0], k, *h.shape[1:])
    j = 0
    for cell in model.cells:
        if isinstance(cell, SearchCell):
            h = _cell(cell, h, [p[j] if pc else p for p, pc in zip(paths, per_cell)], norm)
            j += 1
        else:
            h = _reduction(cell, h, norm)
    b = h.shape[0]
    flat = h.reshape(b * k, *h.shape[2:])
    last_bn, relu = model.lastact
    flat = F.relu(norm(last_bn, flat, None, k))
    logits = model.classifier(model.global_pooling(flat).flatten(1))
    return logits.view(b, k, -1)


def _reaches_output(arch: Arch) -> list[bool]:
    """``reach[n]``: node ``n``'s value flows into the cell output along edges whose op is not ``none``."""
    reach = [False] * (NUM_NODES - 1) + [True]
    for e in reversed(range(len(EDGES))):  # EDGES is ordered by destination, so one backward pass suffices
        src, dst = EDGES[e]
        if arch[e] != _NONE and reach[dst]:
            reach[src] = True
    return reach


def live_parameters(model: Supernet, paths: Sequence[Path]) -> set[int]:
    """``id``s of the parameters that some path's single-path loss depends on.

    A single-path forward through a cell whose output does not depend on its input (no chain of non-``none`` ops
    from node 0 to node 3) replaces the value by fresh zeros, so nothing upstream gets a gradient, and an op whose
    output never reaches the cell output gets none either. The batched forward computes the same values, but
    such modules sit in the same autograd graph as the live paths and receive exact zeros instead of no gradient;
    the training step uses this set to give them none, as the single-path steps would (SGD then skips them).
    """
    live: set[int] = set()
    cells = [(j, c) for j, c in enumerate(model.cells)]
    search_positions = [j for j, c in cells if isinstance(c, SearchCell)]

    def add(module: nn.Module) -> None:
        live.update(id(p) for p in module.parameters())

    for path in paths:
        per_cell = [path[k] if isinstance(path, CellPath) else path for k in range(len(search_positions))]
        reach = [_reaches_output(a) for a in per_cell]
        connected_after = True  # every search cell downstream passes its input on
        for k in reversed(range(len(search_positions))):
            arch, cell = per_cell[k], model.cells[search_positions[k]]
            written = [True] + [False] * (NUM_NODES - 1)
            for e, (src, dst) in enumerate(EDGES):
                op = arch[e]
                if op == _NONE or not written[src] and (op not in PARAMETRIC_OPS or cell.zero_is_absorbing):
                    continue
                written[dst] = True
                if connected_after and reach[k][dst]:
                    add(cell.edges[e][op])
            # reductions between this search cell and the next one up are live when everything after them is
            nxt = search_positions[k + 1] if k + 1 < len(search_positions) else len(model.cells)
            if connected_after:
                for j in range(search_positions[k] + 1, nxt):
                    add(model.cells[j])
            connected_after = connected_after and reach[k][0]
        if connected_after:
            add(model.stem)
            for j in range(search_positions[0] if search_positions else len(model.cells)):
                add(model.cells[j])
    add(model.lastact)
    add(model.classifier)
    return live
