"""The NAS-Bench-201 cell search space.

A cell is a DAG on 4 nodes; each of the 6 edges (i -> j, i < j) carries one of 5 operations.
An architecture is an :class:`Arch`: 6 op indices, edges in NB201 string order
(0->1), (0->2), (1->2), (0->3), (1->3), (2->3), ops in NB201 order (:data:`OPS`).
Strings appear only at the boundaries (files, ground truth, CLI).
"""
from __future__ import annotations

import itertools
import random
from typing import Iterator, Sequence

OPS: tuple[str, ...] = ("none", "skip_connect", "nor_conv_1x1", "nor_conv_3x3", "avg_pool_3x3")
EDGES: tuple[tuple[int, int], ...] = ((0, 1), (0, 2), (1, 2), (0, 3), (1, 3), (2, 3))
NUM_OPS = len(OPS)
NUM_EDGES = len(EDGES)
NUM_ARCHS = NUM_OPS**NUM_EDGES  # 15,625
NUM_NODES = 4
PARAMETRIC_OPS = frozenset({OPS.index("nor_conv_1x1"), OPS.index("nor_conv_3x3")})
_OP_INDEX = {name: i for i, name in enumerate(OPS)}


class ArchError(ValueError):
    """A malformed architecture string or op-index sequence."""


class Arch(tuple):
    """An NB201 architecture: an immutable, hashable tuple of 6 op indices.

    >>> a = Arch.from_str("|nor_conv_3x3~0|+|none~0|skip_connect~1|+|avg_pool_3x3~0|nor_conv_1x1~1|none~2|")
    >>> tuple(a), a.to_str() == str(a)
    ((3, 0, 1, 4, 2, 0), True)
    """

    __slots__ = ()

    def __new__(cls, ops: Sequence[int]) -> "Arch":
        ops = tuple(ops)
        if len(ops) != NUM_EDGES:
            raise ArchError(f"an architecture has {NUM_EDGES} op indices (one per edge), got {len(ops)}: {ops!r}")
        for edge, op in zip(EDGES, ops):
            # bool is an int subclass; reject it (and numpy floats) explicitly
            if isinstance(op, bool) or not hasattr(op, "__index__") or not 0 <= int(op) < NUM_OPS:
                raise ArchError(
                    f"bad op index {op!r} on edge {edge[0]}->{edge[1]}: expected an integer in 0..{NUM_OPS - 1} "
                    f"({', '.join(f'{i}={n}' for i, n in enumerate(OPS))})"
                )
        return super().__new__(cls, (int(op) for op in ops))

    @classmethod
    def from_str(cls, text: str) -> "Arch":
        """Parse an NB201 string ``|op~0|+|op~0|op~1|+|op~0|op~1|op~2|``."""
        if not isinstance(text, str):
            raise ArchError(f"expected an NB201 architecture string, got {type(text).__name__}")
        nodes = text.strip().split("+")
        if len(nodes) != NUM_NODES - 1:
            raise ArchError(
                f"{text!r}: expected {NUM_NODES - 1} node groups separated by '+', found {len(nodes)}; "
                "format is |op~0|+|op~0|op~1|+|op~0|op~1|op~2|"
            )
        ops: list[int] = []
        for node, group in enumerate(nodes, start=1):
            if len(group) < 2 or not (group.startswith("|") and group.endswith("|")):
                raise ArchError(f"{text!r}: node group {group!r} must start and end with '|'")
            tokens = group[1:-1].split("|")
            if len(tokens) != node:
                raise ArchError(f"{text!r}: node {node} needs {node} inputs, group {group!r} has {len(tokens)}")
            for src, token in enumerate(tokens):
                ops.append(_parse_token(text, token, src))
        return cls(ops)

    @classmethod
    def from_index(cls, index: int) -> "Arch":
        """The architecture at position ``index`` of :func:`all_archs` (base-5, edge 0 most significant).

        This is the harness's enumeration order, *not* NB201's index: join on strings.
        """
        if not 0 <= int(index) < NUM_ARCHS:
            raise ArchError(f"architecture index {index} out of range 0..{NUM_ARCHS - 1}")
        index = int(index)
        digits = []
        for _ in range(NUM_EDGES):
            index, d = divmod(index, NUM_OPS)
            digits.append(d)
        return cls(reversed(digits))

    @property
    def index(self) -> int:
        """Position in :func:`all_archs` (inverse of :meth:`from_index`)."""
        out = 0
        for op in self:
            out = out * NUM_OPS + op
        return out

    def to_str(self) -> str:
        groups, k = [], 0
        for node in range(1, NUM_NODES):
            groups.append("|" + "|".join(f"{OPS[self[k + src]]}~{src}" for src in range(node)) + "|")
            k += node
        return "+".join(groups)

    def __str__(self) -> str:
        return self.to_str()

    def __repr__(self) -> str:
        return f"Arch({tuple(self)!r})"

    def op_names(self) -> tuple[str, ...]:
        return tuple(OPS[o] for o in self)

    def canonical(self) -> str:
        """Isomorphism class key, identical to NATS-Bench's ``to_unique_str(consider_zero=True)``.

        NB201's definition of "non-isomorphic" (6,466 classes), reproduced exactly rather than
        improved: ``none`` (or an input node whose whole expression is zero) contributes ``#``;
        ``skip_connect`` passes its input's expression through; other ops wrap it as ``(expr)@op``;
        the terms summed into a node are sorted. Expressions are not flattened, so a few
        functionally equal cells still get different keys (tests/test_space.py shows one).
        """
        nodes = ["0"]
        k = 0
        for node in range(1, NUM_NODES):
            terms = []
            for src in range(node):
                op = OPS[self[k + src]]
                if op == "none" or nodes[src] == "#":
                    terms.append("#")
                elif op == "skip_connect":
                    terms.append(nodes[src])
                else:
                    terms.append(f"({nodes[src]})@{op}")
            nodes.append("+".join(sorted(terms)))
            k += node
        return nodes[-1]


