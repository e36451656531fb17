"""Tests for harness.data: loaders, cache, CIFAR pickles, NB201 split, on-device batching."""
from __future__ import annotations

import json
import pickle
import zipfile
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from harness import data as D
from harness.data import DataError, DeviceBatches, ImageSet

SHARED = Path(__file__).resolve().parents[1].parent / "shared" / "data"
SAMPLES = SHARED / "samples"
SPLIT_FILE = SHARED / "nb201" / "sources" / "nb201_cifar-split__nwot.txt"
TRAIN_ZIP = SHARED / "cifar10" / "cifar10-train-jpeg.zip"
CIFAR10_MEAN, CIFAR10_STD = D.normalization("cifar10")


def _img(seed: int, h: int = 6, w: int = 5) -> np.ndarray:
    return np.random.default_rng(seed).integers(0, 256, (h, w, 3), dtype=np.uint8)


def _write_tree(root: Path, classes=("dog", "cat"), per_class=3, fmt="png", top: str | None = None) -> dict:
    """Write <top>/<class>/<i>.<fmt>; return {relative path: pixels}."""
    written = {}
    for ci, c in enumerate(classes):
        for i in range(per_class):
            rel = Path(*([top] if top else []), c, f"{i:02d}.{fmt}")
            (root / rel).parent.mkdir(parents=True, exist_ok=True)
            arr = _img(10 * ci + i)
            Image.fromarray(arr).save(root / rel, **({"quality": 95} if fmt == "jpg" else {}))
            written[rel.as_posix()] = arr
    return written


def _zip_dir(src: Path, dst: Path) -> Path:
    with zipfile.ZipFile(dst, "w") as zf:
        for p in sorted(src.rglob("*")):
            if p.is_file():
                zf.write(p, p.relative_to(src).as_posix())
    return dst


# ----------------------------------------------------------------------------- folder / zip loader

def test_folder_png_exact_pixels_and_order(tmp_path):
    written = _write_tree(tmp_path / "src")
    s = D.load_image_folder(tmp_path / "src", cache_dir=tmp_path / "cache")
    assert s.classes == ["cat", "dog"]  # sorted, not insertion order
    assert s.images.shape == (6, 6, 5, 3) and s.images.dtype == np.uint8
    np.testing.assert_array_equal(s.labels, [0, 0, 0, 1, 1, 1])
    np.testing.assert_array_equal(s.images[0], written["cat/00.png"])
    np.testing.assert_array_equal(s.images[5], written["dog/02.png"])


def test_zip_with_top_folder_png_and_jpeg(tmp_path):
    written = _write_tree(tmp_path / "src", top="train")
    s = D.load_image_folder(_zip_dir(tmp_path / "src", tmp_path / "a.zip"), cache_dir=tmp_path / "c")
    assert s.classes == ["cat", "dog"]
    np.testing.assert_array_equal(s.images[3], written["train/dog/00.png"])
    _write_tree(tmp_path / "j", fmt="jpg")
    sj = D.load_image_folder(_zip_dir(tmp_path / "j", tmp_path / "j.zip"), cache_dir=tmp_path / "c")
    assert sj.images.shape == (6, 6, 5, 3) and sj.classes == ["cat", "dog"]


def test_mixed_sizes_error_names_file(tmp_path):
    _write_tree(tmp_path / "src")
    Image.fromarray(_img(0, 7, 7)).save(tmp_path / "src" / "dog" / "zz.png")
    with pytest.raises(DataError, match="dog/zz.png"):
        D.load_image_folder(tmp_path / "src", use_cache=False)


def test_bad_layout_and_missing_path(tmp_path):
    (tmp_path / "flat").mkdir()
    Image.fromarray(_img(0)).save(tmp_path / "flat" / "a.png")
    with pytest.raises(DataError, match="<class>"):
        D.load_image_folder(tmp_path / "flat", use_cache=False)
    with pytest.raises(DataError):
        D.load_image_folder(tmp_path / "nope")


