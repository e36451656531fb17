"""The NSAS family (Zhang, Ding, Pan, Li, Su et al., "One-Shot Neural Architecture Search: Maximising
Diversity to Overcome Catastrophic Forgetting", IEEE TPAMI 2021; first as "Overcoming Multi-Model
Forgetting in One-Shot NAS with Diversity Maximization", CVPR 2020), following the official code
(NSAS_FOR_CVPR); docs/methods.md cites the files and lines and lists where we differ.

Supernet training as constrained continual learning: the loss of the current architecture is combined with
the loss of a small, diverse constraint subset. Rules (defaults are the official values):

* ``nsas`` (``CNN/RandomNAS_NSAS_demo.py``): current architecture uniform; loss =
  (1 - lam) * L(current) + lam * mean over the archive of L(member). With ``archive_rule = "official"`` the
  archive is :class:`~harness.samplers.diversity.GreedyNoveltyArchive`, updated before the loss (M = 8, k = 10,
  10 random candidates while filling, the last 50 sampled architectures when replacing).
  ``archive_rule = "offered"`` is this harness's earlier rule (:class:`DiverseArchive`: only the current
  architecture is offered, after the step). ``constraint_grad = false`` reproduces the official code's
  ``loss.item()`` on the constraint: members are evaluated but give no gradient.
* ``nsas-c`` (``CNN/RandomNAS_NSAS_C_demo.py``): as ``nsas``, with every architecture (current and archive
  candidates) drawn from the chain topology: each node takes only its ``chain`` most recent predecessors, the
  other edges are ``none`` (:func:`chain_draw`).
* ``nsas`` with ``archive_rule = "offered"``, ``archive_per_depth = true`` (and ``archive_size = 10``) is this
  harness's earlier ``nsas-c``: uniform sampling, one archive per depth (:func:`harness.space.depth`).
* ``nsas-g`` (the NB201 notebooks ``exps/algos/random_NAS_NSAS*.ipynb``): loss = w_current * L(current) +
  w_random * L(random) + w_diverse * L(diverse), 0.2/0.4/0.4; ``diverse`` picks the notebook
  (:data:`DIVERSE_RULES`); ``cell_bug = true`` reproduces the cell the official ``arch_diver`` /
  ``arch_compensate`` actually build (:func:`as_built`).
* ``nsas-lg``: as ``nsas-g``, with ``diverse`` drawn from a diverse archive. No official code for it was found
  (NSAS_FOR_CVPR holds only result folders), so the rule is ours, from the paper's description.
"""
from __future__ import annotations

import random
from typing import Sequence

from ..space import EDGES, NUM_NODES, OPS, Arch, depth
from .base import SAMPLERS, Sampler, check_allowed, draw, in_space
from .diversity import DiverseArchive, GreedyNoveltyArchive

NONE = OPS.index("none")
ARCHIVE_RULES = ("official", "offered")
DIVERSE_RULES = {
    "compensate": "random_NAS_NSAS_G.ipynb: where random and current agree, an op other than random's; "
                  "elsewhere current's op (arch_compensate)",
    "avoid-random": "random_NAS_NSAS.ipynb: on every edge an op other than random's (arch_diver)",
    "random": "random_NAS_NSAS_R.ipynb: a third uniform architecture",
    "avoid-both": "ours (before): on every edge an op that neither current nor random uses",
}


def avoiding(others: Sequence[Arch], allowed: Sequence[Sequence[int]], rng: random.Random) -> Arch:
    """On each edge, an op drawn uniformly from the allowed ops none of ``others`` uses there.

    Where every allowed op is taken (a shrunk edge), any allowed op is drawn.
    """
    ops = []
    for e, choices in enumerate(allowed):
        free = [o for o in choices if all(a[e] != o for a in others)]
        ops.append(rng.choice(free or list(choices)))
    return Arch(ops)


def compensate(rand: Arch, current: Arch, allowed: Sequence[Sequence[int]], rng: random.Random) -> Arch:
    """The official ``arch_compensate(random, current)``: where the two agree, an op other than theirs (uniform
    over the allowed ones; any allowed op if none is left); elsewhere current's op."""
    ops = []
    for r, cur, choices in zip(rand, current, allowed):
        if r != cur:
            ops.append(cur)
        else:
            free = [o for o in choices if o != r]
            ops.append(rng.choice(free or list(choices)))
    return Arch(ops)


