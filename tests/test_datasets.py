"""NB201's three datasets end to end on tiny fake files in the official layouts: CIFAR-100's python pickles,
the 16x16 downsampled-ImageNet pickles (ImageNet16-120), and the test-split files that define x-valid/x-test."""
from __future__ import annotations

import json
import pickle
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from harness import data as D
from harness.config import ConfigError, load_config
from harness.data import DataError
from harness.runner import build_data, run_experiment

ROOT = Path(__file__).resolve().parents[1]
ARCHS = ["|nor_conv_3x3~0|+|nor_conv_3x3~0|avg_pool_3x3~1|+|skip_connect~0|nor_conv_3x3~1|skip_connect~2|",
         "|avg_pool_3x3~0|+|nor_conv_1x1~0|skip_connect~1|+|nor_conv_1x1~0|skip_connect~1|skip_connect~2|",
         "|nor_conv_1x1~0|+|none~0|nor_conv_3x3~1|+|avg_pool_3x3~0|nor_conv_3x3~1|nor_conv_1x1~2|"]


def _image(i: int, size: int) -> np.ndarray:
    """An HWC image that encodes its index ``i`` in its first pixel (R = i % 256, G = i // 256)."""
    img = np.random.default_rng(i).integers(0, 256, (size, size, 3), dtype=np.uint8)
    img[0, 0, 0], img[0, 0, 1] = i % 256, i // 256
    return img


def _index(images: np.ndarray) -> np.ndarray:
    return images[:, 0, 0, 0].astype(int) + 256 * images[:, 0, 0, 1].astype(int)


def _flat(images: np.ndarray) -> np.ndarray:
    return images.transpose(0, 3, 1, 2).reshape(len(images), -1)  # official: all R, then G, then B


def _split_file(path: Path, xvalid, xtest) -> Path:
    path.write_text(json.dumps({"xvalid": ["int", [str(i) for i in xvalid]], "xtest": ["int", [str(i) for i in xtest]]}))
    return path


def fake_cifar100(root: Path, n_train: int = 40, n_test: int = 20) -> None:
    """cifar-100-python/{train,test,meta}, Python-2 style (bytes keys). Test image i has fine label i % 100."""
    base = root / "cifar-100-python"
    base.mkdir(parents=True)
    for name, n, offset in (("train", n_train, 1000), ("test", n_test, 0)):
        imgs = np.stack([_image(offset + i, 32) for i in range(n)])
        with open(base / name, "wb") as f:
            pickle.dump({b"data": _flat(imgs), b"fine_labels": [i % 100 for i in range(n)],
                         b"coarse_labels": [i % 20 for i in range(n)]}, f, protocol=2)
    with open(base / "meta", "wb") as f:
        pickle.dump({b"fine_label_names": [f"f{k}".encode() for k in range(100)]}, f, protocol=2)