def test_cache_hit_and_corrupt_cache_rebuilt(tmp_path, monkeypatch):
    _write_tree(tmp_path / "src")
    monkeypatch.setenv("NB201_HARNESS_CACHE", str(tmp_path / "envcache"))
    first = D.load_image_folder(tmp_path / "src")
    (cache_file,) = (tmp_path / "envcache").glob("*.npz")
    monkeypatch.setattr(D, "_decode_all", lambda *a: pytest.fail("cache not used"))
    hit = D.load_image_folder(tmp_path / "src")
    np.testing.assert_array_equal(hit.images, first.images)
    np.testing.assert_array_equal(hit.labels, first.labels)
    assert hit.classes == first.classes and hit.source == first.source
    monkeypatch.undo()
    cache_file.write_bytes(b"not an npz")
    with pytest.warns(UserWarning, match="rebuilding"):
        rebuilt = D.load_image_folder(tmp_path / "src", cache_dir=cache_file.parent)
    np.testing.assert_array_equal(rebuilt.images, first.images)
    assert D._read_cache(cache_file) is not None  # rewritten intact
    assert not list(cache_file.parent.glob("*.tmp"))


@pytest.mark.shared_data
@pytest.mark.skipif(not SAMPLES.is_dir(), reason="shared samples absent")
def test_shared_sample_pngs(tmp_path):
    root = tmp_path / "tree"
    for p in sorted(SAMPLES.glob("cifar10_*.png")):  # cifar10_{pos}_{label}.png
        dst = root / p.stem.split("_")[2] / p.name
        dst.parent.mkdir(parents=True, exist_ok=True)
        dst.symlink_to(p)
    s = D.load_image_folder(root, use_cache=False)
    assert s.images.shape == (20, 32, 32, 3)
    first = np.asarray(Image.open(next(SAMPLES.glob("cifar10_00_*.png"))))
    k = s.classes.index(next(SAMPLES.glob("cifar10_00_*.png")).stem.split("_")[2])
    assert any(np.array_equal(first, im) for im in s.images[s.labels == k])  # lossless round trip
    assert D._decode(next(SAMPLES.glob("cifar100_*.png")), "x").shape == (32, 32, 3)
    assert D._decode(next(SAMPLES.glob("mnist_*.png")), "x").shape == (28, 28, 3)  # grayscale -> RGB
    imnet = D._decode(next(SAMPLES.glob("imagenet_*.jpg")), "x")
    assert imnet.ndim == 3 and imnet.shape[2] == 3


# ----------------------------------------------------------------------------- CIFAR python format

def _fake_cifar10(root: Path, n: int = 4) -> np.ndarray:
    base = root / "cifar-10-batches-py"
    base.mkdir(parents=True)
    hwc = np.random.default_rng(0).integers(0, 256, (n, 32, 32, 3), dtype=np.uint8)
    flat = hwc.transpose(0, 3, 1, 2).reshape(n, 3072)  # official layout: all R, then G, then B
    for i, name in enumerate([f"data_batch_{j}" for j in range(1, 6)] + ["test_batch"]):
        with open(base / name, "wb") as f:
            pickle.dump({b"data": flat, b"labels": [(i + k) % 10 for k in range(n)]}, f)
    with open(base / "batches.meta", "wb") as f:
        pickle.dump({b"label_names": [f"c{k}".encode() for k in range(10)]}, f)
    return hwc


def test_cifar_python_layout(tmp_path):
    hwc = _fake_cifar10(tmp_path)
    s = D.load_dataset(f"cifar10:{tmp_path}", "train")
    assert s.images.shape == (20, 32, 32, 3) and s.classes[3] == "c3"
    np.testing.assert_array_equal(s.images[:4], hwc)
    assert s.images[0, 0, 1, 0] == hwc[0, 0, 1, 0]  # R of pixel (0,1) = flat[1]
    np.testing.assert_array_equal(s.labels[4:8], [1, 2, 3, 4])
    t = D.load_cifar_python(tmp_path / "cifar-10-batches-py", "cifar10", "test")
    assert len(t) == 4 and t.labels[0] == 5


