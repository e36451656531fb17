"""Ground truth for NAS-Bench-201 behind one small interface.

Every lookup names dataset, metric (split), training epochs and seed policy via :class:`GTQuery`::

    gt = load_ground_truth("nb201_groundtruth.csv")
    gt.query(arch, GTQuery("cifar10-valid", "valid", 200))   # mean over seeds, percent

Sources: :class:`TableGroundTruth` (compact CSV, schema in :mod:`harness.groundtruth.table`),
:class:`OfficialGroundTruth` (official ``NAS-Bench-201-v1_*.pth``; slow, export it once) and
:class:`NATSTopologyGroundTruth` (NATS-Bench's topology directory, ``NATS-tss-v1_0-3ffb9-simple``).
"""
from .base import (
    DATASET_KEYS,
    DATASETS,
    EPOCHS,
    METRICS,
    SEED_POLICIES,
    GroundTruth,
    GroundTruthError,
    GTQuery,
    all_queries,
)
from .export import export_table, load_ground_truth, summarize, table_frame
from .nats import NATSTopologyGroundTruth
from .official import OfficialGroundTruth
from .table import TableGroundTruth

__all__ = [
    "DATASETS", "DATASET_KEYS", "METRICS", "EPOCHS", "SEED_POLICIES",
    "GTQuery", "GroundTruth", "GroundTruthError", "all_queries",
    "TableGroundTruth", "OfficialGroundTruth", "NATSTopologyGroundTruth",
    "load_ground_truth", "export_table", "summarize", "table_frame",
]
