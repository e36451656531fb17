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

from typing import NamedTuple, Sequence

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


class Rows(NamedTuple):
    """Which paths a BN's ``n`` rows (units) stand for: ``reps[i]``, a path whose statistics row ``i`` is normalised
    with (``table``: every path of a unit has the same row); ``paths[j]`` is at row ``at[j]`` (``calibrate`` adds
    row ``at[j]``'s statistics to path ``paths[j]``; ``train`` applies them to the running statistics in that
    order, which is path order)."""
    reps: list[int]
    paths: list[int]
    at: list[int]


def _rows(pids: Sequence[int], slots: Sequence[int], n: int) -> Rows:
    reps: list[int | None] = [None] * n
    for p, s in zip(pids, slots):
        if reps[s] is None:
            reps[s] = p
    return Rows(reps, list(pids), list(slots))


class Norm:
    """How :func:`forward_paths` treats every BN (see the module docstring). ``table`` maps a BN module to
    ``[sum of means (K, C), sum of unbiased variances (K, C), batches per path (K,)]``."""

    def __init__(self, mode: str, k: int, table: dict | None = None):
        if mode not in MODES:
            raise ValueError(f"unknown BN mode {mode!r}; valid: {', '.join(MODES)}")
        self.mode, self.k = mode, k
        self.table = {} if table is None else table

    def __call__(self, bns: nn.BatchNorm2d | Sequence[nn.BatchNorm2d], x: torch.Tensor, n: int,
                 rows: Rows | Sequence[Rows]) -> torch.Tensor:
        """``x: (B * n, m * C, H, W)``, rows sample-major over ``n`` units (``rows``: the paths they stand for, one
        :class:`Rows` for all BNs or one per BN), channels the ``m`` BNs of ``bns`` side by side (the outputs of
        one merged convolution; every BN normalises its own channels, as alone)."""
        bns = [bns] if isinstance(bns, nn.BatchNorm2d) else list(bns)
        bn, m = bns[0], len(bns)
        rows = [rows] * m if isinstance(rows, Rows) else list(rows)
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
        dev = x.device
        if self.mode == "table":
            reps = [torch.tensor(r.reps, device=dev) for r in rows]
            rm = torch.stack([self.table[b][0][i] / self.table[b][2][i, None] for b, i in zip(bns, reps)], 1)
            rv = torch.stack([self.table[b][1][i] / self.table[b][2][i, None] for b, i in zip(bns, reps)], 1)
            return F.batch_norm(xv, rm.reshape(-1), rv.reshape(-1), weight, bias, False, 0.0,
                                bn.eps).view_as(x)  # rm, rv: (n, m, C)
        # calibrate / train: batch statistics per unit; momentum 1 makes the buffers the batch mean and
        # the unbiased batch variance (what a running-statistics update uses)
        bm = torch.zeros(n * m * c, dtype=x.dtype, device=dev)
        bv = torch.ones(n * m * c, dtype=x.dtype, device=dev)
        out = F.batch_norm(xv, bm, bv, weight, bias, True, 1.0, bn.eps).view_as(x)
        bm, bv = bm.view(n, m, c), bv.view(n, m, c)
        for j, (b, r) in enumerate(zip(bns, rows)):
            identity = r.at == list(range(n))
            at = None if identity else torch.tensor(r.at, device=dev)
            mean, var = (bm[:, j], bv[:, j]) if identity else (bm[at, j], bv[at, j])
            if self.mode == "calibrate":
                entry = self.table.get(b)
                if entry is None:
                    entry = self.table[b] = [torch.zeros(self.k, c, dtype=x.dtype, device=dev),
                                             torch.zeros(self.k, c, dtype=x.dtype, device=dev),
                                             torch.zeros(self.k, dtype=x.dtype, device=dev)]
                paths = torch.tensor(r.paths, device=dev)
                entry[0].index_add_(0, paths, mean)
                entry[1].index_add_(0, paths, var)
                entry[2].index_add_(0, paths, torch.ones(len(r.paths), dtype=x.dtype, device=dev))
            else:
                _ema(b, mean, var)  # r.paths is in path order
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


def _rcb(block: ReLUConvBN, x: torch.Tensor, rows: Rows, n: int, norm: Norm) -> torch.Tensor:
    relu, conv, bn = block
    return norm(bn, _conv(conv, F.relu(x)), n, rows)