def test_cifar100_fine_labels(tmp_path):
    base = tmp_path / "cifar-100-python"
    base.mkdir()
    with open(base / "train", "wb") as f:
        pickle.dump({b"data": np.zeros((2, 3072), np.uint8), b"fine_labels": [7, 99], b"coarse_labels": [0, 1]}, f)
    with open(base / "meta", "wb") as f:
        pickle.dump({b"fine_label_names": [f"f{k}".encode() for k in range(100)]}, f)
    s = D.load_dataset(f"cifar100:{tmp_path}", "train")
    np.testing.assert_array_equal(s.labels, [7, 99])
    assert len(s.classes) == 100


def test_missing_cifar_without_torchvision(tmp_path, monkeypatch):
    import builtins
    real_import = builtins.__import__

    def no_tv(name, *a, **k):
        if name.startswith("torchvision"):
            raise ImportError("no torchvision")
        return real_import(name, *a, **k)

    monkeypatch.setattr(builtins, "__import__", no_tv)
    with pytest.raises(DataError) as e:
        D.load_cifar_python(tmp_path, "cifar10", "train")
    msg = str(e.value)
    assert "cifar-10-batches-py" in msg and "nb201-harness[torchvision]" in msg and "zip" in msg


# ----------------------------------------------------------------------------- NB201 split

def _set(labels) -> ImageSet:
    labels = np.asarray(labels, dtype=np.int64)
    return ImageSet(np.zeros((len(labels), 2, 2, 3), np.uint8), labels, [str(c) for c in range(10)], "fake")


def test_stratified_split():
    s = _set(np.repeat(np.arange(10), 20))
    tr, va, info = D.nb201_split(s, seed=3)
    assert np.intersect1d(tr, va).size == 0
    np.testing.assert_array_equal(np.sort(np.concatenate([tr, va])), np.arange(200))
    assert all((s.labels[va] == c).sum() == 10 == (s.labels[tr] == c).sum() for c in range(10))
    tr2, va2, info2 = D.nb201_split(s, seed=3)
    np.testing.assert_array_equal(va, va2)
    assert info2 == info and info["kind"] == "stratified" and info["n_valid"] == 100
    _, va3, info3 = D.nb201_split(s, seed=4)
    assert not np.array_equal(va, va3) and info3["sha256_of_indices"] != info["sha256_of_indices"]
    json.dumps(info)


def _split_file(path: Path, train, valid) -> Path:
    path.write_text(json.dumps({"train": ["int", [str(i) for i in train]], "valid": ["int", [str(i) for i in valid]]}))
    return path


def test_split_file_fake(tmp_path, monkeypatch):
    monkeypatch.setattr(D, "NB201_TRAIN_SIZE", 6)
    s = _set([0, 1, 2, 0, 1, 2])
    tr, va, info = D.nb201_split(s, _split_file(tmp_path / "s.txt", [5, 0, 2], [1, 3, 4]), original_order=True)
    np.testing.assert_array_equal(tr, [0, 2, 5])
    assert info["kind"] == "nb201-file" and info["n_train"] == 3
    with pytest.raises(DataError, match="original"):
        D.nb201_split(s, tmp_path / "s.txt", original_order=False)
    with pytest.raises(DataError, match="overlap"):
        D.nb201_split(s, _split_file(tmp_path / "o.txt", [0, 1], [1, 2]), original_order=True)
    with pytest.raises(DataError, match="range"):
        D.nb201_split(s, _split_file(tmp_path / "r.txt", [0, 6], [1]), original_order=True)


