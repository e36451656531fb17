"""Architecture diversity for the novelty-driven strategies: Hamming distances, k-NN novelty, diverse archives.

Distances are Hamming distances over the 6 edges (how many edges use a different op), as in novelty
search over a discrete encoding. The novelty of an architecture with respect to a set is the mean of
its k smallest distances to the set's members (Lehman & Stanley's sparseness).
"""
from __future__ import annotations

import random
from typing import Callable, Iterable, Sequence

import numpy as np

from ..space import NUM_EDGES, Arch


def distances(archs: np.ndarray, members: np.ndarray) -> np.ndarray:
    """``(n, 6), (m, 6) -> (n, m)`` Hamming distances."""
    return (archs[:, None, :] != members[None, :, :]).sum(-1)


def knn_novelty(archs: Sequence[Arch], members: np.ndarray, k: int, counts: np.ndarray | None = None) -> np.ndarray:
    """Mean distance of each of ``archs`` to its ``k`` nearest ``members`` (``k`` capped at their number).

    ``counts[j]`` is how many times member ``j`` is in the set (a multiset stored once per distinct
    architecture); default 1 each. With no members every novelty is the maximum, 6.
    """
    counts = np.ones(len(members), dtype=np.int64) if counts is None else np.asarray(counts, dtype=np.int64)
    total = int(counts.sum())
    if total == 0:
        return np.full(len(archs), float(NUM_EDGES))
    k = min(k, total)
    dist = distances(np.asarray(archs, dtype=np.int8).reshape(-1, NUM_EDGES), members)
    out = np.empty(len(archs))
    for i, row in enumerate(dist):
        # members at each distance 0..6, then the k nearest are taken from distance 0 upwards
        per_d = np.bincount(row, weights=counts, minlength=NUM_EDGES + 1)
        taken = np.minimum(per_d, np.maximum(k - np.concatenate(([0], np.cumsum(per_d)[:-1])), 0))
        out[i] = float((taken * np.arange(NUM_EDGES + 1)).sum()) / k
    return out


def total_novelty(members: Sequence[Arch], k: int) -> float:
    """Diversity of a set: the sum over members of their k-NN novelty among the *other* members."""
    if len(members) < 2:
        return 0.0
    arr = np.asarray(members, dtype=np.int8)
    dist = distances(arr, arr).astype(float)
    np.fill_diagonal(dist, np.inf)
    k = min(k, len(members) - 1)
    return float(np.sort(dist, axis=1)[:, :k].mean(1).sum())


class DiverseArchive:
    """At most ``size`` distinct architectures, kept maximally diverse by greedy replacement.

    :meth:`offer`: an architecture already held is ignored; while there is room it is added; once full
    it replaces the member whose replacement gives the largest total novelty (:func:`total_novelty`),
    and only if that total is larger than the archive's current one -- so the archive's diversity
    never decreases once it is full. Ties between replacements go to the earliest member.
    """

    def __init__(self, size: int, k: int):
        if size < 1:
            raise ValueError(f"archive size must be >= 1, got {size}")
        if k < 1:
            raise ValueError(f"k must be >= 1, got {k}")
        self.size, self.k = size, k
        self.members: list[Arch] = []

    def __len__(self) -> int:
        return len(self.members)

    def diversity(self) -> float:
        return total_novelty(self.members, self.k)

    def offer(self, arch: Arch) -> bool:
        """Consider ``arch`` for the archive; returns whether the archive changed."""
        if arch in self.members:
            return False
        if len(self.members) < self.size:
            self.members.append(arch)
            return True
        best, best_i = self.diversity(), None
        for i in range(len(self.members)):
            trial = self.members[:i] + [arch] + self.members[i + 1:]
            score = total_novelty(trial, self.k)
            if score > best + 1e-12:
                best, best_i = score, i
        if best_i is None:
            return False
        self.members[best_i] = arch
        return True

    def keep(self, predicate: Callable[[Arch], bool]) -> None:
        """Drop the members for which ``predicate(arch)`` is false (e.g. those a shrinker removed)."""
        self.members = [a for a in self.members if predicate(a)]

    def most_distant(self, refs: Iterable[Arch], rng: random.Random) -> Arch:
        """The member with the largest summed distance to ``refs`` (ties broken by ``rng``)."""
        if not self.members:
            raise ValueError("the archive is empty")
        refs = np.asarray(list(refs), dtype=np.int8).reshape(-1, NUM_EDGES)
        score = distances(np.asarray(self.members, dtype=np.int8), refs).sum(1)
        tied = np.flatnonzero(score == score.max())
        return self.members[int(tied[rng.randrange(len(tied))])]

    def state_dict(self) -> dict:
        return {"members": [list(a) for a in self.members]}

    def load_state_dict(self, state: dict) -> None:
        self.members = [Arch(a) for a in state["members"]]
