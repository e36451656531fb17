"""Datasets, the NB201 train/valid protocol split, and on-device batching.

Images live on the host as an :class:`ImageSet` (uint8, N x H x W x 3). Training reads them through
:class:`DeviceBatches`, which moves a subset to the device once as a normalised float tensor and then
shuffles, crops and flips whole batches there (no per-sample Python, no host synchronisation).
"""
from __future__ import annotations

import contextlib
import hashlib
import io
import json
import math
import os
import re
import tempfile
import warnings
import zipfile
from dataclasses import dataclass
from pathlib import Path, PurePosixPath
from typing import Iterator, NamedTuple, Sequence

import numpy as np
import torch
import torch.nn.functional as F
from PIL import Image


class DataError(ValueError):
    """A data source is missing, malformed or used in a way it cannot support."""


_IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg")
_CACHE_VERSION = 1  # bump when the cached array layout changes
NB201_TRAIN_SIZE = 50_000  # CIFAR-10/100 training set, the population NB201's split file indexes

# NB201 / xautodl `get_datasets` constants (per RGB channel, on the [0, 1] scale).
_NORMALIZATION = {
    "cifar10": ([x / 255 for x in [125.3, 123.0, 113.9]], [x / 255 for x in [63.0, 62.1, 66.7]]),
    "cifar100": ([x / 255 for x in [129.3, 124.1, 112.4]], [x / 255 for x in [68.2, 65.4, 70.4]]),
    "imagenet16": ([x / 255 for x in [122.68, 116.66, 104.01]], [x / 255 for x in [63.22, 61.26, 65.09]]),
}


@dataclass
class ImageSet:
    """A labelled image set on the host: images uint8 (N, H, W, 3), labels int64 (N,) in [0, len(classes))."""
    images: np.ndarray
    labels: np.ndarray
    classes: list[str]
    source: str
    split: tuple[np.ndarray, np.ndarray] | None = None  # the dataset's own (train, valid) indices, if it fixes one

    def __post_init__(self) -> None:
        im, lab = self.images, self.labels
        if not isinstance(im, np.ndarray) or im.dtype != np.uint8 or im.ndim != 4 or im.shape[3] != 3:
            raise DataError(f"images must be uint8 (N, H, W, 3), got {getattr(im, 'dtype', im)} {np.shape(im)}")
        if not isinstance(lab, np.ndarray) or lab.dtype != np.int64 or lab.shape != (im.shape[0],):
            raise DataError(f"labels must be int64 ({im.shape[0]},), got {getattr(lab, 'dtype', lab)} {np.shape(lab)}")
        self.classes = list(self.classes)
        if len(lab) and (lab.min() < 0 or lab.max() >= len(self.classes)):
            raise DataError(f"labels must lie in [0, {len(self.classes)}), got [{lab.min()}, {lab.max()}]")

    def __len__(self) -> int:
        return int(self.images.shape[0])


# ----------------------------------------------------------------------------- folder / zip loader

def default_cache_dir() -> Path:
    """``$NB201_HARNESS_CACHE`` if set, else ``~/.cache/nb201-harness``."""
    env = os.environ.get("NB201_HARNESS_CACHE")
    return Path(env).expanduser() if env else Path("~/.cache/nb201-harness").expanduser()


def _class_layout(relpaths: Sequence[str], source: str) -> tuple[list[str], list[tuple[str, int]]]:
    """Map image paths (posix, relative to the source) to (classes, [(path, label)] sorted by class then path).

    Accepts ``<class>/<file>`` or, below one common top-level folder (e.g. ``train/``), ``<top>/<class>/<file>``.
    """
    parts = [PurePosixPath(p).parts for p in relpaths]
    tops = {p[0] for p in parts}
    if len(tops) == 1 and all(len(p) == 3 for p in parts):
        parts = [p[1:] for p in parts]  # strip the single wrapper folder
    bad = [PurePosixPath(*p).as_posix() for p in parts if len(p) != 2]
    if bad:
        raise DataError(f"{source}: expected <class>/<image> (optionally under one top folder); "
                        f"found {bad[0]!r} ({len(bad)} such paths)")
    classes = sorted({p[0] for p in parts})
    label = {c: i for i, c in enumerate(classes)}
    items = sorted((label[p[0]], full) for p, full in zip(parts, relpaths))
    return classes, [(full, lab) for lab, full in items]