@pytest.mark.shared_data
@pytest.mark.skipif(not SPLIT_FILE.is_file(), reason="shared split file absent")
def test_real_split_file():
    s = ImageSet(np.zeros((50_000, 1, 1, 3), np.uint8), np.zeros(50_000, np.int64), ["a"], "fake")
    tr, va, info = D.nb201_split(s, SPLIT_FILE, original_order=True)
    assert len(tr) == len(va) == 25_000 and np.intersect1d(tr, va).size == 0
    assert info["n_train"] == 25_000 and tr[:3].tolist() == [0, 5, 7]
    np.testing.assert_array_equal(np.sort(np.concatenate([tr, va])), np.arange(50_000))


def test_normalization():
    m, sd = D.normalization("cifar10-valid")
    assert m == pytest.approx((125.3 / 255, 123.0 / 255, 113.9 / 255)) and sd[2] == pytest.approx(66.7 / 255)
    assert D.normalization("cifar100")[0][0] == pytest.approx(129.3 / 255)
    with pytest.raises(DataError):
        D.normalization("mnist")


# ----------------------------------------------------------------------------- DeviceBatches

def _batches(images, labels=None, **kw) -> DeviceBatches:
    labels = np.arange(len(images), dtype=np.int64) if labels is None else labels
    kw.setdefault("generator", torch.Generator().manual_seed(0))
    return DeviceBatches(images, labels, mean=CIFAR10_MEAN, std=CIFAR10_STD, **kw)


def _raw(n=10, h=8, w=8, seed=0) -> np.ndarray:
    return np.random.default_rng(seed).integers(0, 256, (n, h, w, 3), dtype=np.uint8)


def _norm(u8: np.ndarray) -> np.ndarray:
    """Reference (x/255 - mean)/std, (N, 3, H, W)."""
    x = u8.astype(np.float64).transpose(0, 3, 1, 2) / 255
    return (x - np.array(CIFAR10_MEAN)[:, None, None]) / np.array(CIFAR10_STD)[:, None, None]


def test_normalisation_and_identity_without_augment():
    raw = _raw()
    db = _batches(raw, batch_size=4)
    xs, ys = zip(*db.iter_fixed())
    assert [len(y) for y in ys] == [4, 4, 2]
    np.testing.assert_allclose(torch.cat(xs).numpy(), _norm(raw), atol=1e-5)
    x, y = next(db.epoch())  # shuffled but unaugmented: each row is exactly its source image
    np.testing.assert_allclose(x.numpy(), _norm(raw[y.numpy()]), atol=1e-5)


def test_crop_flip_matches_manual_slicing():
    raw = _raw(3, 6, 7)
    padded = np.pad(_norm(raw), ((0, 0), (0, 0), (4, 4), (4, 4)))
    dy, dx, flip = [0, 8, 3], [8, 0, 5], [False, True, True]
    out = D.crop_flip(torch.tensor(padded), torch.tensor(dy), torch.tensor(dx), torch.tensor(flip), (6, 7)).numpy()
    for b in range(3):
        want = padded[b, :, dy[b]:dy[b] + 6, dx[b]:dx[b] + 7]
        np.testing.assert_array_equal(out[b], want[:, :, ::-1] if flip[b] else want)


def test_augment_is_shifted_image_with_black_border():
    raw = _raw(64, 8, 8)
    db = _batches(raw, batch_size=64, augment=True)
    black = -np.array(CIFAR10_MEAN) / np.array(CIFAR10_STD)
    ref = np.pad(_norm(raw) - black[:, None, None], ((0, 0), (0, 0), (4, 4), (4, 4))) + black[:, None, None]
    # torchvision reference semantics: pad the RAW image with 0, then normalise
    assert np.allclose(ref, _norm(np.pad(raw, ((0, 0), (4, 4), (4, 4), (0, 0)))))
    x, y = next(db.epoch())
    seen_offsets, flips = set(), 0
    for xb, i in zip(x.numpy(), y.numpy()):
        crops = {(dy, dx, f): ref[i, :, dy:dy + 8, dx:dx + 8][:, :, ::-1 if f else 1]
                 for dy in range(9) for dx in range(9) for f in (0, 1)}
        matches = [k for k, c in crops.items() if np.allclose(xb, c, atol=1e-5)]
        assert len(matches) >= 1
        seen_offsets.add(matches[0][:2])
        flips += matches[0][2]
    assert len(seen_offsets) > 20 and 10 < flips < 54