def _cell(cell: SearchCell, x: torch.Tensor | list[torch.Tensor], slots: list[int], archs: Sequence[Arch],
          pids: Sequence[int], norm: Norm, dedupe: bool, split: bool
          ) -> tuple[torch.Tensor | list[torch.Tensor], list[int]]:
    """One search cell under ``len(archs)`` paths (global indices ``pids``, for the BN tables). ``x: (B, U, C, H,
    W)`` holds ``U`` distinct inputs, path ``g``'s at unit ``slots[g]``; returns the outputs the same way (with
    ``split``, as a list of ``U`` tensors ``(B, C, H, W)``: every node is kept unit by unit, which on CPU avoids
    gathering and scattering along the unit dimension).

    Every node holds its distinct values only: with ``dedupe`` (outside training), paths whose value at a node is
    computed by the same ops from the same inputs share one unit there (the stem output is one unit for all; in the
    first cell, architectures that agree on its first edges share those nodes), so an op runs once per distinct
    input. Without it every path has its own unit, as in the training step.

    Nodes are expanded source by source. Out of one source node, the ReLU runs once, the convolutions of one kernel
    size that serve the same units run as one convolution over their stacked weights (with their BNs side by side),
    and a pooling that feeds several nodes runs once. Each destination sums its inputs in the single path's order
    (by source). Outside training, an op whose output cannot reach the cell output is not run."""
    if split:
        vals: list[list[torch.Tensor] | None] = [list(x) if isinstance(x, list) else list(x.unbind(1))]
        x = vals[0][0].unsqueeze(1)
        vals += [None] * (NUM_NODES - 1)
    b = x.shape[0]
    tail = x.shape[2:]
    c = tail[0]
    k = len(archs)
    dev = x.device
    grad = torch.is_grad_enabled()
    cpu = dev.type == "cpu"
    # training must run dead ops too: their BN running statistics move in the single-path step
    reach = None if norm.mode == "train" else [_reaches_output(a) for a in archs]
    nodes: list[torch.Tensor | None] = [None if split else x] + [None] * (NUM_NODES - 1)
    slot: list[list[int | None]] = [list(slots)] + [[None] * k for _ in range(NUM_NODES - 1)]
    # terms[dst][g]: (src, edge, op, src unit) of each input path g's node dst sums, in source order
    terms: list[list[list[tuple]]] = [[[] for _ in range(k)] for _ in range(NUM_NODES)]
    pieces: dict[tuple[int, int], tuple[torch.Tensor, dict[int, int]]] = {}  # (edge, op) -> (B, n, C, H, W), unit -> i

    def materialise(d: int) -> None:
        keys: dict[tuple, int] = {}
        for g in range(k):
            if terms[d][g]:
                key = tuple(terms[d][g]) if dedupe else (g,) + tuple(terms[d][g])
                slot[d][g] = keys.setdefault(key, len(keys))
        if not keys:
            return
        units = list(keys)
        if split:  # each unit the sum of its inputs' pieces, in source order
            vals[d] = []
            for key in units:
                total = None
                for _, e, op, u in key[0 if dedupe else 1:]:
                    piece, position = pieces[e, op]
                    term = piece[:, position[u]]
                    if cpu and total is not None:  # sums of strided slices take a slow path: dense operands
                        total = total.contiguous(memory_format=torch.channels_last) + \
                            term.contiguous(memory_format=torch.channels_last)
                    else:
                        total = term if total is None else total + term
                vals[d].append(total)
            return
        n_units = len(units)
        node, owned = None, False
        for s in range(d):
            by_term: dict[tuple[int, int], tuple[list[int], list[int]]] = {}
            for v, key in enumerate(units):
                for t in key[0 if dedupe else 1:]:
                    if t[0] == s:
                        piece_units = pieces[t[1], t[2]][1]
                        vs, ps = by_term.setdefault((t[1], t[2]), ([], []))
                        vs.append(v)
                        ps.append(piece_units[t[3]])
            for (e, op), (vs, ps) in by_term.items():
                out = pieces[e, op][0]
                if ps != list(range(out.shape[1])):
                    out = out.index_select(1, torch.tensor(ps, device=dev))
                if vs == list(range(n_units)):
                    if node is None:
                        node = out  # may alias another node or tensor: never updated in place
                    elif owned and not grad:
                        node.add_(out)
                    else:
                        node, owned = node + out, True
                else:
                    if node is None:
                        node, owned = x.new_zeros(b, n_units, *tail), True
                    idx = torch.tensor(vs, device=dev)
                    node = node.index_add(1, idx, out) if grad else node.index_add_(1, idx, out)
        nodes[d] = node

    def select(units: list[int], relu: bool) -> torch.Tensor:
        """The (ReLU of the) source's values at ``units``: ``(B, n, C, H, W)``."""
        if split:
            got = [relued[u] if relu else vals[src][u] for u in units]
            return got[0].unsqueeze(1) if len(got) == 1 else torch.stack(got, 1)
        value = relued if relu else nodes[src]
        return value if units == list(range(value.shape[1])) else value.index_select(1, torch.tensor(units, device=dev))

    for src in range(NUM_NODES - 1):
        if src > 0:
            materialise(src)
        # (kind, units) -> the (edge, op, module) triples it serves; kind: ("conv", kernel) or (op,)
        groups: dict[tuple, list[tuple[int, int, nn.Module]]] = {}
        users: dict[tuple[int, int], list[int]] = {}  # (edge, op) -> the paths that run it, in path order
        for e, (s, dst) in enumerate(EDGES):
            if s != src:
                continue
            for g, arch in enumerate(archs):
                op = arch[e]
                if op == _NONE or reach is not None and not reach[g][dst]:
                    continue
                if slot[src][g] is None and (op not in PARAMETRIC_OPS or cell.zero_is_absorbing):
                    continue  # the single path skips it too
                users.setdefault((e, op), []).append(g)
        if not users:
            continue
        zero_unit = None
        if any(slot[src][g] is None for us in users.values() for g in us):  # a parametric op on a zero node
            if split:
                vals[src] = (vals[src] or []) + [x.new_zeros(b, *tail)]
                zero_unit = len(vals[src]) - 1
            else:
                zero_unit = 0 if nodes[src] is None else nodes[src].shape[1]
                zeros = x.new_zeros(b, 1, *tail)
                nodes[src] = zeros if nodes[src] is None else torch.cat([nodes[src], zeros], 1)
        unit_of = [zero_unit if u is None else u for u in slot[src]]
        for (e, op), us in users.items():
            module = cell.edges[e][op]
            if isinstance(module, ReLUConvBN):
                kind = ("conv", module[1].kernel_size)
            elif op == _SKIP or isinstance(module, nn.AvgPool2d):
                kind = (op,)
            else:
                raise TypeError(f"no batched rule for {type(module).__name__}")
            units = tuple(sorted({unit_of[g] for g in us}))
            groups.setdefault((kind, units), []).append((e, op, module))
        if split and cpu:
            # a channel slice of a merged convolution's output is not dense: every op on it takes a slow path
            vals[src] = [v.contiguous(memory_format=torch.channels_last) for v in vals[src]]
        elif cpu and nodes[src].shape[1] == 1:
            nodes[src] = nodes[src][:, 0].contiguous(memory_format=torch.channels_last).unsqueeze(1)
        relued = None
        for key, targets in groups.items():
            kind, units = key[0], list(key[1])
            n = len(units)
            position = {u: i for i, u in enumerate(units)}
            if kind[0] == "conv":
                if relued is None:
                    relued = [F.relu(v) for v in vals[src]] if split else F.relu(nodes[src])
                flat = select(units, True).reshape(b * n, *tail)
                blocks = [module for _, _, module in targets]
                rows = [_rows([pids[g] for g in users[e, op]], [position[unit_of[g]] for g in users[e, op]], n)
                        for e, op, _ in targets]
                weight = _cat([block[1].weight for block in blocks])
                out = norm([block[2] for block in blocks], _conv(blocks[0][1], flat, weight), n, rows)
                out = out.view(b, n, len(blocks) * c, *tail[1:])
                outs = [out[:, :, j * c:(j + 1) * c] for j in range(len(blocks))]
            else:
                inp = select(units, False)
                piece = inp if kind[0] == _SKIP else _avg_pool(inp.reshape(b * n, *tail)).view(b, n, *tail)
                outs = [piece] * len(targets)
            for (e, op, _), out in zip(targets, outs):
                pieces[e, op] = (out, position)
                dst = EDGES[e][1]
                for g in users[e, op]:
                    terms[dst][g].append((src, e, op, unit_of[g]))
    materialise(NUM_NODES - 1)
    out_slot = slot[-1]
    if split:
        out = vals[-1] or []
        if any(s is None for s in out_slot):  # a path whose cell output is zero
            out = out + [x.new_zeros(b, *tail)]
            out_slot = [len(out) - 1 if s is None else s for s in out_slot]
        return out, out_slot
    out = nodes[-1]
    if any(s is None for s in out_slot):
        zero_unit = 0 if out is None else out.shape[1]
        zeros = x.new_zeros(b, 1, *tail)
        out = zeros if out is None else torch.cat([out, zeros], 1)
        out_slot = [zero_unit if s is None else s for s in out_slot]
    return out, out_slot