def _parse_token(text: str, token: str, src: int) -> int:
    name, sep, node = token.partition("~")
    if not sep:
        raise ArchError(f"{text!r}: bad token {token!r}: expected 'op~{src}'")
    if name not in _OP_INDEX:
        raise ArchError(f"{text!r}: unknown op {name!r} in token {token!r}; valid ops: {', '.join(OPS)}")
    if node != str(src):
        raise ArchError(f"{text!r}: bad token {token!r}: input node must be {src}, got {node!r}")
    return _OP_INDEX[name]


def parse_arch(value: "Arch | str | Sequence[int]") -> Arch:
    """Accept an :class:`Arch`, an NB201 string, or 6 op indices."""
    if isinstance(value, Arch):
        return value
    if isinstance(value, str):
        return Arch.from_str(value)
    return Arch(value)


def all_archs() -> list[Arch]:
    """All 15,625 architectures in base-5 order."""
    return list(iter_archs())


def iter_archs() -> Iterator[Arch]:
    return (Arch(ops) for ops in itertools.product(range(NUM_OPS), repeat=NUM_EDGES))


def unique_archs() -> list[Arch]:
    """One representative (the first in base-5 order) per isomorphism class: 6,466 architectures."""
    seen: dict[str, Arch] = {}
    for arch in iter_archs():
        seen.setdefault(arch.canonical(), arch)
    return list(seen.values())


def sample_archs(k: int, rng: random.Random, pool: Sequence[Arch] | None = None) -> list[Arch]:
    """``k`` distinct architectures drawn without replacement from ``pool`` (default: all)."""
    pool = all_archs() if pool is None else list(pool)
    if not 0 < k <= len(pool):
        raise ValueError(f"cannot sample {k} architectures from a pool of {len(pool)}")
    return rng.sample(pool, k)


class CellPath(tuple):
    """One architecture per search cell of a supernet, in cell order: the path of a strategy that samples each
    cell independently (ABS's NB201 supernet, :mod:`harness.samplers.percell`). It is not an NB201 architecture
    (those use one cell everywhere) and is never estimated or looked up; only the supernet's forward reads it.
    """

    __slots__ = ()

    def __new__(cls, archs: Sequence[Sequence[int]]) -> "CellPath":
        archs = tuple(a if isinstance(a, Arch) else Arch(a) for a in archs)
        if not archs:
            raise ArchError("a per-cell path needs at least one cell")
        return super().__new__(cls, archs)

    def __repr__(self) -> str:
        return f"CellPath({len(self)} cells)"

    def to_str(self) -> str:
        return ";".join(a.to_str() for a in self)


def random_arch(rng: random.Random) -> Arch:
    return Arch(rng.randrange(NUM_OPS) for _ in range(NUM_EDGES))


def depth(arch: Arch) -> int:
    """Parametric ops (1x1/3x3 convolutions) on the input-to-output path that has the most of them.

    Paths run from node 0 to node 3 along edges whose op is not ``none``. A cell with no such path
    (its output is zero) has depth 0, as does a path of skips and poolings only. Range 0..3.
    """
    best: list[int | None] = [0] + [None] * (NUM_NODES - 1)  # most convs on a path from node 0 to node i
    for e, (src, dst) in enumerate(EDGES):  # edges are in topological order of their destination
        op = arch[e]
        if op == _OP_INDEX["none"] or best[src] is None:
            continue
        d = best[src] + (op in PARAMETRIC_OPS)
        best[dst] = d if best[dst] is None else max(best[dst], d)
    return best[-1] or 0


def hamming(a: Sequence[int], b: Sequence[int]) -> int:
    """Edges on which two architectures use different ops (0..6)."""
    return sum(x != y for x, y in zip(a, b))