def test_epoch_covers_permutation_once_and_drop_last():
    db = _batches(_raw(10), batch_size=3, augment=True)
    assert len(db) == 4
    ys = torch.cat([y for _, y in db.epoch()])
    assert sorted(ys.tolist()) == list(range(10))
    db2 = _batches(_raw(10), batch_size=3, drop_last=True)
    assert len(db2) == 3 and len(set(torch.cat([y for _, y in db2.epoch()]).tolist())) == 9
    stream = db2.batches()
    assert len([next(stream) for _ in range(7)]) == 7  # cycles past one epoch
    assert len(list(db2.iter_fixed(2))) == 2


def test_determinism_given_generator_seed():
    raw = _raw(20)
    run = lambda seed: [(x.clone(), y.clone()) for _ in range(2) for x, y in  # noqa: E731
                        _batches(raw, batch_size=8, augment=True, generator=torch.Generator().manual_seed(seed)).epoch()]
    a, b, c = run(1), run(1), run(2)
    assert all(torch.equal(x1, x2) and torch.equal(y1, y2) for (x1, y1), (x2, y2) in zip(a, b))
    assert not all(torch.equal(y1, y2) for (_, y1), (_, y2) in zip(a, c))


def test_resolution_indices_and_channels_last():
    raw = _raw(6, 8, 8)
    db = _batches(raw, indices=np.array([5, 1]), resolution=4, channels_last=True, batch_size=2)
    x, y = next(db.iter_fixed())
    assert x.shape == (2, 3, 4, 4) and y.tolist() == [5, 1]
    assert x.is_contiguous(memory_format=torch.channels_last)
    want = _norm(raw[[5, 1]]).reshape(2, 3, 4, 2, 4, 2).mean(axis=(3, 5))  # 2x2 area average
    np.testing.assert_allclose(x.numpy(), want, atol=1e-5)
    with pytest.raises(DataError):
        _batches(raw, resolution=16)


def test_generator_device_mismatch():
    if not torch.cuda.is_available():
        pytest.skip("needs CUDA to build a mismatching generator")
    with pytest.raises(DataError, match="generator"):
        _batches(_raw(), device="cuda", generator=torch.Generator().manual_seed(0))


@pytest.mark.gpu
@pytest.mark.skipif(not torch.cuda.is_available(), reason="no CUDA")
def test_cuda_batches_match_cpu_reference():
    raw = _raw(16)
    db = _batches(raw, device="cuda", batch_size=8, augment=True, generator=torch.Generator("cuda").manual_seed(0))
    x, y = next(db.epoch())
    assert x.is_cuda and y.is_cuda and x.shape == (8, 3, 8, 8)
    np.testing.assert_allclose(next(db.iter_fixed())[0].cpu().numpy(), _norm(raw[:8]), atol=1e-5)


# ----------------------------------------------------------------------------- real data

@pytest.mark.shared_data
@pytest.mark.slow
@pytest.mark.skipif(not TRAIN_ZIP.is_file(), reason="shared CIFAR-10 zip absent")
def test_real_train_zip(tmp_path):
    s = D.load_dataset(str(TRAIN_ZIP), "train", cache_dir=tmp_path)
    assert s.images.shape == (50_000, 32, 32, 3)
    assert np.bincount(s.labels).tolist() == [5_000] * 10 and s.classes[0] == "airplane"
    assert abs(s.images[..., 0].mean() / 255 - CIFAR10_MEAN[0]) < 0.01
    tr, va, info = D.nb201_split(s, seed=0)
    assert info["n_train"] == info["n_valid"] == 25_000