def _reduction(block: ResNetBasicblock, x: torch.Tensor, rows: Rows, norm: Norm) -> torch.Tensor:
    b, n = x.shape[:2]
    flat = x.reshape(b * n, *x.shape[2:])
    pool, conv = block.downsample
    out = _rcb(block.conv_b, _rcb(block.conv_a, flat, rows, n, norm), rows, n, norm) + _conv(conv, pool(flat))
    return out.view(b, n, *out.shape[1:])


def forward_paths(model: Supernet, x: torch.Tensor, paths: Sequence[Path], norm: Norm,
                  split: bool | None = None) -> torch.Tensor:
    """Logits ``(B, K, classes)`` of ``K = len(paths)`` paths of ``model`` (one :class:`Supernet`) on ``x``.

    ``split`` (default: on CPU outside training): after the first search cell, the distinct values go on one at a
    time (on two CPU cores a narrow activation stays in cache; a GPU wants them all in one launch)."""
    k = len(paths)
    if k == 0:
        raise ValueError("no paths to run")
    per_cell = [isinstance(p, CellPath) for p in paths]
    cells = model.num_search_cells
    for p, pc in zip(paths, per_cell):
        if pc and len(p) != cells:
            raise ValueError(f"a per-cell path for this supernet needs {cells} architectures, got {len(p)}")
    dedupe = norm.mode != "train"
    split = x.device.type == "cpu" and dedupe if split is None else split
    conv, bn = model.stem
    pids = list(range(k))
    # the stem stays NCHW: its 3-channel channels-last convolution's weight gradient is off by ~1e-3 in float32 on
    # CPU (tests/test_batched.py caught it), and it is one convolution of the whole network
    h = norm(bn, conv(x), 1, Rows([0], pids, [0] * k))  # the same for every path: one unit
    if dedupe:
        h, slots = h.unsqueeze(1), [0] * k
    else:  # training: every path its own unit, in its own rows of one (B, K, C, H, W) tensor
        h = h.contiguous() if k > 1 else h
        h, slots = h.unsqueeze(1).expand(h.shape[0], k, *h.shape[1:]), pids
    return _forward_from(model, 0, 0, h, slots, pids, paths, per_cell, norm, dedupe, split)


