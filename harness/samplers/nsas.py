"""The NSAS family (Zhang, Ding, Pan, Li, Su et al., "One-Shot Neural Architecture Search: Maximising
Diversity to Overcome Catastrophic Forgetting", IEEE TPAMI 2021; first as "Overcoming Multi-Model
Forgetting in One-Shot NAS with Diversity Maximization", CVPR 2020).

Supernet training as constrained continual learning: training the current architecture should not
raise the loss of architectures trained before. The constraint is imposed by adding the loss of a small
set of previously trained architectures (the constraint subset), chosen to be maximally diverse by a
greedy novelty search (:class:`~harness.samplers.diversity.DiverseArchive`). The current architecture
is drawn uniformly, as in single-path training. Rules (defaults are the config defaults):

* ``nsas``: archive of ``archive_size`` (M = 10) trained architectures; after each step the current one
  is offered to it (:meth:`DiverseArchive.offer`: added while there is room, later it replaces the member
  whose replacement most increases the archive's total k-NN novelty, if any does). Loss =
  (1 - lam) * L(current) + lam * mean over the archive of L(member); lam = 0.5. With an empty archive
  (the first step) the loss is L(current).
* ``nsas-c``: as ``nsas``, but constraint candidates have the current architecture's depth
  (:func:`harness.space.depth`, 0..3): one archive of M per depth; a step is constrained by, and offers
  its architecture to, the archive of its depth.
* ``nsas-g``: loss = w_current * L(current) + w_random * L(random) + w_diverse * L(diverse), weights
  0.2/0.4/0.4; ``random`` is a second uniform draw and ``diverse`` takes on every edge an op drawn
  uniformly from those that neither ``current`` nor ``random`` uses there.
* ``nsas-lg``: as ``nsas-g``, but ``diverse`` is drawn from an archive of M trained architectures kept
  diverse as in ``nsas``: the member farthest (summed Hamming distance) from ``current`` and ``random``.
  Until the archive holds anything, the greedy construction of ``nsas-g`` is used.
"""
from __future__ import annotations

import random
from typing import Sequence

from ..space import Arch, depth
from .base import SAMPLERS, Sampler, check_allowed, draw, in_space
from .diversity import DiverseArchive


def avoiding(others: Sequence[Arch], allowed: Sequence[Sequence[int]], rng: random.Random) -> Arch:
    """On each edge, an op drawn uniformly from the allowed ops none of ``others`` uses there.

    Where every allowed op is taken (a shrunk edge), any allowed op is drawn.
    """
    ops = []
    for e, choices in enumerate(allowed):
        free = [o for o in choices if all(a[e] != o for a in others)]
        ops.append(rng.choice(free or list(choices)))
    return Arch(ops)


def _check_weight(name: str, value: float, upper: float = float("inf")) -> float:
    if not 0.0 <= value <= upper:
        raise ValueError(f"{name} must be in [0, {upper}], got {value}")
    return float(value)


@SAMPLERS.register("nsas")
class NSASSampler(Sampler):
    name = "nsas"

    def __init__(self, archive_size: int = 10, k: int = 10, lam: float = 0.5,
                 allowed: Sequence[Sequence[int]] | None = None):
        self.lam = _check_weight("lam", lam, 1.0)
        if self.lam == 1.0:
            raise ValueError("lam must be < 1: with lam = 1 the current architecture would not be trained")
        if archive_size < 1:
            raise ValueError(f"archive_size must be >= 1, got {archive_size}")
        self.archive_size, self.k = archive_size, k
        self.allowed = check_allowed(allowed)
        self.paths_per_step = 1 + archive_size
        self.archives_: dict[int, DiverseArchive] = {}

    def archive(self, arch: Arch) -> DiverseArchive:
        key = self.archive_key(arch)
        if key not in self.archives_:
            self.archives_[key] = DiverseArchive(self.archive_size, self.k)
        return self.archives_[key]

    def archive_key(self, arch: Arch) -> int:
        return 0  # one archive for every architecture

    def _restricted(self) -> None:
        for archive in self.archives_.values():
            archive.keep(lambda a: in_space(a, self.allowed))

    def plan(self, step: int, rng: random.Random) -> list[tuple[Arch, float]]:
        current = draw(self.allowed, rng)
        members = self.archive(current).members
        if not members or self.lam == 0:
            return [(current, 1.0)]
        return [(current, 1.0 - self.lam)] + [(m, self.lam / len(members)) for m in members]

    def observe(self, step: int, archs: Sequence[Arch], losses) -> None:
        if archs:
            self.archive(archs[0]).offer(archs[0])

    def state_dict(self) -> dict:
        return {"archives": {str(k): a.state_dict() for k, a in self.archives_.items()}}

    def load_state_dict(self, state: dict) -> None:
        self.archives_ = {}
        for key, sub in state["archives"].items():
            self.archives_[int(key)] = DiverseArchive(self.archive_size, self.k)
            self.archives_[int(key)].load_state_dict(sub)


@SAMPLERS.register("nsas-c")
class NSASDepthSampler(NSASSampler):
    name = "nsas-c"

    def archive_key(self, arch: Arch) -> int:
        return depth(arch)


@SAMPLERS.register("nsas-g")
class NSASGreedySampler(Sampler):
    name = "nsas-g"
    paths_per_step = 3

    def __init__(self, w_current: float = 0.2, w_random: float = 0.4, w_diverse: float = 0.4,
                 allowed: Sequence[Sequence[int]] | None = None):
        self.weights = tuple(_check_weight(n, w, 1.0) for n, w in
                             (("w_current", w_current), ("w_random", w_random), ("w_diverse", w_diverse)))
        if sum(self.weights) <= 0:
            raise ValueError("nsas-g weights must not all be 0")
        self.allowed = check_allowed(allowed)

    def diverse(self, current: Arch, rand: Arch, rng: random.Random) -> Arch:
        return avoiding((current, rand), self.allowed, rng)

    def plan(self, step: int, rng: random.Random) -> list[tuple[Arch, float]]:
        current = draw(self.allowed, rng)
        rand = draw(self.allowed, rng)
        archs = (current, rand, self.diverse(current, rand, rng))
        return [(a, w) for a, w in zip(archs, self.weights) if w > 0]


@SAMPLERS.register("nsas-lg")
class NSASLimitedGreedySampler(NSASGreedySampler):
    name = "nsas-lg"

    def __init__(self, w_current: float = 0.2, w_random: float = 0.4, w_diverse: float = 0.4,
                 archive_size: int = 10, k: int = 10, allowed: Sequence[Sequence[int]] | None = None):
        super().__init__(w_current, w_random, w_diverse, allowed)
        self.archive_ = DiverseArchive(archive_size, k)

    def diverse(self, current: Arch, rand: Arch, rng: random.Random) -> Arch:
        if not len(self.archive_):
            return super().diverse(current, rand, rng)
        return self.archive_.most_distant((current, rand), rng)

    def _restricted(self) -> None:
        self.archive_.keep(lambda a: in_space(a, self.allowed))

    def observe(self, step: int, archs: Sequence[Arch], losses) -> None:
        if archs:
            self.archive_.offer(archs[0])

    def state_dict(self) -> dict:
        return {"archive": self.archive_.state_dict()}

    def load_state_dict(self, state: dict) -> None:
        self.archive_.load_state_dict(state["archive"])
