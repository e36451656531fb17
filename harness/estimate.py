"""Inherited-weight estimation: accuracy of each architecture's single path with supernet weights.

The BN policy of the supernet decides what happens before evaluation: with ``batch`` the cell
BNs use batch statistics (NB201's BN=0); with ``recalibrate`` every BN's running statistics are
reset and recomputed on training batches for each architecture (SPOS); with ``track`` the running
statistics the BNs tracked during training are used as they are, shared by every architecture
(NB201's BN=1).
"""
from __future__ import annotations

from concurrent.futures import ThreadPoolExecutor
from typing import Callable, Sequence

import torch
import torch.nn.functional as F
from torch import nn
from tqdm.auto import tqdm

from . import batched
from .space import Arch, CellPath
from .supernet import Supernet

Batch = tuple[torch.Tensor, torch.Tensor]


@torch.no_grad()
def recalibrate_bn(model: Supernet, arch: Arch, batches: Sequence[Batch]) -> None:
    """Recompute every BN's running statistics for ``arch`` as a cumulative average over ``batches``."""
    net = model.owner(arch)  # with few-shot sub-supernets, only the one that runs ``arch``
    bns = [m for m in net.modules() if isinstance(m, nn.modules.batchnorm._BatchNorm) and m.track_running_stats]
    saved = [bn.momentum for bn in bns]
    for bn in bns:
        bn.reset_running_stats()
        bn.momentum = None  # cumulative moving average: every batch counts equally
    net.train()
    for x, _ in batches:
        net(x, arch)
    for bn, momentum in zip(bns, saved):
        bn.momentum = momentum
    net.eval()


@torch.no_grad()
def evaluate_arch(model: Supernet, arch: Arch, batches: Sequence[Batch]) -> torch.Tensor:
    """``(correct, loss_sum, count)`` on the device for ``arch`` over ``batches`` (no host sync)."""
    model.eval()
    out = torch.zeros(3, device=batches[0][0].device)
    for x, y in batches:
        logits = model(x, arch)
        out[0] += (logits.argmax(1) == y).sum()
        out[1] += F.cross_entropy(logits, y, reduction="sum")
        out[2] += y.numel()
    return out


ENGINES = ("batched", "eager")


def _first_cell(arch) -> tuple:
    """The op tuple of the first search cell an architecture (or per-cell path) runs."""
    return tuple(arch[0]) if isinstance(arch, CellPath) else tuple(arch)


def default_arch_batch(device: torch.device) -> int:
    """Architectures per batched forward when ``[estimate] arch_batch = 0``. On CPU, 32: the chunk shares the
    stem and the first cell's common nodes, and the rest runs one distinct value at a time (measured on 2 cores,
    64 is slower again: reports/perf/README.md); a GPU is launch-bound, so 16 at once all the way."""
    return 16 if device.type == "cuda" else 32


def side_by_side(device: torch.device) -> int:
    """Chunks of architectures the batched engine scores at once, each in its own thread with an equal share of the
    intra-op threads: on CPU, one per intra-op thread (``torch.get_num_threads()``); elsewhere 1. At 8-32
    channels one convolution does not keep two cores busy (two one-thread runs side by side do 1.27x the work of
    two-thread runs one after another: reports/perf/README.md), while two chunks on one thread each share nothing
    but the read-only model."""
    return max(1, torch.get_num_threads()) if device.type == "cpu" else 1