def _list_images(path: Path) -> list[str]:
    """Relative posix paths of the image files in a directory or zip (hidden and __MACOSX entries skipped)."""
    if path.is_dir():
        names = [p.relative_to(path).as_posix() for p in path.rglob("*") if p.is_file()]
    else:
        with zipfile.ZipFile(path) as zf:
            names = [n for n in zf.namelist() if not n.endswith("/")]
    return [n for n in names if n.lower().endswith(_IMAGE_SUFFIXES)
            and not any(part.startswith(".") or part == "__MACOSX" for part in n.split("/"))]


def _decode(data: bytes | Path, name: str) -> np.ndarray:
    """Decode one image file to RGB uint8 (H, W, 3)."""
    try:
        with Image.open(io.BytesIO(data) if isinstance(data, bytes) else data) as img:
            return np.asarray(img.convert("RGB"), dtype=np.uint8)
    except Exception as exc:  # Pillow raises several unrelated types
        raise DataError(f"cannot decode image {name}: {exc}") from exc


def _decode_all(path: Path, items: list[tuple[str, int]]) -> np.ndarray:
    """Decode every listed image into one (N, H, W, 3) array; all must share the first image's size.

    Serial on purpose: on the 2-core box a 2-process pool was 2x *slower* than one loop (about 6.5 s
    for the 50k train zip), the per-image cost being mostly Python overhead and zip reads.
    """
    with contextlib.nullcontext() if path.is_dir() else zipfile.ZipFile(path) as zf:
        read = zf.read if zf else (lambda n: path / n)
        out = None
        for i, (name, _) in enumerate(items):
            arr = _decode(read(name), f"{path}:{name}")
            if out is None:
                out = np.empty((len(items), *arr.shape), dtype=np.uint8)
            elif arr.shape != out.shape[1:]:
                raise DataError(f"{path}:{name} is {arr.shape[1]}x{arr.shape[0]} but the images before it are "
                                f"{out.shape[2]}x{out.shape[1]}; all images must share one size")
            out[i] = arr
        return out


def _source_key(path: Path) -> str:
    """Hash identifying the source's content version: absolute path + size + mtime (of every file for a folder)."""
    h = hashlib.sha256(f"v{_CACHE_VERSION}|{path.resolve()}".encode())
    for p in sorted(p for p in path.rglob("*") if p.is_file()) if path.is_dir() else [path]:
        h.update(f"|{p}|{p.stat().st_size}|{p.stat().st_mtime_ns}".encode())
    return h.hexdigest()[:24]


def _read_cache(file: Path) -> ImageSet | None:
    """Load a cached ImageSet, or None if absent or unreadable (a corrupt cache is rebuilt, not fatal)."""
    try:
        with np.load(file, allow_pickle=False) as z:
            return ImageSet(z["images"], z["labels"], [str(c) for c in z["classes"]], str(z["source"]))
    except FileNotFoundError:
        return None
    except Exception as exc:
        warnings.warn(f"ignoring unreadable image cache {file} ({exc!r}); rebuilding it")
        return None


def _write_cache(file: Path, s: ImageSet) -> None:
    """Write atomically (temp file + os.replace) so a crash or a concurrent run never leaves half a file."""
    file.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=file.parent, prefix=file.name, suffix=".tmp")
    try:
        with os.fdopen(fd, "wb") as f:  # a file object: np.savez would append ".npz" to a bare name
            np.savez(f, images=s.images, labels=s.labels, classes=np.array(s.classes), source=np.array(s.source))
        os.replace(tmp, file)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def load_image_folder(path: str | os.PathLike, cache_dir: str | os.PathLike | None = None,
                      use_cache: bool = True) -> ImageSet:
    """Load a directory or .zip of ``<class>/<image>`` files (optionally under one top folder) as an ImageSet.

    Classes are the sorted subfolder names; within a class images are in sorted path order.
    The decoded arrays are cached as ``<cache_dir>/images-<key>.npz`` (see :func:`default_cache_dir`).
    """
    path = Path(path).expanduser()
    if not (path.is_dir() or (path.is_file() and zipfile.is_zipfile(path))):
        raise DataError(f"{path} is neither a directory nor a zip file of <class>/<image> folders")
    cache_file = Path(cache_dir or default_cache_dir()).expanduser() / f"images-{_source_key(path)}.npz"
    if use_cache and (hit := _read_cache(cache_file)) is not None:
        return hit
    if not (names := _list_images(path)):
        raise DataError(f"{path} holds no {'/'.join(_IMAGE_SUFFIXES)} images")
    classes, items = _class_layout(names, str(path))
    labels = np.fromiter((lab for _, lab in items), dtype=np.int64, count=len(items))
    result = ImageSet(_decode_all(path, items), labels, classes, str(path.resolve()))
    if use_cache:
        _write_cache(cache_file, result)
    return result


