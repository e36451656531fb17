from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import pytest
import torch

SHARED = Path(__file__).resolve().parents[1].parent / "shared" / "data"
GT_CSV = SHARED / "nb201" / "nb201_groundtruth.csv"


def require_shared() -> None:
    """Skip the calling test where ../shared/data is absent: the shipped configs and presets point at it (their
    data and ground-truth table), so they cannot load there."""
    if not SHARED.is_dir():
        pytest.skip(f"shared data absent ({SHARED}): the shipped configs point at it")


def pytest_configure(config):
    if os.environ.get("PYTEST_XDIST_WORKER"):  # pytest -n N: N workers, one torch thread each, never oversubscribed
        torch.set_num_threads(1)
        # and the same in the processes tests start (CLI runs killed and resumed, pools): results that a test
        # compares across processes must come from one thread count
        os.environ["OMP_NUM_THREADS"] = "1"


def pytest_collection_modifyitems(config, items):
    if not torch.cuda.is_available():
        skip = pytest.mark.skip(reason="no CUDA device")
        for item in items:
            if "gpu" in item.keywords:
                item.add_marker(skip)


@pytest.fixture(scope="session")
def gt_frame():
    if not GT_CSV.exists():
        pytest.skip(f"shared NB201 table absent ({GT_CSV})")
    import pandas as pd

    return pd.read_csv(GT_CSV)


@pytest.fixture
def image_folder(tmp_path):
    """A tiny 10-class PNG folder (16x16), 12 images per class, class-dependent colour + noise."""
    from PIL import Image

    rng = np.random.default_rng(0)
    root = tmp_path / "imgs"
    for c in range(10):
        d = root / f"class{c}"
        d.mkdir(parents=True)
        for i in range(12):
            base = np.array([25 * c, 255 - 25 * c, (60 * c) % 256], dtype=np.float64)
            img = np.clip(base + rng.normal(0, 30, size=(16, 16, 3)), 0, 255).astype(np.uint8)
            Image.fromarray(img).save(d / f"{i:03d}.png")
    return root