def _stacks(model: Supernet, batches: Sequence[Batch], same_size: bool) -> list[list[Batch]]:
    """Consecutive batches grouped while a first-stage activation (``images x C x H x W`` floats) of the group stays
    within half of :data:`harness.batched.HEAP_ALLOCATION_LIMIT` (so glibc recycles it; the first cell's merged
    convolutions, up to 3C channels wide, can still exceed the limit and are then mapped afresh); with
    ``same_size`` only batches of one size go together."""
    x0 = batches[0][0]
    per_image = model.subnets()[0].C * x0.shape[-2] * x0.shape[-1] * x0.element_size()
    limit = max(1, batched.HEAP_ALLOCATION_LIMIT // 2 // per_image)
    groups: list[list[Batch]] = [[]]
    for x, y in batches:
        group = groups[-1]
        if group and (sum(len(b[0]) for b in group) + len(x) > limit or same_size and len(x) != len(group[0][0])):
            groups.append(group := [])
        group.append((x, y))
    return groups


def merge_batches(model: Supernet, batches: Sequence[Batch]) -> list[Batch]:
    """On CPU, consecutive evaluation batches concatenated (:func:`_stacks`) where every BN normalises each image
    on its own (running statistics or a calibrated table: ``bn_policy`` other than ``batch``): an image's logits
    then do not depend on which images share its forward, and larger forwards spread the per-op cost over more
    images (reports/perf/README.md). Otherwise ``batches`` as they are."""
    if model.bn_policy == "batch" or not batches or batches[0][0].device.type != "cpu":
        return list(batches)
    return [(torch.cat([x for x, _ in group]), torch.cat([y for _, y in group])) if len(group) > 1 else group[0]
            for group in _stacks(model, batches, same_size=False)]


def stack_calibration(model: Supernet, batches: Sequence[Batch]) -> list[tuple[torch.Tensor, int]]:
    """``(images, number of batches stacked in them)`` per calibration forward: on CPU, consecutive batches of one
    size in one forward, each still normalised with its own statistics (:class:`harness.batched.Norm`'s
    ``groups``); elsewhere, and where some BN keeps no running statistics (``bn_policy = "batch"``), one forward
    per batch."""
    if not batches or batches[0][0].device.type != "cpu" or model.bn_policy == "batch":
        return [(x, 1) for x, _ in batches]
    return [(torch.cat([x for x, _ in group]) if len(group) > 1 else group[0][0], len(group))
            for group in _stacks(model, batches, same_size=True)]


@torch.no_grad()
def evaluate_paths(model: Supernet, archs: Sequence[Arch], batches: Sequence[Batch],
                   calib_batches: Sequence[Batch] = ()) -> torch.Tensor:
    """``(K, 3)`` rows of ``(correct, loss_sum, count)`` on the device for ``K`` architectures of one supernet,
    scored in one architecture-batched forward per batch (:mod:`harness.batched`). Equal to :func:`evaluate_arch`
    of each (after :func:`recalibrate_bn` when ``calib_batches`` are given), to float rounding."""
    k = len(archs)
    table = None
    if calib_batches:
        norm = batched.Norm("calibrate", k)
        for x, groups in stack_calibration(model, calib_batches):
            norm.groups = groups
            batched.forward_paths(model, x, archs, norm)
        table = norm.table
    norm = batched.Norm("table" if table is not None else "eval", k, table)
    out = torch.zeros(k, 3, device=batches[0][0].device)
    for x, y in batches:
        logits = batched.forward_paths(model, x, archs, norm)  # (B, K, classes)
        yk = y[:, None].expand(-1, k)
        out[:, 0] += (logits.argmax(2) == yk).sum(0)
        out[:, 1] += F.cross_entropy(logits.permute(0, 2, 1), yk, reduction="none").sum(0)
        out[:, 2] += y.numel()
    return out


def estimate_archs(model: Supernet, archs: Sequence[Arch], eval_batches: Sequence[Batch],
                   calib_batches: Sequence[Batch] = (), flush_every: int = 64,
                   on_flush: Callable[[list[dict]], None] | None = None, progress: bool = True,
                   engine: str = "batched", arch_batch: int = 0) -> list[dict]:
    """Accuracy (%) and mean loss of each architecture; ``on_flush`` receives finished rows in chunks.

    ``engine``: ``batched`` scores ``arch_batch`` architectures per forward (0: :func:`default_arch_batch`) with
    :func:`evaluate_paths`, batching architectures in the order of their first-cell ops so that a batch shares as
    much of the first cell as it can (``on_flush`` chunks follow that order; the returned rows follow ``archs``),
    :func:`side_by_side` chunks at once on CPU; ``eager`` one at a time through ``Supernet.forward``, the reference
    it is tested against; a model that is not made of :class:`Supernet` s is always scored eagerly. Results stay on
    the device and are copied to the host once per ``flush_every`` architectures (at the next whole wave of chunks).
    """
    if engine not in ENGINES:
        raise ValueError(f"unknown estimation engine {engine!r}; valid: {', '.join(ENGINES)}")
    if not eval_batches:
        raise ValueError("no evaluation batches: the held-out split is empty")
    recal = model.bn_policy == "recalibrate"
    if recal and not calib_batches:
        raise ValueError("bn_policy 'recalibrate' needs calibration batches ([estimate] recalib_batches > 0)")
    rows: list[dict] = []
    pending: list[tuple[Arch, torch.Tensor]] = []

    def flush() -> None:
        if not pending:
            return
        stats = torch.stack([t for _, t in pending]).cpu().tolist()
        chunk = [{"arch": a.to_str(), "estimate": 100.0 * c / n, "loss": s / n}
                 for (a, _), (c, s, n) in zip(pending, stats)]
        rows.extend(chunk)
        pending.clear()
        if on_flush is not None:
            on_flush(chunk)

    bar = tqdm(total=len(archs), desc="estimate", unit="arch", disable=not progress, leave=False)
    if engine == "eager" or not batched.supports(model):  # other models: one at a time
        for arch in archs:
            if recal:
                recalibrate_bn(model, arch, calib_batches)
            pending.append((arch, evaluate_arch(model, arch, eval_batches)))
            bar.update(1)
            if len(pending) >= flush_every:
                flush()
    else:
        k = arch_batch if arch_batch > 0 else default_arch_batch(eval_batches[0][0].device)
        model.eval()
        eval_batches = merge_batches(model, eval_batches)
        if eval_batches[0][0].device.type == "cpu":
            batched.keep_freed_memory()
        # architectures that agree on the first cell's first edges share those nodes in a batched forward, so they
        # are batched together: in the order of their first-cell op tuples (rows come back in the given order)
        order = sorted(range(len(archs)), key=lambda i: _first_cell(archs[i]))
        chunks = [order[start:start + k] for start in range(0, len(order), k)]
        result: list = [None] * len(archs)
        threads = torch.get_num_threads()

        def score(chunk: list[int], share: int = 0) -> None:
            if share:  # a pool thread: its own intra-op thread count (the caller's stays as it is; torch's
                torch.set_num_threads(share)  # process-wide default, which new threads copy, is restored below)
            owners: dict[int, list[int]] = {}  # few-shot: each sub-supernet scores its own architectures
            for i in chunk:
                owners.setdefault(model.partition(archs[i]), []).append(i)
            for members in owners.values():
                net = model.owner(archs[members[0]])
                stats = evaluate_paths(net, [archs[i] for i in members], eval_batches, calib_batches if recal else ())
                for i, row in zip(members, stats):
                    result[i] = row

        # waves of side_by_side() chunks, each wave's chunks in parallel threads; a wave's thread shares depend only
        # on its size, and rows are flushed at wave ends only, so a resumed call (the rest, in the same order) forms
        # the same waves and its numbers are the same to the last bit
        # (a wave holds side_by_side() x arch_batch architectures, and their activations are alive at once)
        w = side_by_side(eval_batches[0][0].device)
        pooled = False
        try:
            with ThreadPoolExecutor(w) as pool:
                for start in range(0, len(chunks), w):
                    wave = chunks[start:start + w]
                    if len(wave) == 1:
                        score(wave[0])
                    else:
                        share, pooled = max(1, threads // len(wave)), True
                        list(pool.map(lambda c: score(c, share), wave))
                    for chunk in wave:
                        pending.extend((archs[i], result[i]) for i in chunk)
                        bar.update(len(chunk))
                    if len(pending) >= flush_every:
                        flush()
        finally:
            if pooled:  # torch.set_num_threads in a pool thread also set the process-wide default
                torch.set_num_threads(threads)
        flush()
        position = {}
        for at, i in enumerate(order):
            position[i] = at
        rows[:] = [rows[position[i]] for i in range(len(archs))]
    bar.close()
    flush()
    return rows