# ----------------------------------------------------------------------------- official CIFAR python format

_CIFAR = {  # name -> (folder, {split: [batch files]}, meta file, label key, class-names key)
    "cifar10": ("cifar-10-batches-py", {"train": [f"data_batch_{i}" for i in range(1, 6)], "test": ["test_batch"]},
                "batches.meta", "labels", "label_names"),
    "cifar100": ("cifar-100-python", {"train": ["train"], "test": ["test"]}, "meta", "fine_labels",
                 "fine_label_names"),
}


def _unpickle(file: Path) -> dict[str, object]:
    """Read one CIFAR pickle (written by Python 2, hence bytes keys) into a dict with str keys."""
    from .safeload import load_pickle

    data = load_pickle(file, "CIFAR batch", encoding="bytes")  # numpy arrays only: no code from the file
    if not isinstance(data, dict):
        raise DataError(f"{file}: expected a CIFAR batch (a dict with data and labels), got {type(data).__name__}")
    return {k.decode() if isinstance(k, bytes) else k: v for k, v in data.items()}


def _cifar_missing(name: str, root: Path, folder: str, why: str) -> DataError:
    return DataError(
        f"{name}: no official CIFAR python files at {root / folder} ({why}). Put the extracted "
        f"'{folder}' folder (from https://www.cs.toronto.edu/~kriz/cifar.html) under {root}, or install "
        f"torchvision to download it (pip install 'nb201-harness[torchvision]'). The harness also reads a "
        f"folder or .zip of <class>/<image> subfolders (give its path instead of '{name}:ROOT').")


def _ensure_cifar(name: str, root: Path, folder: str) -> None:
    """Download the official files with torchvision when they are missing; DataError if that is impossible."""
    try:
        import torchvision.datasets as tvd
    except ImportError:
        raise _cifar_missing(name, root, folder, "torchvision is not installed, so it cannot download") from None
    cls = tvd.CIFAR10 if name == "cifar10" else tvd.CIFAR100
    try:
        for train in (True, False):
            cls(str(root), train=train, download=True)
    except Exception as exc:  # offline, HTTP errors, checksum failures
        raise _cifar_missing(name, root, folder, f"download failed: {exc}") from exc


def load_cifar_python(root: str | os.PathLike, name: str, split: str) -> ImageSet:
    """Read the official CIFAR-10/100 python pickles under ``root`` (or ``root`` being that folder itself).

    The pickles hold ``data`` as (N, 3072) uint8, channel-major (1024 R, then G, then B, each row-major);
    it is returned as (N, 32, 32, 3).
    """
    if name not in _CIFAR:
        raise DataError(f"unknown CIFAR dataset {name!r}; expected one of {sorted(_CIFAR)}")
    folder, files, meta_file, label_key, names_key = _CIFAR[name]
    if split not in files:
        raise DataError(f"unknown split {split!r}; expected 'train' or 'test'")
    root = Path(root).expanduser()
    base = root if root.name == folder and not (root / folder).is_dir() else root / folder
    needed = [meta_file, *files[split]]
    if not all((base / f).is_file() for f in needed):
        _ensure_cifar(name, root, folder)
        base = root / folder
        if missing := [f for f in needed if not (base / f).is_file()]:
            raise _cifar_missing(name, root, folder, f"missing {', '.join(missing)} after download")
    parts = [_unpickle(base / f) for f in files[split]]
    data = np.concatenate([np.asarray(p["data"], dtype=np.uint8) for p in parts])
    images = np.ascontiguousarray(data.reshape(-1, 3, 32, 32).transpose(0, 2, 3, 1))
    labels = np.concatenate([np.asarray(p[label_key], dtype=np.int64) for p in parts])
    classes = [c.decode() if isinstance(c, bytes) else str(c) for c in _unpickle(base / meta_file)[names_key]]
    return ImageSet(images, labels, classes, f"{name}:{base.resolve()}:{split}")