def fake_imagenet16(root: Path, per_batch: int = 6, n_val: int = 30) -> dict:
    """ImageNet16/{train_data_batch_1..10, val_data} with labels 1..1000; every third image is labelled above 120
    (NB201 drops it). Returns the indices (file order) of the images kept, per split."""
    base = root / "ImageNet16"
    base.mkdir(parents=True)
    kept: dict = {"train": [], "test": []}
    counter = 0

    def write(name: str, n: int, split: str) -> None:
        nonlocal counter
        imgs, labels = [], []
        for i in range(n):
            label = 121 + (counter // 3) % 800 if counter % 3 == 2 else 120 - counter % 120  # 120 and 121 occur
            imgs.append(_image(counter, 16))
            labels.append(label)
            if label <= 120:
                kept[split].append(counter)
            counter += 1
        with open(base / name, "wb") as f:
            pickle.dump({"data": _flat(np.stack(imgs)), "labels": labels, "mean": np.zeros(768)}, f, protocol=2)

    for b in range(1, 11):
        write(f"train_data_batch_{b}", per_batch, "train")
    write("val_data", n_val, "test")
    return kept


def _gt(tmp_path: Path) -> Path:
    gt = tmp_path / "gt.csv"
    pd.DataFrame({"arch": ARCHS, "cifar100_test_200": [60.0, 50.0, 40.0],
                  "imagenet16_test_200": [40.0, 35.0, 30.0]}).to_csv(gt, index=False)
    return gt


def _tiny(tmp_path: Path, train_path: str, split_file: Path | None) -> list[str]:
    return [f"data.train_path='{train_path}'", f"data.split_file='{split_file or ''}'", "supernet.C=2",
            "supernet.N=1", "train.max_steps=3", "train.batch_size=8", "estimate.archs='list'",
            f"estimate.arch_list={json.dumps(ARCHS)}", "estimate.batch_size=8", f"groundtruth.source='{_gt(tmp_path)}'",
            "metrics.bootstrap=20", "run.device='cpu'", "data.valid_subset=0", "estimate.recalib_batches=1",
            f"data.cache_dir='{tmp_path / 'cache'}'"]


# ----------------------------------------------------------------------------- loaders

def test_imagenet16_keeps_labels_1_to_120_in_file_order_as_nb201(tmp_path):
    kept = fake_imagenet16(tmp_path)
    s = D.load_dataset(f"imagenet16-120:{tmp_path}", "train")
    assert s.images.shape == (len(kept["train"]), 16, 16, 3) and len(s.classes) == 120
    np.testing.assert_array_equal(_index(s.images), kept["train"])  # filtered, order kept across the 10 batches
    np.testing.assert_array_equal(s.labels, [119 - i % 120 for i in kept["train"]])  # label L -> class L - 1
    assert s.labels[0] == 119  # the image labelled 120 is kept; the one labelled 121 (index 2) is not
    i = kept["train"][1]
    np.testing.assert_array_equal(s.images[1], _image(i, 16))  # channel-major rows -> HWC
    t = D.load_imagenet16(tmp_path / "ImageNet16", "test")  # the folder itself also works
    np.testing.assert_array_equal(_index(t.images), kept["test"])


def test_imagenet16_missing_or_malformed_files_are_one_line_errors(tmp_path):
    with pytest.raises(DataError, match="no official ImageNet16 files.*train_data_batch_1"):
        D.load_dataset(f"imagenet16-120:{tmp_path}", "train")
    fake_imagenet16(tmp_path)
    with open(tmp_path / "ImageNet16" / "val_data", "wb") as f:
        pickle.dump({"data": np.zeros((2, 100), np.uint8), "labels": [1, 2]}, f)
    with pytest.raises(DataError, match=r"expected data \(N, 768\)"):
        D.load_dataset(f"imagenet16-120:{tmp_path}", "test")
    with open(tmp_path / "ImageNet16" / "val_data", "wb") as f:
        pickle.dump({"data": np.zeros((2, 768), np.uint8), "labels": [1, 2], "x": Path("a")}, f)  # names a class
    with pytest.raises(ValueError, match="ImageNet16 batch"):
        D.load_dataset(f"imagenet16-120:{tmp_path}", "test")


# ----------------------------------------------------------------------------- test-split protocol

def test_test_split_uses_exactly_nb201s_xvalid(tmp_path):
    fake_cifar100(tmp_path)
    train, test = (D.load_dataset(f"cifar100:{tmp_path}", s) for s in ("train", "test"))
    xvalid, xtest = [13, 2, 7, 0, 19, 5], [1, 3, 4, 6, 8, 9, 10, 11, 12, 14, 15, 16, 17, 18]
    split = D.nb201_test_split(train, test, _split_file(tmp_path / "s.txt", xvalid, xtest), original_order=True)
    np.testing.assert_array_equal(split.train, np.arange(40))
    np.testing.assert_array_equal(split.valid, sorted(xvalid))
    assert split.info["kind"] == "nb201-test-split-file" and split.info["n_xtest"] == len(xtest)
    assert split.info["n_train"] == 40 and split.info["n_valid"] == 6 and len(split.info["sha256_of_indices"]) == 64


@pytest.mark.parametrize("xvalid, xtest, match", [
    ([0, 1], [1, 2], "overlap"), ([0, 20], [1], r"out of range \[0, 20\)"), ([0, 0], [1], "repeat"), ([], [1], "empty")])
def test_bad_test_split_files_are_refused(tmp_path, xvalid, xtest, match):
    fake_cifar100(tmp_path)
    train, test = (D.load_dataset(f"cifar100:{tmp_path}", s) for s in ("train", "test"))
    with pytest.raises(DataError, match=match):
        D.nb201_test_split(train, test, _split_file(tmp_path / "s.txt", xvalid, xtest), original_order=True)
    (tmp_path / "c.txt").write_text(json.dumps({"train": ["int", ["0"]], "valid": ["int", ["1"]]}))  # cifar-split
    with pytest.raises(DataError, match="not an NB201 test-split file"):
        D.nb201_test_split(train, test, tmp_path / "c.txt", original_order=True)
    with pytest.raises(DataError, match="official test-set order"):
        D.nb201_test_split(train, test, _split_file(tmp_path / "s.txt", [0], [1]), original_order=False)


def test_without_a_split_file_half_the_test_set_is_held_out_per_class(tmp_path):
    fake_cifar100(tmp_path, n_test=200)
    train, test = (D.load_dataset(f"cifar100:{tmp_path}", s) for s in ("train", "test"))
    split = D.nb201_test_split(train, test, seed=3)
    assert split.info["kind"] == "stratified-test-half" and len(split.valid) == 100
    assert all((test.labels[split.valid] == c).sum() == 1 for c in range(100))


# ----------------------------------------------------------------------------- the configs end to end

@pytest.mark.parametrize("config, spec", [("nb201-cifar100.toml", "cifar100"), ("nb201-imagenet16.toml", "imagenet16-120"),
                                          ("nb201-cifar100-cpu.toml", "cifar100"),
                                          ("nb201-imagenet16-cpu.toml", "imagenet16-120")])
def test_the_nb201_configs_run_end_to_end_on_official_layouts(tmp_path, config, spec):
    if spec == "cifar100":
        fake_cifar100(tmp_path)
        n_test, size = 20, 32
        xvalid = [3, 17, 8, 11, 0, 5, 19, 2]
    else:
        kept = fake_imagenet16(tmp_path)
        n_test, size = len(kept["test"]), 16
        xvalid = list(range(0, n_test, 2))
    xtest = sorted(set(range(n_test)) - set(xvalid))
    split_file = _split_file(tmp_path / "test-split.txt", xvalid, xtest)
    cfg = load_config(ROOT / "configs" / config, _tiny(tmp_path, f"{spec}:{tmp_path}", split_file))
    assert cfg.data.holdout == "test" and cfg.data.original_order

    data = build_data(cfg, __import__("torch").device("cpu"), seed=0)
    test = D.load_dataset(f"{spec}:{tmp_path}", "test")
    held = np.concatenate([y.numpy() for _, y in data.held_out.iter_fixed()])
    np.testing.assert_array_equal(held, test.labels[sorted(xvalid)])  # exactly NB201's x-valid, in order
    assert data.train.n == len(D.load_dataset(f"{spec}:{tmp_path}", "train"))  # the whole training set
    size = cfg.data.resolution or size
    assert data.train.pad == (2 if spec.startswith("imagenet16") else 4) and data.train.size == (size, size)

    metrics = run_experiment(cfg, tmp_path / "run", progress=False)
    assert metrics["ranking"]["n_archs"] == 3
    split = json.loads((tmp_path / "run" / "split.json").read_text())
    assert split["kind"] == "nb201-test-split-file" and split["n_valid"] == len(xvalid)
    assert split["held_out_source"].endswith(":test")


def test_holdout_test_needs_a_test_set_and_a_known_value(tmp_path):
    folder = tmp_path / "imgs"
    for c in ("a", "b"):
        (folder / c).mkdir(parents=True)
    with pytest.raises(ConfigError, match="holdout = 'sideways'; valid: train, test"):
        load_config(None, [f"data.train_path='{folder}'", "data.holdout='sideways'"])
    with pytest.raises(ConfigError, match="test_path is read only with holdout = 'test'"):
        load_config(None, [f"data.train_path='{folder}'", f"data.test_path='{folder}'"])
    with pytest.raises(ConfigError, match="needs \\[data\\] test_path"):
        load_config(None, [f"data.train_path='{folder}'", "data.holdout='test'"])
    cfg = load_config(None, [f"data.train_path='{folder}'", "data.holdout='test'", f"data.test_path='{folder}'"])
    assert cfg.data.test_path == str(folder)


# ----------------------------------------------------------------------------- NATS-Bench topology files

NATS_SETS = {"cifar10-valid": ["x-valid", "ori-test"], "cifar10": ["ori-test"],
             "cifar100": ["ori-test", "x-valid", "x-test"], "ImageNet16-120": ["ori-test", "x-valid", "x-test"]}


def _trial(dataset: str, seed: int, epochs: int, base: float) -> dict:
    """A ResultsCount state dict as NATS-Bench stores it; accuracy after epoch e on set k: base + e/100 + k (train: + 20)."""
    evals = {f"{name}@{e}": base + e / 100 + k for k, name in enumerate(NATS_SETS[dataset]) for e in range(epochs)}
    return {"name": dataset, "train_acc1es": {e: base + 20 + e / 100 for e in range(epochs)}, "train_acc5es": None,
            "eval_names": NATS_SETS[dataset], "eval_acc1es": evals, "params": np.float64(0.5 + base / 1000),
            "flop": 80.0 + base, "seed": f"{seed:04d}", "epochs": epochs, "net_state_dict": None}


def fake_nats(root: Path, records: dict[int, float], n_meta: int = 300) -> Path:
    """NATS-tss-v1_0-3ffb9-simple/: meta.pickle.pbz2 and one {index:06d}.pickle.pbz2 per entry of ``records``
    (index -> base accuracy); 200-epoch results for seeds 777, 888 (base, base + 1), 12-epoch for seed 111."""
    import bz2
    from collections import OrderedDict

    from harness.space import iter_archs

    base = root / "NATS-tss-v1_0-3ffb9-simple"
    base.mkdir(parents=True)
    names = [a.to_str() for _, a in zip(range(n_meta), iter_archs())]
    with bz2.open(base / "meta.pickle.pbz2", "wb") as f:
        pickle.dump({"meta_archs": names, "total_archs": 15625, "arch2infos": None, "evaluated_indexes": set()}, f)
    for index, acc in records.items():
        record = OrderedDict()
        for hp, seeds in (("12", [111]), ("200", [777, 888])):
            epochs = int(hp)
            results = {(ds, s): _trial(ds, s, epochs, acc + i) for ds in NATS_SETS for i, s in enumerate(seeds)}
            record[hp] = {"arch_index": index, "arch_str": names[index], "all_results": results,
                          "dataset_seed": {ds: seeds for ds in NATS_SETS}, "clear_net_done": True}
        with bz2.open(base / f"{index:06d}.pickle.pbz2", "wb") as f:
            pickle.dump(record, f, protocol=4)
    return base


def test_nats_topology_directory_is_a_ground_truth_source(tmp_path):
    from harness.groundtruth import GTQuery, load_ground_truth

    d = fake_nats(tmp_path, {284: 60.0, 11: 70.0})
    gt = load_ground_truth(d)
    assert [gt.nb201_index(a) for a in gt.archs()] == [11, 284]  # index order
    arch = gt.archs()[0]
    # seed-mean after the last epoch on NB201's set: 200 epochs -> epoch 199; seeds 777 and 888 have base 70, 71
    assert gt.query(arch, GTQuery("cifar10-valid", "valid", 200)) == pytest.approx(70.5 + 1.99)  # x-valid, k=0
    assert gt.query(arch, GTQuery("cifar10-valid", "test", 200)) == pytest.approx(70.5 + 1.99 + 1)  # ori-test
    assert gt.query(arch, GTQuery("cifar100", "valid", 200)) == pytest.approx(70.5 + 1.99 + 1)  # x-valid, k=1
    assert gt.query(arch, GTQuery("ImageNet16-120", "test", 200)) == pytest.approx(70.5 + 1.99 + 2)  # x-test
    assert gt.query(arch, GTQuery("cifar10", "train", 12)) == pytest.approx(70 + 20 + 0.11)  # epoch 11, seed 111
    assert gt.query(arch, GTQuery("cifar100", "test", 12)) == pytest.approx(70 + 0.11 + 2)


def test_gt_export_accepts_a_nats_topology_directory(tmp_path, capsys):
    from harness.cli import main
    from harness.groundtruth import GTQuery, load_ground_truth

    d = fake_nats(tmp_path, {0: 50.0, 11: 70.0, 284: 60.0})
    out = tmp_path / "nats.csv"
    assert main(["gt", "export", "--source", str(d), "--out", str(out)]) == 0
    table, nats = load_ground_truth(out), load_ground_truth(d)
    assert table.archs() == nats.archs() and [table.nb201_index(a) for a in table.archs()] == [0, 11, 284]
    for q in nats.queries():
        np.testing.assert_allclose(table.query_many(table.archs(), q), nats.query_many(nats.archs(), q))
    frame = pd.read_csv(out)
    assert frame["n_seeds_cifar100_200"].tolist() == [2, 2, 2]
    assert frame["cifar10valid_valid_200_seed888"].tolist() == pytest.approx([51 + 1.99, 71 + 1.99, 61 + 1.99])
    assert frame["params_mb_cifar10"].tolist() == pytest.approx([0.55, 0.57, 0.56])
    q = GTQuery("cifar100", "test", 200)
    assert table.query(table.archs()[1], q) == pytest.approx(70.5 + 1.99 + 2)


def test_bad_nats_files_are_one_line_errors(tmp_path):
    import bz2

    from harness.groundtruth import GroundTruthError, load_ground_truth
    from harness.safeload import UnsafeFileError

    d = fake_nats(tmp_path, {11: 70.0})
    (d / "000012.pickle.pbz2").write_bytes(b"not bz2 at all")
    with pytest.raises(GroundTruthError, match="000012.pickle.pbz2 as a NATS-Bench architecture record"):
        load_ground_truth(d)
    with bz2.open(d / "000012.pickle.pbz2", "wb") as f:
        pickle.dump({"12": Path("x")}, f)  # names a class no NATS-Bench file holds
    with pytest.raises(UnsafeFileError, match="refusing to load"):
        load_ground_truth(d)
    with bz2.open(d / "000012.pickle.pbz2", "wb") as f:
        pickle.dump({"12": {}}, f)
    with pytest.raises(GroundTruthError, match="not a NATS-Bench topology record"):
        load_ground_truth(d)
    (d / "000012.pickle.pbz2").unlink()
    with bz2.open(d / "000400.pickle.pbz2", "wb") as f:
        pickle.dump({}, f)
    with pytest.raises(GroundTruthError, match="index 400 but meta.pickle.pbz2 lists 300"):
        load_ground_truth(d)
