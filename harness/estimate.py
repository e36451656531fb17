"""Inherited-weight estimation: accuracy of each architecture's single path with supernet weights.

The BN policy of the supernet decides what happens before evaluation: with ``batch`` the cell
BNs use batch statistics (NB201's BN=0); with ``recalibrate`` every BN's running statistics are
reset and recomputed on training batches for each architecture (SPOS); with ``track`` the running
statistics the BNs tracked during training are used as they are, shared by every architecture
(NB201's BN=1).
"""
from __future__ import annotations

from typing import Callable, Sequence

import torch
import torch.nn.functional as F
from torch import nn
from tqdm.auto import tqdm

from .space import Arch
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


def estimate_archs(model: Supernet, archs: Sequence[Arch], eval_batches: Sequence[Batch],
                   calib_batches: Sequence[Batch] = (), flush_every: int = 64,
                   on_flush: Callable[[list[dict]], None] | None = None, progress: bool = True) -> list[dict]:
    """Accuracy (%) and mean loss of each architecture; ``on_flush`` receives finished rows in chunks.

    Results stay on the device and are copied to the host once per ``flush_every`` architectures.
    """
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

    for arch in tqdm(archs, desc="estimate", unit="arch", disable=not progress, leave=False):
        if recal:
            recalibrate_bn(model, arch, calib_batches)
        pending.append((arch, evaluate_arch(model, arch, eval_batches)))
        if len(pending) >= flush_every:
            flush()
    flush()
    return rows