# ----------------------------------------------------------------------------- official ImageNet16 format

IMAGENET16_FILES = {"train": [f"train_data_batch_{i}" for i in range(1, 11)], "test": ["val_data"]}
IMAGENET16_FOLDER = "ImageNet16"
_IMAGENET16 = re.compile(r"imagenet16-(\d+)$")


def load_imagenet16(root: str | os.PathLike, split: str, classes: int = 120) -> ImageSet:
    """Read the official downsampled-ImageNet 16x16 pickles (``train_data_batch_1..10``, ``val_data``) under
    ``root`` (or ``root/ImageNet16``) as NB201 does (xautodl's ``datasets/DownsampledImageNet.py``): ``data`` is
    (N, 768) uint8, channel-major 16x16; ``labels`` run 1..1000; only images labelled 1..``classes`` are kept, in
    file order, and label ``L`` becomes class ``L - 1``. NB201's ImageNet16-120 is ``classes = 120``: 151,700
    training and 6,000 test images."""
    from .safeload import load_pickle

    if split not in IMAGENET16_FILES:
        raise DataError(f"unknown split {split!r}; expected 'train' or 'test'")
    if not 0 < classes < 1000:
        raise DataError(f"ImageNet16 keeps 1..999 of its 1,000 classes, not {classes}")
    root = Path(root).expanduser()
    base = root / IMAGENET16_FOLDER if (root / IMAGENET16_FOLDER).is_dir() else root
    files = IMAGENET16_FILES[split]
    if missing := [f for f in files if not (base / f).is_file()]:
        raise DataError(f"imagenet16-{classes}: no official ImageNet16 files at {base} (missing "
                        f"{', '.join(missing)}). Download the 16x16 downsampled ImageNet pickles (see data/README.md) "
                        f"and give the folder that holds them as 'imagenet16-{classes}:ROOT'")
    images, labels = [], []
    for f in files:
        entry = load_pickle(base / f, "ImageNet16 batch", encoding="latin1")  # numpy arrays only: no code
        try:
            data = np.asarray(entry["data"], dtype=np.uint8)
            lab = np.asarray(entry["labels"], dtype=np.int64)
        except (TypeError, KeyError, IndexError, ValueError) as exc:
            raise DataError(f"{base / f}: not an ImageNet16 batch (a dict with data and labels): {exc!r}") from exc
        if data.ndim != 2 or data.shape[1] != 3 * 16 * 16 or lab.shape != (len(data),):
            raise DataError(f"{base / f}: expected data (N, 768) and N labels, got {data.shape} and {lab.shape}")
        keep = (lab >= 1) & (lab <= classes)
        images.append(data[keep])
        labels.append(lab[keep] - 1)
    data = np.concatenate(images)
    out = np.ascontiguousarray(data.reshape(-1, 3, 16, 16).transpose(0, 2, 3, 1))
    return ImageSet(out, np.concatenate(labels), [str(c) for c in range(1, classes + 1)],
                    f"imagenet16-{classes}:{base.resolve()}:{split}")


def load_dataset(spec: str, split: str = "train", cache_dir: str | os.PathLike | None = None) -> ImageSet:
    """Load ``builtin:NAME`` (generated offline, see :mod:`harness.builtin`), ``cifar10:ROOT`` / ``cifar100:ROOT`` /
    ``imagenet16-120:ROOT`` (official formats, ``split`` = train|test) or a zip/folder path.

    A zip/folder is one source (one split): ``split`` is then ignored; configs name train and test separately.
    """
    name, sep, rest = spec.partition(":")
    if sep and name == "builtin":
        from .builtin import load_builtin

        return load_builtin(rest, split)
    if sep and name.lower() in _CIFAR:
        return load_cifar_python(rest, name.lower(), split)
    if sep and (m := _IMAGENET16.match(name.lower())):
        return load_imagenet16(rest, split, int(m.group(1)))
    return load_image_folder(spec, cache_dir=cache_dir)


