"""The estimator protocol: architectures in, scores out (higher = predicted better), with their cost.

Every estimator is a plugin registered in :data:`ESTIMATORS` under the name a run selects with
``[estimator] name``; its constructor's keyword arguments are the ``[estimator]`` options (checked by
:mod:`harness.config` against the constructor, like a sampler's). The runner (``harness/runner.py``) owns the
rest: which architectures, the ground truth, resumable scoring with progress, the run directory and the
metrics, exactly as for the supernet, so adding an estimator is one file here.

``supernet`` (inherited-weight accuracy after training a weight-sharing supernet) is registered too: the runner
runs it through its training and estimation path, since it alone trains.
"""
from __future__ import annotations

import hashlib
from dataclasses import dataclass, field
from typing import Any, Sequence

import torch

from ..registry import Registry
from ..space import Arch


@dataclass
class Context:
    """What an estimator may use: the run's network sizes, device and seed, the ground-truth table and query
    (``gt``, ``query``), and training images (``images``: the first ``[estimator] batch_size``-sized batches of
    the run's training split, un-augmented, in stored order; only for estimators with ``needs_data``)."""

    C: int
    N: int
    num_classes: int
    resolution: int
    device: torch.device
    seed: int
    gt: Any = None
    query: Any = None
    images: list = field(default_factory=list)  # [(x, y)] on ``device``


class Estimator:
    """Base class. ``score(archs, ctx)`` returns one float per architecture (NaN where it is undefined, e.g. a
    proxy of a network whose output ignores its input); it must not depend on which other architectures are
    scored in the same call, so that an interrupted run resumes to the same scores."""

    name = ""
    needs_data = False  # scores depend on training images (ctx.images)
    trains = False  # the supernet: the runner trains it instead of calling score
    batches = 1  # training batches ctx.images holds (of the estimator's batch_size)

    def options(self) -> dict:
        """What the scores depend on besides the architecture: recorded in metrics.json."""
        return {}

    def score(self, archs: Sequence[Arch], ctx: Context) -> list[float]:
        raise NotImplementedError


ESTIMATORS: Registry[type[Estimator]] = Registry("estimator")


def arch_seed(seed: int, arch: Arch) -> int:
    """A seed for one architecture's initialisation: a function of the run seed and the architecture only."""
    digest = hashlib.sha256(f"{seed}:{arch.to_str()}".encode()).digest()
    return int.from_bytes(digest[:4], "little") & 0x7FFFFFFF