def as_built(arch: Arch) -> Arch:
    """The cell NSAS_FOR_CVPR's ``arch_diver``/``arch_compensate`` actually hand to the network.

    Both append the node's input list inside the loop over its inputs (``search_model_random.py:90`` and
    ``:110``), so the Structure holds the partial lists ``[(a,), (b,), (b, c), (d,), (d, e), (d, e, f)]`` and
    ``forward_dynamic`` (``search_cells.py:113``) reads only the first three: node 1 takes edge 1<-0 with a,
    node 2 only 2<-0 with b, node 3 takes 3<-0 with b and 3<-1 with c. In our edge order
    (1<-0, 2<-0, 2<-1, 3<-0, 3<-1, 3<-2): ``[a, b, none, b, c, none]``."""
    a, b, c = arch[0], arch[1], arch[2]
    return Arch([a, b, NONE, b, c, NONE])


def chain_edges(chain: int) -> list[int]:
    """The edges NSAS-C keeps: node i takes only its ``chain`` most recent predecessors (nodes i-chain..i-1)."""
    return [e for e, (src, dst) in enumerate(EDGES) if dst - src <= chain]


def chain_draw(allowed: Sequence[Sequence[int]], rng: random.Random, chain: int) -> Arch:
    """A uniform architecture of the chain topology: kept edges uniform over their allowed ops, the others
    ``none`` (a uniform allowed op where a shrinker removed ``none`` there)."""
    kept = set(chain_edges(chain))
    return Arch(rng.choice(ops) if e in kept or NONE not in ops else NONE for e, ops in enumerate(allowed))


def _check_weight(name: str, value: float, upper: float = float("inf")) -> float:
    if not 0.0 <= value <= upper:
        raise ValueError(f"{name} must be in [0, {upper}], got {value}")
    return float(value)


def _check_choice(name: str, value, choices) -> str:
    if value not in choices:
        raise ValueError(f"{name} must be one of {', '.join(map(repr, choices))}, got {value!r}")
    return value


@SAMPLERS.register("nsas")
class NSASSampler(Sampler):
    name = "nsas"

    def __init__(self, archive_size: int = 8, k: int = 10, lam: float = 0.5, archive_rule: str = "official",
                 candidates: int = 10, recent: int = 50, constraint_grad: bool = True,
                 archive_per_depth: bool = False, allowed: Sequence[Sequence[int]] | None = None):
        self.lam = _check_weight("lam", lam, 1.0)
        if self.lam == 1.0:
            raise ValueError("lam must be < 1: with lam = 1 the current architecture would not be trained")
        if archive_size < 1:
            raise ValueError(f"archive_size must be >= 1, got {archive_size}")
        if k < 1:
            raise ValueError(f"k must be >= 1, got {k}")
        self.archive_rule = _check_choice("archive_rule", archive_rule, ARCHIVE_RULES)
        for flag, value in (("constraint_grad", constraint_grad), ("archive_per_depth", archive_per_depth)):
            if not isinstance(value, bool):
                raise ValueError(f"{flag} must be true or false, got {value!r}")
        if archive_per_depth and archive_rule != "offered":
            raise ValueError("archive_per_depth = true needs archive_rule = 'offered' (the official archive is filled "
                             "with random architectures of any depth)")
        self.archive_per_depth = archive_per_depth
        self.archive_size, self.k, self.candidates, self.recent = archive_size, k, candidates, recent
        self.constraint_grad = constraint_grad
        self.allowed = check_allowed(allowed)
        self.paths_per_step = 1 + archive_size
        self.archives_: dict[int, DiverseArchive | GreedyNoveltyArchive] = {}
        if archive_rule == "official":
            self.archives_[0] = GreedyNoveltyArchive(archive_size, k, candidates, recent)

    def draw(self, rng: random.Random) -> Arch:
        return draw(self.allowed, rng)

    def archive(self, arch: Arch) -> DiverseArchive | GreedyNoveltyArchive:
        key = self.archive_key(arch)
        if key not in self.archives_:
            self.archives_[key] = self._new_archive()
        return self.archives_[key]

    def _new_archive(self):
        if self.archive_rule == "official":
            return GreedyNoveltyArchive(self.archive_size, self.k, self.candidates, self.recent)
        return DiverseArchive(self.archive_size, self.k)

    def archive_key(self, arch: Arch) -> int:
        return depth(arch) if self.archive_per_depth else 0  # one archive per depth, or one for every architecture

    def _restricted(self) -> None:
        for archive in self.archives_.values():
            archive.keep(lambda a: in_space(a, self.allowed))

    def plan(self, step: int, rng: random.Random) -> list[tuple[Arch, float]]:
        current = self.draw(rng)
        archive = self.archive(current)
        if self.archive_rule == "official":
            archive.update(current, lambda: self.draw(rng))
        members = archive.members
        if not members or self.lam == 0:
            return [(current, 1.0)]
        # weight 0: evaluated without gradient (the official code's loss.item())
        member_weight = self.lam / len(members) if self.constraint_grad else 0.0
        return [(current, 1.0 - self.lam)] + [(m, member_weight) for m in members]

    def observe(self, step: int, archs: Sequence[Arch], losses) -> None:
        if archs and self.archive_rule == "offered":
            self.archive(archs[0]).offer(archs[0])

    def state_dict(self) -> dict:
        return {"archives": {str(k): a.state_dict() for k, a in self.archives_.items()}}

    def load_state_dict(self, state: dict) -> None:
        self.archives_ = {}
        for key, sub in state["archives"].items():
            self.archives_[int(key)] = self._new_archive()
            self.archives_[int(key)].load_state_dict(sub)