# ----------------------------------------------------------------------------- NB201 split, normalisation

class Split(NamedTuple):
    """Sorted int64 train / valid indices into an ImageSet, and a JSON-able description for run records."""
    train: np.ndarray
    valid: np.ndarray
    info: dict


def _indices_digest(train: np.ndarray, valid: np.ndarray) -> str:
    return hashlib.sha256(train.astype("<i8").tobytes() + b"|" + valid.astype("<i8").tobytes()).hexdigest()


def _read_split_file(file: Path, n: int, keys: tuple[str, str] = ("train", "valid"),
                     kind: str = "split") -> tuple[np.ndarray, np.ndarray]:
    """Parse one of NB201's split files, JSON ``{KEY: ["int", ["0", ...]], ...}`` with two disjoint index lists
    ``keys`` into ``n`` images: ``cifar-split.txt`` (``train``, ``valid``) or ``cifar100-test-split.txt`` and
    ``imagenet-16-120-test-split.txt`` (``xvalid``, ``xtest``; ``kind = "test-split"``, neither may be empty)."""
    try:
        d = json.loads(Path(file).read_text())
        first, second = (np.array([int(i) for i in d[k][1]], dtype=np.int64) for k in keys)
    except (OSError, ValueError, KeyError, IndexError, TypeError) as exc:
        raise DataError(f"{file}: not an NB201 {kind} file with {' and '.join(keys)} ({exc!r})") from exc
    for k, idx in zip(keys, (first, second)):
        if kind == "test-split" and len(idx) == 0:
            raise DataError(f"{file}: {k} is empty")
        if len(idx) and (idx.min() < 0 or idx.max() >= n):
            raise DataError(f"{file}: {k} index out of range [0, {n})")
        if len(np.unique(idx)) != len(idx):
            raise DataError(f"{file}: {k} indices repeat")
    if np.intersect1d(first, second).size:
        raise DataError(f"{file}: {keys[0]} and {keys[1]} indices overlap")
    return np.sort(first), np.sort(second)


def _stratified(labels: np.ndarray, seed: int, valid_fraction: float) -> tuple[np.ndarray, np.ndarray]:
    """Per class, a seeded permutation's first round(n_c * valid_fraction) go to valid, the rest to train."""
    rng = np.random.default_rng(seed)
    perms = [rng.permutation(np.flatnonzero(labels == c)) for c in np.unique(labels)]  # fixed class order
    cuts = [int(round(len(p) * valid_fraction)) for p in perms]
    return (np.sort(np.concatenate([p[k:] for p, k in zip(perms, cuts)])),
            np.sort(np.concatenate([p[:k] for p, k in zip(perms, cuts)])))


def nb201_split(imageset: ImageSet, split_file: str | os.PathLike | None = None, seed: int = 0,
                valid_fraction: float = 0.5, original_order: bool = False) -> Split:
    """NB201's cifar10-valid protocol split of a training set into (train, valid) index arrays.

    A dataset that fixes its own split (:attr:`ImageSet.split`, e.g. the built-in mini-benchmark, whose
    renders of one source image must stay on one side) uses it. With ``split_file`` the official indices are used; they refer to the original 50,000-image CIFAR
    order, so the caller must declare ``original_order=True`` (true for the official pickles, false for
    the JPEG zips, which lose the cross-class order). Without it: a seeded class-stratified split.
    """
    n = len(imageset)
    if split_file is None and imageset.split is not None:
        train, valid = (np.sort(np.asarray(i, dtype=np.int64)) for i in imageset.split)
        info = {"kind": "dataset", "source": imageset.source, "seed": None}
    elif split_file is not None:
        if not original_order or n != NB201_TRAIN_SIZE:
            raise DataError(
                f"the NB201 split file indexes the original {NB201_TRAIN_SIZE}-image CIFAR training order; this set "
                f"({imageset.source}, {n} images, original_order={original_order}) does not have it. "
                f"Use split_file=None for a seeded class-stratified split")
        train, valid = _read_split_file(Path(split_file), n)
        info = {"kind": "nb201-file", "file": str(split_file), "seed": None}
    else:
        if not 0.0 < valid_fraction < 1.0:
            raise DataError(f"valid_fraction must be in (0, 1), got {valid_fraction}")
        train, valid = _stratified(imageset.labels, seed, valid_fraction)
        info = {"kind": "stratified", "seed": int(seed), "valid_fraction": float(valid_fraction)}
    info.update(n_train=int(len(train)), n_valid=int(len(valid)), sha256_of_indices=_indices_digest(train, valid))
    return Split(train, valid, info)


