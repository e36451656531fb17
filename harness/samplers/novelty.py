"""Novelty-search architecture sampling (Zhang, Li, Pan, Liu & Su, "Efficient Novelty-Driven Neural
Architecture Search", arXiv:1907.09109, 2019): the supernet is trained on the architecture that is
most *novel* with respect to what it has already trained, instead of one a reward controller prefers.

``rule = "es"`` (default) follows the official code, ENNAS_MASTER ``CNN/ENNAS.py`` (``sample_arch`` and
``get_arch``; docs/methods.md cites the lines): a store of ``store`` (1,000) architectures is filled with uniform
draws, one per step; afterwards each step takes a random store member, perturbs its op vector with ``n`` Gaussian
draws, scores each perturbation's novelty against the store (mean of the k = 10 smallest Hamming distances / 6),
moves the member by ``es_lr / (n * sigma) * sum(novelty_i * perturbation_i)``, rounds and clips it to op indices,
trains it and writes it back into the store. With the official ``es_lr = 0.01`` the move is about 1e-3, so the
rounded architecture is the member itself: after the store fills, the official method trains uniformly drawn
members of its first 1,000 random architectures.

``rule = "candidates"`` is this harness's own rule, per step:

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

from ..space import NUM_ARCHS, NUM_OPS, Arch, all_archs
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


def nearest_allowed(op: int, allowed: Sequence[int]) -> int:
    """``op`` if allowed, else the allowed op index nearest to it (the lower on ties): the ES gene on a shrunk edge."""
    return op if op in allowed else min(allowed, key=lambda o: (abs(o - op), o))


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

    def __init__(self, rule: str = "es", k: int = 10, store: int = 1000, es_lr: float = 0.01, n: int = 10,
                 sigma: float = 1.0, candidates: int = 16, mutation_fraction: float = 0.5, recent: int = 10,
                 archive_size: int = 0, allowed: Sequence[Sequence[int]] | None = None):
        if rule not in ("es", "candidates"):
            raise ValueError(f"novelty: rule must be 'es' (ENNAS's official update) or 'candidates', got {rule!r}")
        if k < 1 or candidates < 1 or recent < 1 or archive_size < 0 or store < 1 or n < 1:
            raise ValueError("novelty: k, store, n, candidates and recent must be >= 1 and archive_size >= 0")
        if not 0.0 <= mutation_fraction <= 1.0:
            raise ValueError(f"novelty: mutation_fraction must be in [0, 1], got {mutation_fraction}")
        if not sigma > 0 or not es_lr >= 0:
            raise ValueError(f"novelty: need sigma > 0 and es_lr >= 0, got sigma={sigma}, es_lr={es_lr}")
        self.rule, self.store, self.es_lr, self.n, self.sigma = rule, store, float(es_lr), n, float(sigma)
        self.store_: list[Arch] = []  # rule "es": the store, in slot order
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
        if self.rule == "es":
            return [(self.es_step(rng), 1.0)]
        cands = self.propose(rng)
        return [(cands[int(np.argmax(self.novelty(cands)))], 1.0)]

    def es_novelty(self, genes: np.ndarray, store: np.ndarray) -> np.ndarray:
        """ENNAS's novelty of each rounded (unclipped) gene: the mean of its k smallest Hamming distances to the
        store's members, over the 6 edges (the official distance is the mismatched fraction of nodes)."""
        return knn_novelty(np.rint(genes).astype(np.int64), store, self.k) / len(genes[0])

    def es_step(self, rng: random.Random) -> Arch:
        if len(self.store_) < self.store:  # filling: a uniform draw takes the next slot
            arch = draw(self.allowed, rng)
            self.store_.append(arch)
            return arch
        index = rng.randrange(self.store)
        member = np.asarray(self.store_[index], dtype=float)
        noise = np.array([[rng.gauss(0.0, 1.0) for _ in member] for _ in range(self.n)])
        store = np.asarray(self.store_, dtype=np.int8)
        fitness = self.es_novelty(member + noise, store)
        moved = member + self.es_lr / (self.n * self.sigma) * (fitness[:, None] * noise).sum(0)
        arch = Arch(nearest_allowed(int(v), ops) for v, ops in zip(np.clip(np.rint(moved), 0, NUM_OPS - 1), self.allowed))
        self.store_[index] = arch  # official get_arch writes the trained (rounded) architecture back
        return arch

    def observe(self, step: int, archs: Sequence[Arch], losses) -> None:
        if self.rule != "candidates":  # the ES rule's memory is its store, updated in plan
            return
        for arch in archs:
            if self.archive_size and len(self.history_) == self.archive_size:
                self.counts_[self.history_[0].index] -= 1
            self.history_.append(arch)
            self.counts_[arch.index] += 1

    def _restricted(self) -> None:
        self.store_ = [Arch(nearest_allowed(o, ops) for o, ops in zip(a, self.allowed)) for a in self.store_]

    def state_dict(self) -> dict:
        return {"history": [list(a) for a in self.history_], "store": [list(a) for a in self.store_]}

    def load_state_dict(self, state: dict) -> None:
        self.store_ = [Arch(a) for a in state.get("store", [])]
        self.history_.clear()
        self.counts_[:] = 0
        self.observe(0, [Arch(a) for a in state["history"]], [])
