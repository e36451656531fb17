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


class GreedyNoveltyArchive:
    """NSAS's constraint archive as the official code keeps it (NSAS_FOR_CVPR, ``CNN/RandomNAS_NSAS_demo.py``,
    ``arch_archive_update`` and the helpers above it; docs/methods.md cites the lines).

    Updated once per step, *before* the step's loss, from the step's current architecture and the ``recent``
    architectures sampled last (the current one included):

    * **not full** (:meth:`fill`): add the candidate with the largest k-NN novelty against the archive among
      ``candidates`` fresh random architectures; only a novelty above 0 counts, the first such maximum wins, and
      with an empty archive (or no candidate above 0) a separately drawn ``fallback`` architecture is added;
    * **full** (:meth:`replace`): the member most similar to the current architecture (smallest distance, the
      earliest on ties) is compared, by its novelty against the *other* members, with each recent architecture
      in order; a recent one replaces it only if strictly more novel, and the most novel one wins.

    Members may repeat (the official archive is a list): novelty counts every copy.
    """

    def __init__(self, size: int, k: int, candidates: int = 10, recent: int = 50):
        for name, value in (("archive_size", size), ("k", k), ("candidates", candidates), ("recent", recent)):
            if value < 1:
                raise ValueError(f"{name} must be >= 1, got {value}")
        self.size, self.k, self.candidates, self.recent_size = size, k, candidates, recent
        self.members: list[Arch] = []
        self.recent: list[Arch] = []

    def __len__(self) -> int:
        return len(self.members)

    def novelty(self, archs: Sequence[Arch], members: Sequence[Arch]) -> np.ndarray:
        """Mean of the k smallest Hamming distances from each of ``archs`` to ``members`` (every copy counts)."""
        return knn_novelty(archs, np.asarray(members, dtype=np.int8).reshape(-1, NUM_EDGES), self.k)

    @staticmethod
    def _first_better(options: Sequence[Arch], scores: np.ndarray, best: float, default: Arch) -> Arch:
        """The official scan: the first option whose score beats ``best`` and every earlier option's."""
        i = int(np.argmax(scores)) if len(options) else -1
        return options[i] if i >= 0 and scores[i] > best else default

    def fill(self, candidates: Sequence[Arch], fallback: Arch) -> Arch:
        chosen = fallback
        if self.members:
            chosen = self._first_better(candidates, self.novelty(candidates, self.members), 0.0, fallback)
        self.members.append(chosen)
        return chosen

    def replace(self, current: Arch) -> int:
        """Returns the index of the member compared (replaced or not)."""
        dist = distances(np.asarray([current], dtype=np.int8), np.asarray(self.members, dtype=np.int8))[0]
        index = int(np.argmin(dist))  # the earliest of the most similar
        rest = self.members[:index] + self.members[index + 1:]
        member = self.members[index]
        best = float(self.novelty([member], rest)[0])
        self.members[index] = self._first_better(self.recent, self.novelty(self.recent, rest), best, member)
        return index

    def update(self, current: Arch, draw: Callable[[], Arch]) -> None:
        """One step: ``current`` joins the recent list, then the archive is filled or a member replaced.
        ``draw()`` gives a fresh random architecture (the fallback first, then the candidates, as officially)."""
        self.recent = (self.recent + [current])[-self.recent_size:]
        if len(self.members) < self.size:
            fallback = draw()
            self.fill([draw() for _ in range(self.candidates)], fallback)
        else:
            self.replace(current)

    def keep(self, predicate: Callable[[Arch], bool]) -> None:
        self.members = [a for a in self.members if predicate(a)]
        self.recent = [a for a in self.recent if predicate(a)]

    def state_dict(self) -> dict:
        return {"members": [list(a) for a in self.members], "recent": [list(a) for a in self.recent]}

    def load_state_dict(self, state: dict) -> None:
        self.members = [Arch(a) for a in state["members"]]
        self.recent = [Arch(a) for a in state.get("recent", [])]