def nb201_test_split(train: ImageSet, test: ImageSet, split_file: str | os.PathLike | None = None, seed: int = 0,
                     original_order: bool = False) -> Split:
    """NB201's CIFAR-100 / ImageNet16-120 search protocol: train on the whole training set; the held-out images
    (``x-valid``) are one half of the test set, the other half (``x-test``) is NB201's test split. ``Split.train``
    indexes ``train``, ``Split.valid`` indexes ``test`` (xautodl's ``get_nas_search_loaders``).

    With ``split_file`` (``cifar100-test-split.txt``, ``imagenet-16-120-test-split.txt``) its ``xvalid`` indices,
    which refer to the official test-set order (``original_order=True``: the official pickles); without it a
    seeded class-stratified half of the test set. ``info`` records both halves' sizes and the digest of the
    indices, as :func:`nb201_split` does."""
    if train.classes != test.classes:
        raise DataError(f"the training set ({train.source}) and the test set ({test.source}) have different classes")
    n = len(test)
    if split_file is not None:
        if not original_order:
            raise DataError(f"the NB201 test-split file indexes the official test-set order; this set ({test.source}) "
                            "is not declared to have it ([data] original_order = true for the official files)")
        xvalid, xtest = _read_split_file(Path(split_file), n, ("xvalid", "xtest"), "test-split")
        info = {"kind": "nb201-test-split-file", "file": str(split_file), "seed": None}
    else:
        xtest, xvalid = _stratified(test.labels, seed, 0.5)
        info = {"kind": "stratified-test-half", "seed": int(seed), "valid_fraction": 0.5}
    train_idx = np.arange(len(train), dtype=np.int64)
    info.update(holdout="test", n_train=int(len(train_idx)), n_valid=int(len(xvalid)), n_xtest=int(len(xtest)),
                sha256_of_indices=_indices_digest(train_idx, xvalid),
                sha256_of_xtest=hashlib.sha256(xtest.astype("<i8").tobytes()).hexdigest())
    return Split(train_idx, xvalid, info)


def augment_padding(name: str) -> int:
    """NB201's random-crop padding for a dataset: 2 for ImageNet16 (16x16 images), 4 for CIFAR (xautodl's
    ``get_datasets``)."""
    return 2 if name.lower().startswith("imagenet16") else 4


def normalization(name: str) -> tuple[tuple[float, float, float], tuple[float, float, float]]:
    """NB201's per-channel (mean, std) on the [0, 1] scale for cifar10 (also cifar10-valid), cifar100, imagenet16;
    a built-in dataset's own constants (:data:`harness.builtin.NORMALIZATION`)."""
    from .builtin import NORMALIZATION as BUILTIN

    if name in BUILTIN:
        return BUILTIN[name]
    key = name.lower().replace("_", "-")
    key = "imagenet16" if key.startswith("imagenet16") else key.removesuffix("-valid")
    if key not in _NORMALIZATION:
        raise DataError(f"no normalisation constants for {name!r}; known: cifar10(-valid), cifar100, imagenet16-120")
    return tuple(_NORMALIZATION[key][0]), tuple(_NORMALIZATION[key][1])


# ----------------------------------------------------------------------------- on-device batching

