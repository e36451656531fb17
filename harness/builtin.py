"""Built-in datasets that exist offline right after ``pip install``: generated deterministically from data
that a declared dependency ships.

``digitsm`` -- scikit-learn's 1,797 handwritten 8x8 digits blended onto colour-texture crops of the two
photographs scikit-learn ships (``load_sample_images``), in the manner of MNIST-M (Ganin & Lempitsky,
2015: digits over BSDS500 patches, ``|patch - digit|``). Plain 8x8 digits are too easy to separate NB201
architectures (stand-alone accuracy saturates near 99% and the seed-to-seed Kendall tau over
architectures is 0.1-0.4); the textured background makes the task depend on what the cell computes.

Protocol: the source digits are split once (seeded, class-stratified) into train (1/2), valid (1/4) and
test (1/4) groups, and each source digit is rendered on several random backgrounds. Renders of one
digit never straddle two groups, so validation measures generalisation to unseen digits. The ``train``
split of the dataset holds the train and valid renders with that split fixed (:attr:`ImageSet.split`);
``test`` holds the test renders.
"""
from __future__ import annotations

import hashlib
from dataclasses import dataclass
from functools import lru_cache

import numpy as np

from .data import DataError, ImageSet


@dataclass(frozen=True)
class DigitsMSpec:
    seed: int = 20261122
    renders_train: int = 4  # backgrounds per train digit
    renders_eval: int = 12  # backgrounds per valid / test digit (more renders = less evaluation noise)
    photo_stride: int = 4  # photos are subsampled by this before cropping (coarser texture)
    size: int = 8  # image side; the digit fills it


DIGITSM = DigitsMSpec()
BUILTINS = ("digitsm",)
# per-channel (mean, std) on the [0, 1] scale of digitsm's train split, measured by tests/test_builtin.py
NORMALIZATION = {"digitsm": ((0.4156, 0.4050, 0.3982), (0.3392, 0.2837, 0.3038))}


def _load_sklearn():
    try:
        from sklearn.datasets import load_digits, load_sample_images
    except ImportError as exc:  # pragma: no cover - scikit-learn is a declared dependency
        raise DataError("builtin:digitsm needs scikit-learn (pip install scikit-learn)") from exc
    digits = load_digits()
    photos = load_sample_images().images
    return digits.images.astype(np.float32) / 16.0, digits.target.astype(np.int64), photos


def _groups(labels: np.ndarray, rng: np.random.Generator) -> list[np.ndarray]:
    """Class-stratified split of source digits into train (1/2), valid (1/4), test (1/4) index arrays."""
    parts: list[list[np.ndarray]] = [[], [], []]
    for c in range(10):
        idx = rng.permutation(np.flatnonzero(labels == c))
        a, b = len(idx) // 2, len(idx) // 2 + len(idx) // 4
        for part, chunk in zip(parts, (idx[:a], idx[a:b], idx[b:])):
            part.append(chunk)
    return [np.sort(np.concatenate(p)) for p in parts]


def _render(digits: np.ndarray, src: np.ndarray, photos: list[np.ndarray], rng: np.random.Generator,
            spec: DigitsMSpec) -> np.ndarray:
    """uint8 (len(src), S, S, 3): each digit as |texture - digit| over a random photo crop."""
    S = spec.size
    out = np.empty((len(src), S, S, 3), np.uint8)
    which = rng.integers(0, len(photos), len(src))
    for i, (d, p) in enumerate(zip(src, which)):
        photo = photos[p]
        r = rng.integers(0, photo.shape[0] - S + 1)
        c = rng.integers(0, photo.shape[1] - S + 1)
        blended = np.abs(photo[r:r + S, c:c + S] - digits[d][:, :, None])
        out[i] = np.round(blended * 255).astype(np.uint8)
    return out


@lru_cache(maxsize=2)
def _digitsm(spec: DigitsMSpec) -> dict[str, ImageSet]:
    digits, labels, photos = _load_sklearn()
    photos = [ph[::spec.photo_stride, ::spec.photo_stride].astype(np.float32) / 255.0 for ph in photos]
    rng = np.random.default_rng(spec.seed)
    train_g, valid_g, test_g = _groups(labels, rng)
    src_train = np.tile(train_g, spec.renders_train)
    src_valid = np.tile(valid_g, spec.renders_eval)
    src_test = np.tile(test_g, spec.renders_eval)
    images = _render(digits, np.concatenate([src_train, src_valid]), photos, rng, spec)
    test = _render(digits, src_test, photos, rng, spec)
    classes = [str(c) for c in range(10)]
    n_tr = len(src_train)
    split = (np.arange(n_tr), np.arange(n_tr, n_tr + len(src_valid)))
    train_set = ImageSet(images, labels[np.concatenate([src_train, src_valid])], classes,
                         "builtin:digitsm:train", split=split)
    test_set = ImageSet(test, labels[src_test], classes, "builtin:digitsm:test")
    return {"train": train_set, "test": test_set}


def load_builtin(name: str, split: str = "train") -> ImageSet:
    """``name`` in :data:`BUILTINS`; ``split`` = train (with its fixed train/valid split) | test."""
    if name not in BUILTINS:
        raise DataError(f"unknown built-in dataset {name!r}; available: {', '.join(BUILTINS)}")
    if split not in ("train", "test"):
        raise DataError(f"builtin:{name} has splits 'train' and 'test', not {split!r}")
    return _digitsm(DIGITSM)[split]


def digest(imageset: ImageSet) -> str:
    """sha256 of images and labels: pins the generated data so a library change cannot alter it silently."""
    h = hashlib.sha256(imageset.images.tobytes())
    h.update(imageset.labels.astype("<i8").tobytes())
    return h.hexdigest()
