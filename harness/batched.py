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
* On CPU outside training (``split``) the search cells run unit by unit instead (:class:`_UnitCell`): every
  distinct value is a dense tensor of its own, computed on demand and freed after its last use, and after the first
  cell each distinct value goes through the rest of the network on its own. Where a BN normalises with fixed
  statistics it is folded into the convolution before it (:meth:`Norm.folded`).

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

import ctypes
import itertools
import sys
from typing import Iterator, NamedTuple, Sequence

import torch
import torch.nn.functional as F
from torch import nn

from .nets import ReLUConvBN, ResNetBasicblock
from .space import EDGES, NUM_NODES, OPS, PARAMETRIC_OPS, Arch, CellPath
from .supernet import SearchCell, Supernet

_NONE, _SKIP = OPS.index("none"), OPS.index("skip_connect")
MODES = ("eval", "calibrate", "table", "train")
Path = Arch | CellPath


# glibc serves allocations up to this size from its heap (its largest mmap threshold); larger ones are mapped and
# unmapped every time, so their pages fault in again on every use
HEAP_ALLOCATION_LIMIT = 32 * 2**20
_KEEPS_FREED_MEMORY = False


def keep_freed_memory() -> bool:
    """Make glibc keep freed memory for reuse instead of handing it back to the kernel (once per process; Linux with
    glibc only, a no-op elsewhere). Returns whether the setting is in force.

    On CPU this engine allocates and frees many activations per forward (one per distinct value and op). By default
    glibc maps every allocation over its dynamic threshold afresh and trims the freed top of its heap, so the pages of
    those activations fault in again on every forward: measured on 2 cores, 67,000-160,000 page faults per
    estimation of 64 architectures, a third of its time (reports/perf/README.md). With the threshold fixed at
    :data:`HEAP_ALLOCATION_LIMIT` and trimming off, a process keeps its peak heap (its resident memory does not shrink
    after a forward) and the faults stop after the first chunk of architectures. It changes no computed value."""
    global _KEEPS_FREED_MEMORY
    if _KEEPS_FREED_MEMORY or not sys.platform.startswith("linux"):
        return _KEEPS_FREED_MEMORY
    try:
        libc = ctypes.CDLL("libc.so.6")
        m_trim_threshold, m_mmap_threshold = -1, -3  # malloc.h
        _KEEPS_FREED_MEMORY = bool(libc.mallopt(m_mmap_threshold, HEAP_ALLOCATION_LIMIT)) and \
            bool(libc.mallopt(m_trim_threshold, 2**31 - 1))
    except (OSError, AttributeError):  # not glibc
        pass
    return _KEEPS_FREED_MEMORY


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
        self.groups = 1  # calibrate: calibration batches stacked in the forward (see _calibrate_groups)
        self._table = {} if table is None else table
        self._folded: dict[tuple, tuple[torch.Tensor, torch.Tensor]] = {}
        self._affines: dict[nn.BatchNorm2d, tuple[torch.Tensor, torch.Tensor]] = {}
        # calibrate on CPU: each BN's (paths, means, variances) of every call, summed into the table when it is read
        self._pending: dict[nn.BatchNorm2d, list[tuple[list[int], torch.Tensor, torch.Tensor]]] = {}

    @property
    def table(self) -> dict:
        """BN -> ``[sum of means (K, C), sum of unbiased variances (K, C), batches per path (K,)]``, with every
        pending calibration call added."""
        for b, items in self._pending.items():
            x = items[0][1]
            entry = self._table.get(b)
            if entry is None:
                entry = self._table[b] = [x.new_zeros(self.k, x.shape[1]), x.new_zeros(self.k, x.shape[1]),
                                          x.new_zeros(self.k)]
            paths = torch.tensor([p for ps, _, _ in items for p in ps], device=x.device)
            entry[0].index_add_(0, paths, torch.cat([m for _, m, _ in items]))  # sequential on CPU: call order
            entry[1].index_add_(0, paths, torch.cat([v for _, _, v in items]))
            entry[2].index_add_(0, paths, x.new_ones(len(paths)))
        self._pending.clear()
        return self._table

    def folded(self, convs: Sequence[nn.Conv2d], bns: Sequence[nn.BatchNorm2d], n: int,
               rows: Sequence[Rows]) -> tuple[torch.Tensor, torch.Tensor] | None:
        """``(weight, bias)`` of one convolution that computes ``convs`` (like convolutions, stacked) each followed by
        its BN in ``bns``, side by side, where those BNs normalise every image with fixed statistics (``eval`` with
        running statistics, or one unit's row of the ``table``); ``None`` where they use batch statistics. Cached
        for the life of this object: the model must not change meanwhile (as in one estimation call)."""
        bn = bns[0]
        if not (bn.track_running_stats and bn.running_mean is not None) or n != 1 or \
                self.mode not in ("eval", "table") or torch.is_grad_enabled():  # a cache must not hold a graph
            return None
        reps = [r.reps[0] for r in rows] if self.mode == "table" else [None] * len(bns)
        key = (tuple(map(id, convs)), tuple(map(id, bns)), tuple(reps))
        if key not in self._folded:
            affine = [self._affine(b) for b in bns]
            scale = _cat([sc if i is None else sc[i] for (sc, _), i in zip(affine, reps)])
            shift = _cat([sh if i is None else sh[i] for (_, sh), i in zip(affine, reps)])
            weight = _cat([conv.weight for conv in convs])
            self._folded[key] = ((weight * scale.view(-1, 1, 1, 1)).contiguous(), shift)
        return self._folded[key]

    def _affine(self, bn: nn.BatchNorm2d) -> tuple[torch.Tensor, torch.Tensor]:
        """``bn`` in ``eval`` (running statistics) or ``table`` mode as ``x * scale + shift``: ``(C,)`` each, or
        ``(K, C)`` (one row per path) from the table; computed once per BN for the life of this object."""
        if bn not in self._affines:
            if self.mode == "eval":
                mean, var = bn.running_mean, bn.running_var
            else:
                sums, sq_sums, count = self.table[bn]
                mean, var = sums / count[:, None], sq_sums / count[:, None]
            scale = (var + bn.eps).rsqrt()
            if bn.weight is not None:
                scale = scale * bn.weight
            shift = -mean * scale
            if bn.bias is not None:
                shift = shift + bn.bias
            self._affines[bn] = (scale, shift)
        return self._affines[bn]

    def _calibrate_groups(self, bns: list[nn.BatchNorm2d], x: torch.Tensor, n: int, rows: list[Rows],
                          weight: torch.Tensor | None, bias: torch.Tensor | None) -> torch.Tensor:
        """``calibrate`` with :attr:`groups` calibration batches of equal size stacked along the images of one
        forward (CPU, one unit): each batch is normalised with its own statistics, and each enters the table as one
        batch, as in separate forwards; the forward's other ops run once on all of them."""
        if n != 1 or self.mode != "calibrate" or x.device.type != "cpu":
            raise ValueError("stacked calibration batches need the CPU unit-by-unit mode (one unit per BN call)")
        g, c, size = self.groups, bns[0].num_features, x.shape[0] // self.groups
        means, variances = x.new_zeros(g, x.shape[1]), x.new_ones(g, x.shape[1])
        out, scratch = torch.empty_like(x), x.new_empty(2, x.shape[1])
        for i in range(g):  # a batch's rows are dense in any memory format: native BN straight into its rows
            part = slice(i * size, (i + 1) * size)
            torch.ops.aten.native_batch_norm.out(x[part], weight, bias, means[i], variances[i], True, 1.0, bns[0].eps,
                                                 out=out[part], save_mean=scratch[0], save_invstd=scratch[1])
        for j, (b, r) in enumerate(zip(bns, rows)):
            items = self._pending.setdefault(b, [])
            for i in range(g):
                items.append((r.paths, means[i, j * c:(j + 1) * c].expand(len(r.at), c),
                              variances[i, j * c:(j + 1) * c].expand(len(r.at), c)))
        return out

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
        if not tracked and self.groups > 1:
            raise ValueError("stacked calibration batches need BNs with running statistics (bn_policy 'batch' "
                             "normalises each batch on its own: one forward per batch)")
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
        if self.groups > 1:
            return self._calibrate_groups(bns, x, n, rows, weight, bias)
        bm = torch.zeros(n * m * c, dtype=x.dtype, device=dev)
        bv = torch.ones(n * m * c, dtype=x.dtype, device=dev)
        out = F.batch_norm(xv, bm, bv, weight, bias, True, 1.0, bn.eps).view_as(x)
        bm, bv = bm.view(n, m, c), bv.view(n, m, c)
        for j, (b, r) in enumerate(zip(bns, rows)):
            if n == 1:
                mean, var = bm[0, j].expand(len(r.at), c), bv[0, j].expand(len(r.at), c)
            elif r.at == list(range(n)):
                mean, var = bm[:, j], bv[:, j]
            else:
                at = torch.tensor(r.at, device=dev)
                mean, var = bm[at, j], bv[at, j]
            if self.mode == "calibrate" and dev.type == "cpu":
                self._pending.setdefault(b, []).append((r.paths, mean, var))
            elif self.mode == "calibrate":  # one index_add_ per call: on CUDA, repeated indices add in no fixed order
                entry = self._table.get(b)
                if entry is None:
                    entry = self._table[b] = [torch.zeros(self.k, c, dtype=x.dtype, device=dev),
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


def _conv(conv: nn.Conv2d, x: torch.Tensor, weight: torch.Tensor | None = None,
          bias: torch.Tensor | None = None) -> torch.Tensor:
    """``conv(x)``, or with ``weight`` in place of ``conv.weight`` (the weights of several like convolutions
    stacked along the output channels); on CPU in channels-last memory, where oneDNN's NCHW kernels for these
    small channel counts are several times slower (a 1x1 conv up to 25x). The output stays channels-last (a
    per-path BN over several paths makes it contiguous again, see :class:`Norm`)."""
    if x.device.type == "cpu":
        x = x.contiguous(memory_format=torch.channels_last)
    if weight is None and bias is None:
        return conv(x)
    return F.conv2d(x, conv.weight if weight is None else weight, conv.bias if bias is None else bias, conv.stride,
                    conv.padding, conv.dilation, conv.groups)


def _conv_norm(convs: Sequence[nn.Conv2d], bns: Sequence[nn.BatchNorm2d], x: torch.Tensor, n: int,
               rows: Sequence[Rows], norm: Norm) -> torch.Tensor:
    """Like convolutions ``convs`` on ``x`` as one over their stacked weights, each followed by its BN in ``bns``
    (channels side by side). Where the BNs are a fixed per-channel affine map (:meth:`Norm.folded`) it is one
    convolution with folded weights and a bias: the same values to float rounding, one pass over memory fewer."""
    folded = norm.folded(convs, bns, n, rows)
    if folded is not None:
        return _conv(convs[0], x, *folded)
    weight = None if len(convs) == 1 else torch.cat([conv.weight for conv in convs])
    return norm(list(bns), _conv(convs[0], x, weight), n, list(rows))


_INV_COUNTS: dict = {}


def _avg_pool(x: torch.Tensor) -> torch.Tensor:
    """NB201's 3x3 average pool (stride 1, padding 1, ``count_include_pad=False``) as a depthwise box-sum conv
    times the reciprocal count of each position: the same values (to rounding), and on CPU about 4x faster than
    ``avg_pool2d`` without padding counts. The reciprocals are laid out like the activation (every channel, in its
    memory format): broadcast over the innermost channels of a channels-last tensor, the product takes a slow path
    (measured 8x slower at 8 channels)."""
    c, h, w = x.shape[1:]
    cl = x.is_contiguous(memory_format=torch.channels_last) and not x.is_contiguous()
    key = (c, h, w, x.device, x.dtype, cl)
    if key not in _INV_COUNTS:
        ones = torch.ones(1, 1, h, w, device=x.device, dtype=x.dtype)
        counts = F.conv2d(ones, torch.ones(1, 1, 3, 3, device=x.device, dtype=x.dtype), padding=1)
        inv = counts.reciprocal().expand(1, c, h, w)
        inv = inv.contiguous(memory_format=torch.channels_last) if cl else inv.contiguous()
        _INV_COUNTS[key] = (torch.ones(c, 1, 3, 3, device=x.device, dtype=x.dtype), inv)
    kernel, inv = _INV_COUNTS[key]
    out = F.conv2d(x, kernel, padding=1, groups=c)
    return out * inv if torch.is_grad_enabled() else out.mul_(inv)


def _pool2(pool: nn.AvgPool2d, x: torch.Tensor) -> torch.Tensor:
    """The reduction's 2x2 average pool (stride 2); on CPU as a depthwise convolution with weights 1/4, the same
    values, and at 8 channels in channels-last memory 3x faster than ``avg_pool2d``."""
    if x.device.type != "cpu":
        return pool(x)
    c = x.shape[1]
    key = ("pool2", c, x.dtype)
    if key not in _INV_COUNTS:
        _INV_COUNTS[key] = torch.full((c, 1, 2, 2), 0.25, dtype=x.dtype)
    return F.conv2d(x, _INV_COUNTS[key], stride=2, groups=c)


def _rcb(block: ReLUConvBN, x: torch.Tensor, rows: Rows, n: int, norm: Norm) -> torch.Tensor:
    relu, conv, bn = block
    return _conv_norm([conv], [bn], F.relu(x), n, [rows], norm)


def _cell(cell: SearchCell, x: torch.Tensor, slots: list[int], archs: Sequence[Arch], pids: Sequence[int],
          norm: Norm, dedupe: bool) -> tuple[torch.Tensor, list[int]]:
    """One search cell under ``len(archs)`` paths (global indices ``pids``, for the BN tables). ``x: (B, U, C, H,
    W)`` holds ``U`` distinct inputs, path ``g``'s at unit ``slots[g]``; returns the outputs the same way.

    Every node holds its distinct values only: with ``dedupe`` (outside training), paths whose value at a node is
    computed by the same ops from the same inputs share one unit there (the stem output is one unit for all; in the
    first cell, architectures that agree on its first edges share those nodes), so an op runs once per distinct
    input. Without it every path has its own unit, as in the training step.

    Nodes are expanded source by source. Out of one source node, the ReLU runs once, the convolutions of one kernel
    size that serve the same units run as one convolution over their stacked weights (with their BNs side by side),
    and a pooling that feeds several nodes runs once. Each destination sums its inputs in the single path's order
    (by source). Outside training, an op whose output cannot reach the cell output is not run."""
    b = x.shape[0]
    tail = x.shape[2:]
    c = tail[0]
    k = len(archs)
    dev = x.device
    grad = torch.is_grad_enabled()
    cpu = dev.type == "cpu"
    # training must run dead ops too: their BN running statistics move in the single-path step
    reach = None if norm.mode == "train" else [_reaches_output(a) for a in archs]
    nodes: list[torch.Tensor | None] = [x] + [None] * (NUM_NODES - 1)
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
        if cpu and nodes[src].shape[1] == 1:
            nodes[src] = nodes[src][:, 0].contiguous(memory_format=torch.channels_last).unsqueeze(1)
        relued = None
        for key, targets in groups.items():
            kind, units = key[0], list(key[1])
            n = len(units)
            position = {u: i for i, u in enumerate(units)}
            if kind[0] == "conv":
                if relued is None:
                    relued = F.relu(nodes[src])
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
    out = nodes[-1]
    if any(s is None for s in out_slot):
        zero_unit = 0 if out is None else out.shape[1]
        zeros = x.new_zeros(b, 1, *tail)
        out = zeros if out is None else torch.cat([out, zeros], 1)
        out_slot = [zero_unit if s is None else s for s in out_slot]
    return out, out_slot


class _UnitCell:
    """One search cell outside training, evaluated lazily, one distinct value at a time (the engine's CPU mode).

    ``xs`` holds the ``U`` distinct inputs ``(B, C, H, W)``, path ``g``'s at ``xs[slots[g]]``. Paths share a value
    (a unit) at a node wherever the same ops ran on the same inputs, so every op runs once per distinct input; this
    structure is planned up front (:meth:`__init__`) without touching a tensor. :meth:`outputs` then yields the
    distinct cell outputs one by one, each computed on demand with what it needs: a value, a ReLU or an op's output
    is kept only while something still to be computed uses it. So only a few activations are alive at once (on CPU,
    dense tensors in cache beat gathering units into one tensor), however many paths share the cell.

    Each node sums its inputs in the single path's order (by source); an op whose output cannot reach the cell output
    is not run; a parametric op on a node that is still zero runs on zeros exactly where the single path does."""

    def __init__(self, cell: SearchCell, xs: Sequence[torch.Tensor], slots: Sequence[int],
                 archs: Sequence[Arch], pids: Sequence[int], norm: Norm):
        self.cell, self.norm, self.pids = cell, norm, list(pids)
        self.memo: dict[tuple, torch.Tensor] = {("v", 0, u): _dense(v) for u, v in enumerate(xs)}
        self.like = xs[0]
        k = len(archs)
        reach = [_reaches_output(a) for a in archs]
        slot: list[list] = [list(slots)] + [[None] * k for _ in range(NUM_NODES - 1)]
        self.keys: list[list[tuple]] = [[] for _ in range(NUM_NODES)]  # node -> unit -> its (edge, op, unit) inputs
        self.users: dict[tuple, list[int]] = {}  # (edge, op, unit) -> the paths that run it, in path order
        for d in range(1, NUM_NODES):
            index: dict[tuple, int] = {}
            for g, arch in enumerate(archs):
                terms = []
                for e, (src, dst) in enumerate(EDGES):
                    op = arch[e]
                    if dst != d or op == _NONE or not reach[g][d]:
                        continue
                    u = slot[src][g]
                    if u is None:  # a zero node: the single path skips the op, or runs it on zeros
                        if op not in PARAMETRIC_OPS or cell.zero_is_absorbing:
                            continue
                        u = "zero"
                    terms.append((e, op, u))
                    self.users.setdefault((e, op, u), []).append(g)
                if terms:
                    slot[d][g] = index.setdefault(tuple(terms), len(index))
            self.keys[d] = list(index)
        self.out_slot = slot[-1]
        # how often each value, ReLU and op output will be asked for, from the outputs down
        self.uses: dict[tuple, int] = {}
        for u in range(len(self.keys[-1])):
            self._use(("v", NUM_NODES - 1, u))
        # the convolutions of one kernel size out of one source value run as one, over their stacked weights
        self.convs: dict[tuple, list[tuple]] = {}
        for name in self.uses:
            if name[0] == "p" and isinstance(self.cell.edges[name[1]][name[2]], ReLUConvBN):
                kernel = self.cell.edges[name[1]][name[2]][1].kernel_size
                self.convs.setdefault((EDGES[name[1]][0], name[3], kernel), []).append(name)

    def _use(self, name: tuple) -> None:
        """Counts one more use of ``name`` and, the first time, what computing it uses."""
        first = name not in self.uses
        self.uses[name] = self.uses.get(name, 0) + 1
        if not first:
            return
        if name[0] == "p":
            _, e, op, u = name
            src = EDGES[e][0]
            self._use(("r", src, u) if isinstance(self.cell.edges[e][op], ReLUConvBN) else ("v", src, u))
        elif name[0] == "r":
            self._use(("v",) + name[1:])
        elif name[0] == "v" and name[1] > 0 and name[2] != "zero":
            for t in self.keys[name[1]][name[2]]:
                self._use(("p",) + t)

    def _get(self, name: tuple) -> torch.Tensor:
        if name not in self.memo:
            self.memo[name] = self._compute(name)
        value = self.memo[name]
        self._release(name)
        return value

    def _release(self, name: tuple) -> None:
        self.uses[name] -= 1
        if self.uses[name] == 0:
            del self.memo[name]

    def _compute(self, name: tuple) -> torch.Tensor:
        kind = name[0]
        if kind == "v":
            _, d, u = name
            if u == "zero":
                return torch.zeros_like(self.like)
            key = self.keys[d][u]
            total = self._get(("p",) + key[0])
            grad = torch.is_grad_enabled()
            for i, t in enumerate(key[1:]):  # in source order, as the single path adds them
                total = total + self._get(("p",) + t) if i == 0 or grad else total.add_(self._get(("p",) + t))
            return total
        if kind == "r":
            return F.relu(self._get(("v",) + name[1:]))
        _, e, op, u = name
        module = self.cell.edges[e][op]
        src = EDGES[e][0]
        if isinstance(module, ReLUConvBN):
            group = self.convs[src, u, module[1].kernel_size]
            blocks = [self.cell.edges[t[1]][t[2]] for t in group]
            rows = [_rows([self.pids[g] for g in self.users[t[1:]]], [0] * len(self.users[t[1:]]), 1) for t in group]
            out = _conv_norm([b[1] for b in blocks], [b[2] for b in blocks], self._get(("r", src, u)), 1, rows,
                             self.norm)
            if len(group) == 1:
                return out
            c = out.shape[1] // len(group)
            for j, t in enumerate(group):  # a channel slice is not dense, and every op on it would be slow
                self.memo[t] = _dense(out[:, j * c:(j + 1) * c])
                if t != name:
                    self._release(("r", src, u))  # each counted its own use of the ReLU
            return self.memo.pop(name)
        if op == _SKIP:
            return self._get(("v", src, u))
        if isinstance(module, nn.AvgPool2d):
            return _avg_pool(self._get(("v", src, u)))
        raise TypeError(f"no batched rule for {type(module).__name__}")

    def outputs(self) -> Iterator[tuple[torch.Tensor, list[int]]]:
        """The distinct cell outputs, each with the paths (indices into ``archs``) it belongs to."""
        members: dict = {}
        for g, u in enumerate(self.out_slot):
            members.setdefault(u, []).append(g)
        for u, gs in members.items():
            yield (torch.zeros_like(self.like) if u is None else self._get(("v", NUM_NODES - 1, u))), gs


def _dense(x: torch.Tensor) -> torch.Tensor:
    return x.contiguous(memory_format=torch.channels_last) if x.device.type == "cpu" else x.contiguous()


def _reduction(block: ResNetBasicblock, x: torch.Tensor, rows: Rows, norm: Norm) -> torch.Tensor:
    b, n = x.shape[:2]
    flat = x.reshape(b * n, *x.shape[2:])
    pool, conv = block.downsample
    out = _rcb(block.conv_b, _rcb(block.conv_a, flat, rows, n, norm), rows, n, norm) + _conv(conv, _pool2(pool, flat))
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
    split = dedupe and (x.device.type == "cpu" if split is None else split)
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
            j += 1
            if not split:
                h, slots = _cell(cell, h, slots, archs, pids, norm, dedupe)
            else:
                outputs = _UnitCell(cell, list(h.unbind(1)), slots, archs, pids, norm).outputs()
                value, members = next(outputs)
                if len(members) == len(pids):  # one distinct output: go on with it here
                    h, slots = value.unsqueeze(1), [0] * len(pids)
                    continue
                parts, order = [], []
                for value, members in itertools.chain([(value, members)], outputs):
                    parts.append(_forward_from(model, i + 1, j, value.unsqueeze(1), [0] * len(members),
                                               [pids[g] for g in members], paths, per_cell, norm, dedupe, split))
                    order.extend(members)
                    del value
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
