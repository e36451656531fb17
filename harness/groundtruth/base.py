"""Ground-truth vocabulary (datasets, metrics, epochs, seed policies) and the :class:`GroundTruth` interface.

Datasets are NB201's four (with NB201's epoch budgets 12 and 200) or a *built* dataset: ground truth made
by ``nb201-harness gt build`` on another dataset, named by a lowercase alphanumeric key (for example
``digitsm``) and valid for any positive epoch budget. A built name that is one typo away from an NB201
key is refused, so ``cifar10vaild_valid_200`` cannot pass as a new dataset.

Every query is a :class:`GTQuery` naming dataset, metric (split), training epochs and seed policy, so a
lookup can never silently return a different split or a single random seed (syne-tune's blackbox repo
once served test accuracy as ``valid_error``; NATS-Bench's ``get_more_info`` returns one random seed).
"""
from __future__ import annotations

import abc
import difflib
import re
from dataclasses import dataclass
from typing import Iterable, Sequence

import numpy as np

from harness.space import Arch, ArchError, parse_arch

DATASETS: tuple[str, ...] = ("cifar10-valid", "cifar10", "cifar100", "ImageNet16-120")
METRICS: tuple[str, ...] = ("train", "valid", "test")  # accuracy in percent on that split
EPOCHS: tuple[int, ...] = (12, 200)
SEED_POLICIES: tuple[str, ...] = ("mean",)  # mean over all trained seeds

# Column-name spelling of each dataset (no '-' so keys stay valid identifiers).
DATASET_KEYS: dict[str, str] = {
    "cifar10-valid": "cifar10valid",
    "cifar10": "cifar10",
    "cifar100": "cifar100",
    "ImageNet16-120": "imagenet16",
}
KEY_DATASETS: dict[str, str] = {v: k for k, v in DATASET_KEYS.items()}
_BUILT_RE = re.compile(r"^[a-z][a-z0-9]*$")


def is_built_dataset(name: object) -> bool:
    """True for a valid built-dataset name (lowercase alphanumeric, not an NB201 name or near-miss of one)."""
    return isinstance(name, str) and _check_built(name) is None


def _check_built(name: str) -> str | None:
    """None when ``name`` is a usable built-dataset name, else why not."""
    if name in DATASETS or name in KEY_DATASETS:
        return "it is an NB201 dataset"
    if not _BUILT_RE.match(name):
        return "built-dataset names are lowercase letters and digits, starting with a letter"
    near = difflib.get_close_matches(name, [*KEY_DATASETS, *DATASETS], n=1, cutoff=0.85)
    if near:
        return f"it looks like a typo of NB201's {near[0]!r}"
    return None


def dataset_key(dataset: str) -> str:
    """Column spelling of a dataset: NB201's fixed keys, a built dataset's own name."""
    return DATASET_KEYS.get(dataset, dataset)


class GroundTruthError(ValueError):
    """A ground-truth query or file that cannot be answered or read; the message says why."""


@dataclass(frozen=True)
class GTQuery:
    """One ground-truth quantity: ``metric`` accuracy (%) of networks trained ``epochs`` epochs on ``dataset``,
    aggregated over training seeds by ``seeds``.

    ``cifar10`` is trained on the full 50k training set, so it has no validation split: use
    ``cifar10-valid`` (trained on 25k, validated on the other 25k) for validation accuracy.
    """

    dataset: str
    metric: str
    epochs: int
    seeds: str = "mean"

    def __post_init__(self) -> None:
        built = isinstance(self.dataset, str) and self.dataset not in DATASETS
        if built and (why := _check_built(self.dataset)) is not None:
            raise GroundTruthError(f"unknown dataset {self.dataset!r}; valid values: {', '.join(DATASETS)}, or a "
                                   f"built dataset's name ({self.dataset!r} is not one: {why})")
        _check_choice("metric", self.metric, METRICS)
        # bool is an int subclass; reject it and strings such as "200" so typos fail loudly
        ok = not isinstance(self.epochs, bool) and hasattr(self.epochs, "__index__") and \
            (int(self.epochs) > 0 if built else int(self.epochs) in EPOCHS)
        if not ok:
            valid = "a positive integer" if built else ", ".join(map(str, EPOCHS))
            raise GroundTruthError(f"unknown epochs {self.epochs!r}; valid epochs for {self.dataset}: {valid}")
        object.__setattr__(self, "epochs", int(self.epochs))
        _check_choice("seed policy", self.seeds, SEED_POLICIES)
        if self.dataset == "cifar10" and self.metric == "valid":
            raise GroundTruthError(
                "cifar10 has no validation split in NAS-Bench-201 (it is trained on train+valid); "
                "use GTQuery('cifar10-valid', 'valid', ...) for validation accuracy"
            )

    @property
    def key(self) -> str:
        """Table column name, e.g. ``cifar10valid_valid_200`` (values are seed means)."""
        return f"{dataset_key(self.dataset)}_{self.metric}_{self.epochs}"

    @classmethod
    def from_key(cls, key: str) -> "GTQuery":
        """Inverse of :attr:`key`; raises :class:`GroundTruthError` for a malformed key."""
        parts = key.split("_") if isinstance(key, str) else []
        if len(parts) != 3 or not (parts[0] in KEY_DATASETS or is_built_dataset(parts[0])) or not parts[2].isdigit():
            raise GroundTruthError(
                f"bad query key {key!r}: expected '{{dataset}}_{{metric}}_{{epochs}}' with dataset in "
                f"{sorted(KEY_DATASETS)} (or a built dataset's name), metric in {list(METRICS)}, "
                f"epochs in {list(EPOCHS)} (any positive integer for a built dataset)"
            )
        return cls(KEY_DATASETS.get(parts[0], parts[0]), parts[1], int(parts[2]))

    def __str__(self) -> str:
        return f"{self.dataset} {self.metric} accuracy after {self.epochs} epochs ({self.seeds} over seeds)"