def _forward_from(model: Supernet, start: int, j: int, h: torch.Tensor, slots: list[int], pids: list[int],
                  paths: Sequence[Path], per_cell: list[bool], norm: Norm, dedupe: bool,
                  split: bool) -> torch.Tensor:
    """The network from cell ``start`` (search cell ``j``) on for the paths ``pids``: ``(B, len(pids), classes)``."""
    b = h.shape[0]
    for i in range(start, len(model.cells)):
        cell = model.cells[i]
        if isinstance(cell, SearchCell):
            archs = [paths[p][j] if per_cell[p] else paths[p] for p in pids]
            h, slots = _cell(cell, h, slots, archs, pids, norm, dedupe, split)
            j += 1
            if split:
                if len(h) == 1:
                    h = h[0].unsqueeze(1)
                    continue
                parts, order = [], []
                for u, value in enumerate(h):
                    members = [g for g, s in enumerate(slots) if s == u]
                    parts.append(_forward_from(model, i + 1, j, value.unsqueeze(1), [0] * len(members),
                                               [pids[g] for g in members], paths, per_cell, norm, dedupe, split))
                    order.extend(members)
                out = torch.cat(parts, 1)
                inverse = [0] * len(order)
                for at, g in enumerate(order):
                    inverse[g] = at
                return out[:, inverse]
        else:
            h = _reduction(cell, h, _rows(pids, slots, h.shape[1]), norm)
    n = h.shape[1]
    flat = h.reshape(b * n, *h.shape[2:])
    last_bn, relu = model.lastact
    flat = F.relu(norm(last_bn, flat, n, _rows(pids, slots, n)))
    logits = model.classifier(model.global_pooling(flat).flatten(1)).view(b, n, -1)
    identity = slots == list(range(n))
    return logits if identity else logits[:, slots]


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
