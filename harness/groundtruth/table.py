"""Compact CSV ground-truth tables.

Schema (one row per architecture; UTF-8 CSV with a header row):

- ``arch`` (required): NB201 string ``|op~0|+|op~0|op~1|+|op~0|op~1|op~2|``; every row must parse and
  no architecture may appear twice. Rows are kept in file order (the "source order").
- ``nb201_index`` (optional): the official NB201 / NATS-Bench topology index (a non-negative integer).
- metric columns ``{ds}_{metric}_{epochs}``: ``ds`` in ``cifar10valid``, ``cifar10``, ``cifar100``,
  ``imagenet16`` (the NB201 datasets cifar10-valid, cifar10, cifar100, ImageNet16-120); ``metric`` in
  ``train``, ``valid``, ``test``; ``epochs`` in ``12``, ``200`` (NB201's hp=12 and hp=200 training
  schedules). Values are accuracy in percent (0-100) on that split, the MEAN over all trained seeds;
  an empty cell means the source has no value (a query for it raises an error). ``cifar10`` has no
  ``valid`` column: NB201 trains it on train+valid. Only the metric columns present are available.
- ``params_mb_cifar10``, ``flops_mb_cifar10`` (optional): parameters (millions) and FLOPs (millions) of
  the CIFAR-10 network as NB201 records them.
- ``isomorphism_class`` (optional): NATS-Bench unique string, must equal ``Arch.canonical()``.
- ``n_seeds_{ds}_{epochs}`` (optional): how many seeds the mean is over.
- ``{ds}_{metric}_{epochs}_seed{S}`` (optional): the value of training seed ``S`` alone (tables made by
  ``gt build`` keep them); read with :meth:`TableGroundTruth.seed_values`.

``ds`` may also be a built dataset's name (see :mod:`harness.groundtruth.base`), with any epoch budget.

Any other column is kept (:attr:`TableGroundTruth.frame`) but ignored. A column that looks like a metric
column but names an unknown dataset/metric/epochs is an error, not ignored, so typos cannot hide data.
"""
from __future__ import annotations

import csv
import io
import re
from pathlib import Path

import numpy as np
import pandas as pd

from harness.space import Arch, ArchError

from .base import KEY_DATASETS, METRICS, GroundTruth, GroundTruthError, GTQuery, all_queries

_METRIC_RE = re.compile(r"^([a-z][a-z0-9]*)_(train|valid|test|[a-z]+)_(\d+)$")
_SEED_RE = re.compile(r"^([a-z][a-z0-9]*_[a-z]+_\d+)_seed(\d+)$")
_NSEEDS_RE = re.compile(r"^n_seeds_([a-z][a-z0-9]*)_(\d+)$")
COST_COLUMNS = ("params_mb_cifar10", "flops_mb_cifar10")


