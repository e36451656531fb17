"""Atomic file writes: a temp file in the same directory, then ``os.replace``."""
from __future__ import annotations

import json
import math
import os
import tempfile
from pathlib import Path
from typing import TYPE_CHECKING, Callable

if TYPE_CHECKING:  # pandas and torch load only when a frame or tensor is written (a fast CLI start)
    import pandas as pd


def _umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask


_UMASK = _umask()


def atomic_write(path: str | Path, write: Callable[[Path], None]) -> Path:
    """Call ``write(tmp)`` then rename ``tmp`` over ``path``; an interruption leaves ``path`` untouched."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    os.close(fd)
    try:
        write(Path(tmp))
        os.chmod(tmp, 0o666 & ~_UMASK)  # mkstemp creates 0600; give the file the usual permissions
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    return path


def write_text(path: str | Path, text: str) -> Path:
    return atomic_write(path, lambda p: p.write_text(text))


def finite_or_none(data):
    """Replace NaN/inf floats by None, recursively: strict JSON has no NaN (e.g. tau of a constant estimator)."""
    if isinstance(data, float):
        return data if math.isfinite(data) else None
    if isinstance(data, dict):
        return {k: finite_or_none(v) for k, v in data.items()}
    if isinstance(data, (list, tuple)):
        return [finite_or_none(v) for v in data]
    return data


def write_json(path: str | Path, data) -> Path:
    return write_text(path, json.dumps(finite_or_none(data), indent=2, allow_nan=False) + "\n")


def write_csv(path: str | Path, frame: pd.DataFrame) -> Path:
    return atomic_write(path, lambda p: frame.to_csv(p, index=False))


def save_torch(path: str | Path, obj) -> Path:
    import torch

    return atomic_write(path, lambda p: torch.save(obj, p))


def check_writable(path: str | Path, what: str = "output") -> None:
    """Raise OutputError (one line) unless ``path`` can be created or written: nothing on the way is a file, and
    the nearest existing folder is writable. Called before work starts, so a bad ``--out`` costs nothing."""
    path = Path(path)
    if path.exists() and not path.is_dir() and what.endswith("directory"):
        raise OutputError(f"{what} {path} is a file, not a folder; choose another --out")
    parent = path if path.is_dir() else path.parent
    while not parent.exists():
        parent = parent.parent
    if not parent.is_dir():
        raise OutputError(f"cannot write {what} {path}: {parent} is a file, not a folder")
    if not os.access(parent, os.W_OK | os.X_OK):
        raise OutputError(f"cannot write {what} {path}: no write permission in {parent}")


class OutputError(OSError):
    """An output path that cannot be written."""