@SAMPLERS.register("nsas-c")
class NSASChainSampler(NSASSampler):
    name = "nsas-c"

    def __init__(self, chain: int = 2, archive_size: int = 8, k: int = 10, lam: float = 0.5,
                 archive_rule: str = "official", candidates: int = 10, recent: int = 50,
                 constraint_grad: bool = True, allowed: Sequence[Sequence[int]] | None = None):
        if chain not in range(1, NUM_NODES - 1):
            raise ValueError(f"chain must be 1 or 2 (the predecessors each node keeps), got {chain!r}")
        self.chain = chain
        super().__init__(archive_size, k, lam, archive_rule, candidates, recent, constraint_grad, False, allowed)

    def draw(self, rng: random.Random) -> Arch:
        return chain_draw(self.allowed, rng, self.chain)


@SAMPLERS.register("nsas-g")
class NSASGreedySampler(Sampler):
    name = "nsas-g"
    paths_per_step = 3

    def __init__(self, w_current: float = 0.2, w_random: float = 0.4, w_diverse: float = 0.4,
                 diverse: str = "compensate", cell_bug: bool = False,
                 allowed: Sequence[Sequence[int]] | None = None):
        self.weights = tuple(_check_weight(n, w, 1.0) for n, w in
                             (("w_current", w_current), ("w_random", w_random), ("w_diverse", w_diverse)))
        if sum(self.weights) <= 0:
            raise ValueError("nsas-g weights must not all be 0")
        self.rule = _check_choice("diverse", diverse, tuple(DIVERSE_RULES))
        if not isinstance(cell_bug, bool):
            raise ValueError(f"cell_bug must be true or false, got {cell_bug!r}")
        if cell_bug and diverse not in ("compensate", "avoid-random"):
            raise ValueError("cell_bug applies to the official arch_compensate / arch_diver only: "
                             "diverse = 'compensate' or 'avoid-random'")
        self.cell_bug = cell_bug
        self.allowed = check_allowed(allowed)

    def diverse(self, current: Arch, rand: Arch, rng: random.Random) -> Arch:
        if self.rule == "compensate":
            out = compensate(rand, current, self.allowed, rng)
        elif self.rule == "avoid-random":
            out = avoiding((rand,), self.allowed, rng)
        elif self.rule == "random":
            out = draw(self.allowed, rng)
        else:
            out = avoiding((current, rand), self.allowed, rng)
        return as_built(out) if self.cell_bug else out

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
        super().__init__(w_current, w_random, w_diverse, "avoid-both", False, allowed)
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