def crop_flip(padded: torch.Tensor, dy: torch.Tensor, dx: torch.Tensor, flip: torch.Tensor,
              size: tuple[int, int]) -> torch.Tensor:
    """Per-sample crop (and optional horizontal flip) of a padded batch in one gather.

    padded: (B, C, Hp, Wp); dy, dx: int64 (B,) top-left offsets; flip: bool (B,); size: (H, W).
    Returns (B, C, H, W) with out[b, :, i, j] = padded[b, :, dy+i, dx+(W-1-j if flip else j)], i.e. the
    crop flipped afterwards, as torchvision's RandomCrop then RandomHorizontalFlip.
    """
    (b, c, hp, wp), (h, w) = padded.shape, size
    ar_w = torch.arange(w, device=padded.device)
    rows = dy[:, None] + torch.arange(h, device=padded.device)  # (B, H)
    cols = dx[:, None] + torch.where(flip[:, None], w - 1 - ar_w, ar_w)  # (B, W), reversed when flipped
    flat = (rows[:, :, None] * wp + cols[:, None, :]).reshape(b, 1, h * w).expand(b, c, h * w)
    return padded.reshape(b, c, hp * wp).gather(2, flat).reshape(b, c, h, w)


class DeviceBatches:
    """Mini-batches of one image subset that lives on the device as a normalised float tensor.

    The subset is converted and moved once; ``epoch()`` then shuffles with ``torch.randperm`` and (with
    ``augment``) applies NB201's RandomCrop(32, padding=4) + RandomHorizontalFlip on whole batches.
    Padding uses the *normalised value of black*, (0 - mean) / std per channel, because torchvision pads the
    raw image with 0 before normalising; padding the normalised tensor with 0 would instead pad with the
    mean colour. All randomness comes from ``generator``, which must live on ``device``.
    """

    def __init__(self, data: ImageSet | np.ndarray, labels: np.ndarray | None = None,
                 indices: np.ndarray | None = None, *, device: str | torch.device = "cpu", batch_size: int = 256,
                 mean: Sequence[float], std: Sequence[float], augment: bool = False, pad: int = 4,
                 resolution: int | None = None, generator: torch.Generator | None = None, drop_last: bool = False,
                 channels_last: bool = False, dtype: torch.dtype = torch.float32, seed: int = 0) -> None:
        images, labels = (data.images, data.labels) if isinstance(data, ImageSet) else (data, labels)
        if labels is None or images.ndim != 4 or images.dtype != np.uint8 or len(labels) != len(images):
            raise DataError("DeviceBatches needs uint8 (N, H, W, 3) images with N labels")
        if indices is not None:
            images, labels = images[np.asarray(indices)], np.asarray(labels)[np.asarray(indices)]
        self.device = torch.device(device)
        self.generator = generator if generator is not None else torch.Generator(self.device).manual_seed(seed)
        if self.generator.device.type != self.device.type:
            raise DataError(f"generator is on {self.generator.device} but the data on {self.device}; "
                            f"create it with torch.Generator(device)")
        self.batch_size, self.drop_last, self.augment, self.pad = int(batch_size), drop_last, augment, int(pad)
        self.channels_last, self.n = channels_last, len(labels)
        if len(self) == 0:
            raise DataError(f"{self.n} images give no batch of {batch_size} (drop_last={drop_last})")
        self.labels = torch.as_tensor(np.asarray(labels, dtype=np.int64)).to(self.device)
        self.mean = torch.tensor(mean, dtype=torch.float32, device=self.device).view(1, 3, 1, 1)
        self.std = torch.tensor(std, dtype=torch.float32, device=self.device).view(1, 3, 1, 1)
        self.black = (-self.mean / self.std).to(dtype)  # normalised value of a 0 pixel, (1, 3, 1, 1)
        self._x = self._to_device(images, resolution, dtype, self.pad if augment else 0)

    def _to_device(self, images: np.ndarray, resolution: int | None, dtype: torch.dtype, p: int) -> torch.Tensor:
        """uint8 (N, H, W, 3) host array -> normalised (N, 3, r+2p, r+2p) device tensor, border = black.

        Stored padded once when augmenting, so a batch costs only one gather; filled chunk by chunk
        to keep peak memory near one float copy.
        """
        n, h, w = images.shape[:3]
        if resolution is not None and (resolution > min(h, w) or h != w):
            raise DataError(f"resolution {resolution} needs square images of at least that size, got {h}x{w}")
        self.size = (resolution, resolution) if resolution is not None else (h, w)
        out = self.black.expand(n, 3, self.size[0] + 2 * p, self.size[1] + 2 * p).clone()
        u8 = torch.from_numpy(np.ascontiguousarray(images)).to(self.device)  # the one host->device copy (uint8)
        for start in range(0, n, 8192):
            x = u8[start:start + 8192].permute(0, 3, 1, 2).float().div_(255)
            if self.size != (h, w):
                x = F.interpolate(x, size=self.size, mode="area")  # linear, so it commutes with normalising
            out[start:start + 8192, :, p:p + self.size[0], p:p + self.size[1]] = (x - self.mean) / self.std
        return out

    def __len__(self) -> int:  # batches per epoch
        return self.n // self.batch_size if self.drop_last else math.ceil(self.n / self.batch_size)

    @property
    def images(self) -> torch.Tensor:
        """The un-augmented normalised subset, (N, 3, H, W) (a view when stored padded)."""
        p = self.pad if self.augment else 0
        return self._x[:, :, p:p + self.size[0], p:p + self.size[1]] if p else self._x

    def _out(self, x: torch.Tensor) -> torch.Tensor:
        return x.contiguous(memory_format=torch.channels_last if self.channels_last else torch.contiguous_format)

    def _augment(self, idx: torch.Tensor) -> torch.Tensor:
        """Random crop + flip of samples ``idx`` with offsets drawn on the device (no host sync)."""
        b, g = idx.numel(), self.generator
        dy, dx = torch.randint(0, 2 * self.pad + 1, (2, b), generator=g, device=self.device)  # offsets in [0, 2p]
        flip = torch.rand(b, generator=g, device=self.device) < 0.5
        return crop_flip(self._x[idx], dy, dx, flip, self.size)

    def batch(self, idx: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """The (augmented, when ``augment``) batch of samples ``idx``."""
        return self._out(self._augment(idx) if self.augment else self._x[idx]), self.labels[idx]

    def epoch(self) -> Iterator[tuple[torch.Tensor, torch.Tensor]]:
        """One shuffled pass: yields (x (B, 3, H, W) float, y (B,) int64), each sample at most once."""
        perm = torch.randperm(self.n, generator=self.generator, device=self.device)
        for idx in perm.split(self.batch_size)[:len(self)]:  # drop_last: len(self) omits the short tail
            yield self.batch(idx)

    def batches(self) -> "BatchStream":
        """Endless stream of training batches, epoch after epoch (for step-based training); resumable."""
        return BatchStream(self)

    def iter_fixed(self, n_batches: int | None = None) -> Iterator[tuple[torch.Tensor, torch.Tensor]]:
        """Un-augmented batches in stored order (evaluation, BN recalibration); all of them if n_batches is None.

        The last partial batch is included regardless of ``drop_last``, so evaluation sees every sample.
        """
        total = math.ceil(self.n / self.batch_size)
        for i in range(total if n_batches is None else min(n_batches, total)):
            s = slice(i * self.batch_size, (i + 1) * self.batch_size)
            yield self._out(self.images[s]), self.labels[s]


class BatchStream:
    """Epoch after epoch of :meth:`DeviceBatches.epoch`, drawing the same random numbers in the same order, with
    a ``state_dict`` that holds the epoch's order, the position in it and the generator: a run resumed from
    it mid-epoch sees exactly the batches an uninterrupted run would."""

    def __init__(self, source: DeviceBatches) -> None:
        self.source, self.perm, self.pos = source, None, 0

    def __iter__(self) -> "BatchStream":
        return self

    def __next__(self) -> tuple[torch.Tensor, torch.Tensor]:
        s = self.source
        if self.perm is None or self.pos >= len(s):
            self.perm, self.pos = torch.randperm(s.n, generator=s.generator, device=s.device), 0
        idx = self.perm[self.pos * s.batch_size:(self.pos + 1) * s.batch_size]
        self.pos += 1
        return s.batch(idx)

    def state_dict(self) -> dict:
        return {"perm": None if self.perm is None else self.perm.cpu(), "pos": self.pos,
                "generator": self.source.generator.get_state()}

    def load_state_dict(self, state: dict) -> None:
        s = self.source
        self.perm = None if state["perm"] is None else state["perm"].to(s.device)
        self.pos = int(state["pos"])
        s.generator.set_state(state["generator"].to(s.generator.get_state().device))
