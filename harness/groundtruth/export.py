"""Choosing a ground-truth source by file type, exporting the compact table, and summarising a source."""
from __future__ import annotations

import os
import tempfile
from pathlib import Path

import numpy as np
import pandas as pd

from .base import GroundTruth, GroundTruthError
from .nats import NATSTopologyGroundTruth, is_nats_dir
from .official import OfficialGroundTruth
from .table import TableGroundTruth


def load_ground_truth(path: "str | Path") -> GroundTruth:
    """``.pth`` -> :class:`OfficialGroundTruth` (slow, GBs of RAM); ``.csv`` -> :class:`TableGroundTruth`; a
    NATS-Bench topology directory (``NATS-tss-v1_0-3ffb9-simple``) -> :class:`NATSTopologyGroundTruth`."""
    path = Path(path)
    if is_nats_dir(path):
        return NATSTopologyGroundTruth(path)
    suffix = path.suffix.lower()
    if suffix == ".pth":
        return OfficialGroundTruth(path)
    if suffix == ".csv":
        return TableGroundTruth.from_csv(path)
    raise GroundTruthError(
        f"cannot tell the ground-truth format of {path}: expected an official NAS-Bench-201 '.pth' file, "
        "a compact '.csv' table or a NATS-Bench topology directory (NATS-tss-v1_0-3ffb9-simple)"
    )


def table_frame(gt: GroundTruth) -> pd.DataFrame:
    """The compact-table schema (see :mod:`harness.groundtruth.table`) for every arch of ``gt``."""
    archs = gt.archs()
    index = [gt.nb201_index(a) for a in archs]
    cols: dict[str, object] = {}
    if all(i is not None for i in index):
        cols["nb201_index"] = np.asarray(index, dtype=np.int64)
    cols["arch"] = [a.to_str() for a in archs]
    for q in gt.queries():
        cols[q.key] = gt.query_many(archs, q, allow_missing=True)
    cols.update(gt.extra_columns())
    cols["isomorphism_class"] = [a.canonical() for a in archs]
    frame = pd.DataFrame(cols)
    for name in frame.columns:
        if name.startswith("n_seeds_"):
            frame[name] = frame[name].astype("Int64")  # counts print as integers
    return frame


def export_table(gt: GroundTruth, out_path: "str | Path") -> Path:
    """Write ``gt`` as a compact CSV table, atomically (temp file in the same directory, then ``os.replace``),
    so an interrupted export never leaves a truncated table under the final name."""
    out_path = Path(out_path)
    frame = table_frame(gt)
    out_path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{out_path.name}.", suffix=".tmp", dir=out_path.parent)
    try:
        with os.fdopen(fd, "w", encoding="utf-8", newline="") as fh:
            # repr-precision floats: the round trip must give back exactly the same values
            frame.to_csv(fh, index=False, lineterminator="\n")
        os.replace(tmp, out_path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    return out_path


def summarize(gt: GroundTruth) -> dict:
    """JSON-able facts: counts, and for every available query the best architecture (ties: first in source order)."""
    archs = gt.archs()
    best = {}
    for q in gt.queries():
        values = gt.query_many(archs, q, allow_missing=True)
        if np.isnan(values).all():
            best[q.key] = None
            continue
        pos = int(np.nanargmax(values))  # first maximum = first in source order
        best[q.key] = {"arch": archs[pos].to_str(), "accuracy": float(values[pos]), "nb201_index": gt.nb201_index(archs[pos])}
    return {
        "source": gt.source,
        "num_archs": len(archs),
        "num_isomorphism_classes": len({a.canonical() for a in archs}),
        "best": best,
    }
