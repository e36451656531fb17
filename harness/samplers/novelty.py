"""Novelty-search architecture sampling (Zhang, Li, Pan, Liu & Su, "Efficient Novelty-Driven Neural
Architecture Search", arXiv:1907.09109, 2019): the supernet is trained on the architecture that is
most *novel* with respect to what it has already trained, instead of one a reward controller prefers.

Rule, per step:

1. Candidates: ``candidates`` architectures, of which ``round(candidates * mutation_fraction)`` are
   mutations of architectures drawn uniformly from the ``recent`` most recently trained ones (a mutation
   moves one uniformly chosen edge to a different allowed op) and the rest are drawn uniformly. Before
   anything has been trained all candidates are uniform draws.
2. Novelty of a candidate: the mean Hamming distance (edges with a different op, 0..6) to its ``k``
   nearest neighbours in the archive (k = 10; fewer while the archive is smaller).
3. Train the candidate with the highest novelty (ties: the first in candidate order, which is random).
4. The trained architecture joins the archive. The archive keeps every trained architecture
   (``archive_size = 0``) or the ``archive_size`` most recent ones.
"""
from __future__ import annotations

import random
from collections import deque
from typing import Sequence

import numpy as np

from ..space import NUM_ARCHS, Arch, all_archs
from .base import SAMPLERS, Sampler, check_allowed, draw, in_space
from .diversity import knn_novelty


def mutate(arch: Arch, allowed: Sequence[Sequence[int]], rng: random.Random) -> Arch:
    """``arch`` with one edge (uniform over edges that have an alternative) moved to another allowed op."""
    edges = [e for e, ops in enumerate(allowed) if len(ops) > 1]
    if not edges:
        return arch
    e = rng.choice(edges)
    ops = list(arch)
    ops[e] = rng.choice([o for o in allowed[e] if o != arch[e]])
    return Arch(ops)


_ALL = None


def _all_ops() -> np.ndarray:
    """``(15625, 6)`` op indices of every architecture, row = :attr:`Arch.index`."""
    global _ALL
    if _ALL is None:
        _ALL = np.asarray(all_archs(), dtype=np.int8)
    return _ALL


@SAMPLERS.register("novelty")
class NoveltySampler(Sampler):
    name = "novelty"

    def __init__(self, k: int = 10, candidates: int = 16, mutation_fraction: float = 0.5, recent: int = 10,
                 archive_size: int = 0, allowed: Sequence[Sequence[int]] | None = None):
        if k < 1 or candidates < 1 or recent < 1 or archive_size < 0:
            raise ValueError("novelty: k, candidates and recent must be >= 1 and archive_size >= 0")
        if not 0.0 <= mutation_fraction <= 1.0:
            raise ValueError(f"novelty: mutation_fraction must be in [0, 1], got {mutation_fraction}")
        self.k, self.candidates, self.mutation_fraction = k, candidates, mutation_fraction
        self.recent, self.archive_size = recent, archive_size
        self.allowed = check_allowed(allowed)
        self.history_: deque[Arch] = deque(maxlen=archive_size or None)  # trained, oldest first
        self.counts_ = np.zeros(NUM_ARCHS, dtype=np.int64)  # the archive as a multiset, by Arch.index

    def novelty(self, archs: Sequence[Arch]) -> np.ndarray:
        members = np.flatnonzero(self.counts_)
        return knn_novelty(archs, _all_ops()[members], self.k, self.counts_[members])

    def propose(self, rng: random.Random) -> list[Arch]:
        # parents must lie in the (possibly shrunk) space: a mutation changes one edge only
        recent = [a for a in list(self.history_)[-self.recent:] if in_space(a, self.allowed)]
        n_mut = round(self.candidates * self.mutation_fraction) if recent else 0
        out = [mutate(rng.choice(recent), self.allowed, rng) for _ in range(n_mut)]
        return out + [draw(self.allowed, rng) for _ in range(self.candidates - n_mut)]

    def plan(self, step: int, rng: random.Random) -> list[tuple[Arch, float]]:
        cands = self.propose(rng)
        return [(cands[int(np.argmax(self.novelty(cands)))], 1.0)]

    def observe(self, step: int, archs: Sequence[Arch], losses) -> None:
        for arch in archs:
            if self.archive_size and len(self.history_) == self.archive_size:
                self.counts_[self.history_[0].index] -= 1
            self.history_.append(arch)
            self.counts_[arch.index] += 1

    def state_dict(self) -> dict:
        return {"history": [list(a) for a in self.history_]}

    def load_state_dict(self, state: dict) -> None:
        self.history_.clear()
        self.counts_[:] = 0
        self.observe(0, [Arch(a) for a in state["history"]], [])