def all_queries() -> list[GTQuery]:
    """Every query the vocabulary allows, in canonical (dataset, metric, epochs) order."""
    out = []
    for ds in DATASETS:
        for metric in METRICS:
            for ep in EPOCHS:
                if not (ds == "cifar10" and metric == "valid"):
                    out.append(GTQuery(ds, metric, ep))
    return out


def _check_choice(what: str, value: object, valid: Sequence[str]) -> None:
    if not isinstance(value, str) or value not in valid:
        raise GroundTruthError(f"unknown {what} {value!r}; valid values: {', '.join(valid)}")


def as_query(q: "GTQuery | str") -> GTQuery:
    """Accept a :class:`GTQuery` or its column key (``'cifar100_test_200'``)."""
    if isinstance(q, GTQuery):
        return q
    if isinstance(q, str):
        return GTQuery.from_key(q)
    raise GroundTruthError(f"expected a GTQuery or a query key string, got {type(q).__name__}")


def as_arch(arch: "Arch | str") -> Arch:
    """Parse an architecture argument, reporting malformed input as :class:`GroundTruthError`."""
    try:
        return parse_arch(arch)
    except (ArchError, TypeError) as exc:
        raise GroundTruthError(f"invalid architecture {arch!r}: {exc}") from exc


class GroundTruth(abc.ABC):
    """Ground-truth accuracies for a set of NB201 architectures.

    Subclasses fill ``self._archs`` (source order) and ``self._row`` (Arch -> position) and implement
    :meth:`queries` and :meth:`_column` (one value per arch, NaN where the source has none).
    """

    source: str = "<unknown>"
    _archs: list[Arch]
    _row: dict[Arch, int]

    @abc.abstractmethod
    def queries(self) -> list[GTQuery]:
        """The queries this source can answer, in canonical order."""

    @abc.abstractmethod
    def _column(self, q: GTQuery) -> np.ndarray:
        """float64 values of an available query, aligned with :meth:`archs` (NaN = missing)."""

    def nb201_index(self, arch: "Arch | str") -> int | None:
        """The official NB201 index of ``arch``, or None when the source does not record it."""
        self._position(arch)
        return None

    def extra_columns(self) -> dict[str, np.ndarray]:
        """Optional per-arch schema columns (costs, seed counts) this source can export."""
        return {}

    def archs(self) -> list[Arch]:
        return list(self._archs)

    def __len__(self) -> int:
        return len(self._archs)

    def __contains__(self, arch: object) -> bool:
        try:
            return parse_arch(arch) in self._row  # type: ignore[arg-type]
        except (ArchError, TypeError):
            return False

    def check_query(self, q: "GTQuery | str") -> GTQuery:
        """Validate ``q`` and make sure this source holds it (else list what it does hold)."""
        q = as_query(q)
        available = self.queries()
        if q not in available:
            raise GroundTruthError(
                f"{self.source} has no {q.key} ({q}); available queries here: "
                f"{', '.join(x.key for x in available) or 'none'}"
            )
        return q

    def query(self, arch: "Arch | str", q: "GTQuery | str") -> float:
        q = self.check_query(q)
        pos = self._position(arch)
        value = float(self._column(q)[pos])
        if np.isnan(value):
            raise GroundTruthError(f"{self.source} has no value of {q.key} for architecture {self._archs[pos]}")
        return value

    def query_many(self, archs: Iterable["Arch | str"], q: "GTQuery | str", allow_missing: bool = False) -> np.ndarray:
        """Vectorised :meth:`query`; with ``allow_missing`` missing values come back as NaN instead of an error."""
        q = self.check_query(q)
        positions = np.fromiter((self._position(a) for a in archs), dtype=np.int64)
        values = np.asarray(self._column(q), dtype=np.float64)[positions]
        if not allow_missing and np.isnan(values).any():
            missing = [str(self._archs[p]) for p in positions[np.isnan(values)][:3]]
            raise GroundTruthError(
                f"{self.source} has no value of {q.key} for {int(np.isnan(values).sum())} of the requested "
                f"architectures, e.g. {missing}"
            )
        return values

    def _position(self, arch: "Arch | str") -> int:
        parsed = as_arch(arch)
        try:
            return self._row[parsed]
        except KeyError:
            raise GroundTruthError(
                f"architecture {parsed} is not in {self.source} ({len(self)} architectures)"
            ) from None