class TableGroundTruth(GroundTruth):
    """Ground truth read from a table in the schema above (see the module docstring)."""

    def __init__(self, frame: pd.DataFrame, source: str = "<DataFrame>", line_offset: int | None = None):
        """Validate ``frame`` and index it. ``line_offset`` turns row numbers into file line numbers in errors."""
        if not isinstance(frame, pd.DataFrame):
            raise GroundTruthError(f"{source}: expected a pandas DataFrame, got {type(frame).__name__}")
        self.source = source
        self._line_offset = line_offset
        self.frame = frame.reset_index(drop=True)
        if self.frame.empty:
            raise GroundTruthError(f"{source}: the table holds no architectures (a header only?)")
        self._archs = self._parse_archs()
        self._row = {a: i for i, a in enumerate(self._archs)}
        self._cols: dict[str, np.ndarray] = {}
        self._extra: dict[str, np.ndarray] = {}
        self._seeds: dict[str, dict[int, np.ndarray]] = {}
        self._index: np.ndarray | None = None
        for name in self.frame.columns:
            self._classify(str(name))
        self._check_isomorphism()

    @classmethod
    def from_csv(cls, path: "str | Path") -> "TableGroundTruth":
        path = Path(path)
        try:
            text = path.read_text(encoding="utf-8")
        except (OSError, UnicodeDecodeError) as exc:
            raise GroundTruthError(f"cannot read ground-truth table {path}: {exc}") from exc
        _check_not_truncated(path, text)
        try:
            # arch strings and class strings must stay text; empty cells become NaN
            frame = pd.read_csv(io.StringIO(text), dtype={"arch": str, "isomorphism_class": str})
        except (pd.errors.ParserError, pd.errors.EmptyDataError, ValueError) as exc:
            raise GroundTruthError(f"{path} is not a readable ground-truth CSV (corrupt or truncated?): {exc}") from exc
        return cls(frame, source=str(path), line_offset=2)

    # ---- GroundTruth interface -------------------------------------------------------------------
    def queries(self) -> list[GTQuery]:
        nb201 = [q for q in all_queries() if q.key in self._cols]
        built = sorted((GTQuery.from_key(k) for k in self._cols if k not in {q.key for q in nb201}),
                       key=lambda q: (q.dataset, q.metric, q.epochs))
        return nb201 + built

    def _column(self, q: GTQuery) -> np.ndarray:
        return self._cols[q.key]

    def nb201_index(self, arch: "Arch | str") -> int | None:
        pos = self._position(arch)
        return None if self._index is None else int(self._index[pos])

    def extra_columns(self) -> dict[str, np.ndarray]:
        return dict(self._extra)

    def seed_values(self, q: "GTQuery | str") -> dict[int, np.ndarray]:
        """Per-seed values of ``q`` (seed -> array aligned with :meth:`archs`); empty when the table keeps none."""
        q = self.check_query(q)
        return {s: v.copy() for s, v in sorted(self._seeds.get(q.key, {}).items())}

    # ---- validation ------------------------------------------------------------------------------
    def _where(self, i: int) -> str:
        return f"row {i}" + ("" if self._line_offset is None else f" (line {i + self._line_offset})")

    def _parse_archs(self) -> list[Arch]:
        if "arch" not in self.frame.columns:
            raise GroundTruthError(
                f"{self.source}: no 'arch' column (one NB201 string per row is required); "
                f"columns found: {list(self.frame.columns)}"
            )
        archs, seen = [], {}
        for i, text in enumerate(self.frame["arch"]):
            if not isinstance(text, str):
                raise GroundTruthError(f"{self.source}: {self._where(i)}: empty or non-text arch {text!r}")
            try:
                arch = Arch.from_str(text)
            except ArchError as exc:
                raise GroundTruthError(f"{self.source}: {self._where(i)}: bad arch: {exc}") from exc
            if arch in seen:
                raise GroundTruthError(
                    f"{self.source}: {self._where(i)}: duplicate arch {arch} (first at {self._where(seen[arch])})"
                )
            seen[arch] = i
            archs.append(arch)
        return archs

    def _classify(self, name: str) -> None:
        """Route a column to metrics / per-seed values / index / extras; other names are ignored on purpose."""
        seed = _SEED_RE.match(name)
        if seed:
            q = self._metric_query(name, seed.group(1))
            self._seeds.setdefault(q.key, {})[int(seed.group(2))] = self._accuracies(name)
            return
        match = _METRIC_RE.match(name)
        # a metric-shaped name is strict when it names an NB201 dataset or a known metric, so typos fail
        if match and (match.group(1) in KEY_DATASETS or match.group(2) in METRICS):
            self._cols[self._metric_query(name, name).key] = self._accuracies(name)
        elif name == "nb201_index":
            self._index = self._indices(name)
        elif name in COST_COLUMNS or _NSEEDS_RE.match(name):
            self._extra[name] = self._numeric(name)

    def _metric_query(self, name: str, key: str) -> GTQuery:
        try:
            return GTQuery.from_key(key)
        except GroundTruthError as exc:
            raise GroundTruthError(f"{self.source}: column {name!r} looks like a metric column but: {exc}") from exc

    def _accuracies(self, name: str) -> np.ndarray:
        values = self._numeric(name)
        bad = np.flatnonzero((values < 0) | (values > 100))
        if bad.size:
            raise GroundTruthError(
                f"{self.source}: column {name!r}, {self._where(int(bad[0]))}: {values[bad[0]]} is not an "
                "accuracy in percent (0-100)"
            )
        return values

    def _numeric(self, name: str) -> np.ndarray:
        col = self.frame[name]
        converted = pd.to_numeric(col, errors="coerce")
        bad = np.flatnonzero(converted.isna().to_numpy() & col.notna().to_numpy())
        if bad.size:
            i = int(bad[0])
            raise GroundTruthError(f"{self.source}: column {name!r}, {self._where(i)}: {col.iloc[i]!r} is not a number")
        return converted.to_numpy(dtype=np.float64, na_value=np.nan)

    def _indices(self, name: str) -> np.ndarray:
        values = self._numeric(name)
        bad = np.flatnonzero(np.isnan(values) | (values < 0) | (values != np.round(values)))
        if bad.size:
            i = int(bad[0])
            raise GroundTruthError(f"{self.source}: {name}, {self._where(i)}: {values[i]} is not a non-negative integer")
        ints = values.astype(np.int64)
        uniq, counts = np.unique(ints, return_counts=True)
        if (counts > 1).any():
            raise GroundTruthError(f"{self.source}: {name} {int(uniq[counts > 1][0])} appears more than once")
        return ints

    def _check_isomorphism(self) -> None:
        # a stale or differently-defined class column would silently corrupt class-level statistics
        if "isomorphism_class" not in self.frame.columns:
            return
        for i, (arch, given) in enumerate(zip(self._archs, self.frame["isomorphism_class"])):
            if isinstance(given, str) and given != arch.canonical():
                raise GroundTruthError(
                    f"{self.source}: {self._where(i)}: isomorphism_class {given!r} differs from "
                    f"Arch.canonical() {arch.canonical()!r} for {arch}"
                )


def _check_not_truncated(path: Path, text: str) -> None:
    """A file cut mid-line parses 'fine' with NaN-padded last row; catch that before pandas does."""
    if not text.strip():
        raise GroundTruthError(f"{path} is empty; expected a ground-truth CSV with a header row")
    if text.endswith("\n"):
        return
    lines = text.splitlines()
    if len(lines) < 2:
        return
    header, last = next(csv.reader([lines[0]])), next(csv.reader([lines[-1]]))
    if len(last) != len(header):
        raise GroundTruthError(
            f"{path} looks truncated: its last line (line {len(lines)}) has {len(last)} of {len(header)} fields "
            "and no line end"
        )
