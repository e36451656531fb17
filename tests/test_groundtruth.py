"""Tests for harness.groundtruth: query vocabulary, the official .pth reader (on a small fake built with
nas_201_api's own classes), the CSV table (real shared table and in-memory doubles), export and summary."""
from __future__ import annotations

import csv
import math
from collections import OrderedDict
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from harness.groundtruth import (
    GroundTruthError,
    GTQuery,
    OfficialGroundTruth,
    TableGroundTruth,
    all_queries,
    export_table,
    load_ground_truth,
    summarize,
)
from harness.space import Arch

SHARED_CSV = Path(__file__).resolve().parents[1].parent / "shared" / "data" / "nb201" / "nb201_groundtruth.csv"

# ---------------------------------------------------------------------------------------------------
# A fake official file. Every (arch, dataset, setname, hp, seed) gets a distinct accuracy, so a test
# that reads the wrong split, schedule or a single seed gets a different number.
# ---------------------------------------------------------------------------------------------------
FAKE_ARCHS = [
    "|nor_conv_3x3~0|+|nor_conv_3x3~0|avg_pool_3x3~1|+|skip_connect~0|nor_conv_3x3~1|skip_connect~2|",
    "|avg_pool_3x3~0|+|nor_conv_1x1~0|skip_connect~1|+|nor_conv_1x1~0|skip_connect~1|skip_connect~2|",
    "|none~0|+|none~0|none~1|+|none~0|none~1|none~2|",
    "|skip_connect~0|+|none~0|skip_connect~1|+|none~0|none~1|skip_connect~2|",
    "|nor_conv_3x3~0|+|none~0|nor_conv_1x1~1|+|none~0|none~1|nor_conv_1x1~2|",
]
EVAL_SETS = {  # the eval splits the real files record per dataset
    "cifar10-valid": ["x-valid", "ori-test"],
    "cifar10": ["ori-test"],
    "cifar100": ["ori-test", "x-valid", "x-test"],
    "ImageNet16-120": ["ori-test", "x-valid", "x-test"],
}
SET_OFFSET = {"train": 3.0, "x-valid": 1.0, "ori-test": 2.0, "x-test": 0.5}
DS_OFFSET = {"cifar10-valid": 0.0, "cifar10": 4.0, "cifar100": 8.0, "ImageNet16-120": 12.0}
SEED_DELTA = {777: -1.5, 888: 0.25, 999: 2.5}
FULL_ONLY = {"ImageNet16-120"}  # missing from the 12-epoch ('less') records
ARCH_WITHOUT_IMAGENET = 3  # this arch has no ImageNet16-120 record at all


def seeds_for(i: int) -> list[int]:
    return [777, 888, 999] if i % 2 == 0 else [777, 999]  # 3 or 2 seeds, like the real file


def fake_acc(i: int, ds: str, setname: str, epochs: int, seed: int) -> float:
    return 10.0 + 5 * i + SET_OFFSET[setname] + DS_OFFSET[ds] + (20.0 if epochs == 200 else 0.0) + SEED_DELTA[seed]


def expected_mean(i: int, ds: str, setname: str, epochs: int) -> float:
    return float(np.mean([fake_acc(i, ds, setname, epochs, s) for s in seeds_for(i)]))


def _trial(nas, i: int, ds: str, epochs: int, seed: int):
    import torch

    last = epochs - 1
    # earlier epochs hold half the final value: reading any epoch but the last is caught
    train = {e: fake_acc(i, ds, "train", epochs, seed) * (1.0 if e == last else 0.5) for e in range(epochs)}
    rc = nas.ResultsCount(
        ds, OrderedDict(w=torch.ones(2)), train, {e: 1.0 for e in range(epochs)}, 0.1 * (i + 1), 10.0 * (i + 1),
        {"channel": 16, "num_cells": 5, "arch_str": FAKE_ARCHS[i], "class_num": 10}, seed, epochs, [0.01],
    )
    accs, losses, times = {}, {}, {}
    for name in EVAL_SETS[ds]:
        for e in range(epochs):
            accs[f"{name}@{e}"] = fake_acc(i, ds, name, epochs, seed) * (1.0 if e == last else 0.5)
            losses[f"{name}@{e}"], times[f"{name}@{e}"] = 1.0, 0.1
    rc.update_eval(accs, losses, times)
    return rc


def _arch_results(nas, i: int, epochs: int, datasets) -> dict:
    ar = nas.ArchResults(i, FAKE_ARCHS[i])
    for ds in datasets:
        if ds == "ImageNet16-120" and i == ARCH_WITHOUT_IMAGENET:
            continue
        for seed in seeds_for(i):
            ar.update(ds, seed, _trial(nas, i, ds, epochs, seed))
    return ar.state_dict()


def write_fake_official(path: Path, less_datasets=tuple(d for d in EVAL_SETS if d not in FULL_ONLY)) -> Path:
    import nas_201_api as nas
    import torch

    full = list(EVAL_SETS)
    infos = {i: {"less": _arch_results(nas, i, 12, less_datasets), "full": _arch_results(nas, i, 200, full)}
             for i in range(len(FAKE_ARCHS))}
    torch.save({"meta_archs": list(FAKE_ARCHS), "arch2infos": infos,
                "evaluated_indexes": list(range(len(FAKE_ARCHS)))}, path)
    return path


@pytest.fixture(scope="module")
def fake_path(tmp_path_factory) -> Path:
    return write_fake_official(tmp_path_factory.mktemp("nb201") / "NAS-Bench-201-v1_1-096897.pth")


@pytest.fixture(scope="module")
def official(fake_path) -> OfficialGroundTruth:
    return OfficialGroundTruth(fake_path, verbose=False)


# ---------------------------------------------------------------------------------------------------
# GTQuery
# ---------------------------------------------------------------------------------------------------
def test_query_key_round_trip_and_canonical_list():
    q = GTQuery("ImageNet16-120", "valid", 12)
    assert q.key == "imagenet16_valid_12" and q.seeds == "mean"
    assert GTQuery.from_key("cifar10valid_test_200") == GTQuery("cifar10-valid", "test", 200)
    keys = [x.key for x in all_queries()]
    assert len(keys) == 22 and "cifar10_valid_200" not in keys and len(set(keys)) == 22


@pytest.mark.parametrize(
    "args, fragment",
    [
        (("cifar-10", "test", 200), "unknown dataset 'cifar-10'; valid values: cifar10-valid, cifar10, cifar100"),
        (("cifar10", "accuracy", 200), "unknown metric 'accuracy'; valid values: train, valid, test"),
        (("cifar10", "test", 100), "unknown epochs 100; valid epochs for cifar10: 12, 200"),
        (("cifar10", "test", "200"), "unknown epochs '200'"),
        (("cifar10", "test", True), "unknown epochs True"),
        (("cifar10", "test", 200, "random"), "unknown seed policy 'random'; valid values: mean"),
        (("cifar10", "valid", 200), "cifar10 has no validation split"),
    ],
)
def test_query_validation(args, fragment):
    with pytest.raises(GroundTruthError) as info:
        GTQuery(*args)
    assert fragment in str(info.value)
    assert isinstance(info.value, ValueError)


def test_bad_key():
    with pytest.raises(GroundTruthError, match="bad query key 'cifar10_test'"):
        GTQuery.from_key("cifar10_test")


# ---------------------------------------------------------------------------------------------------
# Official file (fake)
# ---------------------------------------------------------------------------------------------------
def test_official_archs_and_queries(official):
    assert [a.to_str() for a in official.archs()] == FAKE_ARCHS
    assert len(official) == 5 and FAKE_ARCHS[2] in official and Arch.from_str(FAKE_ARCHS[4]) in official
    assert "|none~0|+|none~0|none~1|+|none~0|none~1|avg_pool_3x3~2|" not in official
    assert "garbage" not in official
    keys = {q.key for q in official.queries()}
    # 12-epoch: no ImageNet16-120 in 'less'; cifar10 never has a valid split
    expected = {q.key for q in all_queries()} - {"imagenet16_train_12", "imagenet16_valid_12", "imagenet16_test_12"}
    assert keys == expected


@pytest.mark.parametrize(
    "dataset, epochs",
    [(ds, ep) for ds in EVAL_SETS for ep in (12, 200) if not (ep == 12 and ds in FULL_ONLY)],
)
def test_official_every_mapping_is_the_seed_mean(official, dataset, epochs):
    setnames = {
        "cifar10-valid": {"train": "train", "valid": "x-valid", "test": "ori-test"},
        "cifar10": {"train": "train", "test": "ori-test"},
        "cifar100": {"train": "train", "valid": "x-valid", "test": "x-test"},
        "ImageNet16-120": {"train": "train", "valid": "x-valid", "test": "x-test"},
    }[dataset]
    for metric, setname in setnames.items():
        q = GTQuery(dataset, metric, epochs)
        for i, arch in enumerate(FAKE_ARCHS):
            if dataset == "ImageNet16-120" and i == ARCH_WITHOUT_IMAGENET:
                continue
            got = official.query(arch, q)
            assert got == pytest.approx(expected_mean(i, dataset, setname, epochs), abs=1e-9)
            # the mean differs from every single seed, so no single-seed read can pass
            assert all(abs(got - fake_acc(i, dataset, setname, epochs, s)) > 0.1 for s in seeds_for(i))


def test_official_distinguishes_split_and_schedule(official):
    a = FAKE_ARCHS[0]
    valid = official.query(a, GTQuery("cifar10-valid", "valid", 200))
    assert valid == pytest.approx(expected_mean(0, "cifar10-valid", "x-valid", 200))
    assert valid != official.query(a, GTQuery("cifar10-valid", "test", 200))
    assert official.query(a, GTQuery("cifar100", "test", 200)) == pytest.approx(
        expected_mean(0, "cifar100", "x-test", 200))  # x-test, not ori-test (valid+test)
    assert official.query(a, "cifar10_test_12") == pytest.approx(official.query(a, "cifar10_test_200") - 20.0)


def test_official_missing_combinations(official):
    with pytest.raises(GroundTruthError) as info:
        official.query(FAKE_ARCHS[0], GTQuery("ImageNet16-120", "test", 12))
    msg = str(info.value)
    assert "no imagenet16_test_12" in msg and "available queries here:" in msg and "cifar100_test_12" in msg
    with pytest.raises(GroundTruthError, match="no value of imagenet16_test_200 for architecture"):
        official.query(FAKE_ARCHS[ARCH_WITHOUT_IMAGENET], GTQuery("ImageNet16-120", "test", 200))
    with pytest.raises(GroundTruthError, match="for 1 of the requested"):
        official.query_many(FAKE_ARCHS, "imagenet16_test_200")
    values = official.query_many(FAKE_ARCHS, "imagenet16_test_200", allow_missing=True)
    assert np.isnan(values[ARCH_WITHOUT_IMAGENET]) and np.isfinite(np.delete(values, ARCH_WITHOUT_IMAGENET)).all()


def test_official_unknown_arch_and_bad_inputs(official):
    with pytest.raises(GroundTruthError, match=r"is not in .*\(5 architectures\)"):
        official.query("|none~0|+|none~0|none~1|+|none~0|none~1|avg_pool_3x3~2|", "cifar10_test_200")
    with pytest.raises(GroundTruthError, match="unknown op 'conv_7x7'"):
        official.query("|conv_7x7~0|+|none~0|none~1|+|none~0|none~1|none~2|", "cifar10_test_200")
    with pytest.raises(GroundTruthError, match="unknown dataset 'imagenet'"):
        official.query(FAKE_ARCHS[0], GTQuery("imagenet", "test", 200))


def test_official_query_many_order_costs_and_weights_cleared(official):
    q = GTQuery("cifar10", "test", 200)
    order = [FAKE_ARCHS[4], Arch.from_str(FAKE_ARCHS[1]), FAKE_ARCHS[4]]
    got = official.query_many(order, q)
    assert got.dtype == np.float64
    assert got.tolist() == [official.query(a, q) for a in order]
    assert official.nb201_index(FAKE_ARCHS[3]) == 3
    assert official.costs(FAKE_ARCHS[2]) == {"params_mb": pytest.approx(0.3), "flops_mb": pytest.approx(30.0)}
    trials = official.arch_results(FAKE_ARCHS[0], 200).query("cifar10")
    assert sorted(trials) == [777, 888, 999] and all(t.net_state_dict is None for t in trials.values())


def test_v1_0_style_file_only_has_cifar10_valid_at_12_epochs(tmp_path):
    path = write_fake_official(tmp_path / "NAS-Bench-201-v1_0-e61699.pth", less_datasets=("cifar10-valid",))
    gt = OfficialGroundTruth(path, verbose=False)
    twelve = sorted(q.key for q in gt.queries() if q.epochs == 12)
    assert twelve == ["cifar10valid_test_12", "cifar10valid_train_12", "cifar10valid_valid_12"]
    with pytest.raises(GroundTruthError, match="no cifar100_test_12"):
        gt.query(FAKE_ARCHS[0], GTQuery("cifar100", "test", 12))


def test_official_prints_loading_note(fake_path, capsys):
    OfficialGroundTruth(fake_path)
    err = capsys.readouterr().err
    assert "takes minutes" in err and "gt export" in err


def test_official_truncated_file(fake_path, tmp_path):
    cut = tmp_path / "NAS-Bench-201-v1_1-096897.pth"
    data = fake_path.read_bytes()
    cut.write_bytes(data[: len(data) // 2])
    with pytest.raises(GroundTruthError) as info:
        load_ground_truth(cut)
    assert str(cut) in str(info.value) and "truncated or corrupt" in str(info.value)


def test_official_wrong_content(tmp_path):
    import torch

    missing = tmp_path / "missing.pth"
    torch.save({"meta_archs": list(FAKE_ARCHS)}, missing)
    with pytest.raises(GroundTruthError) as info:
        OfficialGroundTruth(missing, verbose=False)
    assert str(missing) in str(info.value) and "missing keys ['arch2infos', 'evaluated_indexes']" in str(info.value)
    not_dict = tmp_path / "list.pth"
    torch.save([1, 2, 3], not_dict)
    with pytest.raises(GroundTruthError, match="expected a dict with keys"):
        OfficialGroundTruth(not_dict, verbose=False)
    bad_record = tmp_path / "record.pth"
    torch.save({"meta_archs": FAKE_ARCHS, "arch2infos": {0: {"full": {}}}, "evaluated_indexes": [0]}, bad_record)
    with pytest.raises(GroundTruthError, match=r"arch2infos\[0\] is not an NB201 record"):
        OfficialGroundTruth(bad_record, verbose=False)
    with pytest.raises(GroundTruthError, match="not found"):
        OfficialGroundTruth(tmp_path / "absent.pth", verbose=False)


def test_export_round_trip(official, tmp_path):
    out = export_table(official, tmp_path / "sub" / "gt.csv")
    assert [p.name for p in out.parent.iterdir()] == ["gt.csv"]  # no temp file left behind
    table = load_ground_truth(out)
    assert isinstance(table, TableGroundTruth)
    assert table.archs() == official.archs() and table.queries() == official.queries()
    for q in official.queries():
        a = official.query_many(official.archs(), q, allow_missing=True)
        b = table.query_many(table.archs(), q, allow_missing=True)
        np.testing.assert_array_equal(a, b)  # exact: floats are written at full precision
    assert [table.nb201_index(a) for a in FAKE_ARCHS] == [0, 1, 2, 3, 4]
    extra = table.extra_columns()
    np.testing.assert_allclose(extra["params_mb_cifar10"], [0.1, 0.2, 0.3, 0.4, 0.5])
    assert extra["n_seeds_imagenet16_200"].tolist() == [3, 2, 3, 0, 3]
    assert "n_seeds_imagenet16_12" not in extra
    assert summarize(table)["best"] == summarize(official)["best"]
    frame = pd.read_csv(out)
    assert frame["isomorphism_class"].tolist() == [Arch.from_str(a).canonical() for a in FAKE_ARCHS]


def test_export_is_atomic(official, tmp_path, monkeypatch):
    out = tmp_path / "gt.csv"
    out.write_text("previous content\n")

    def boom(self, *args, **kwargs):
        raise OSError("disk full")

    monkeypatch.setattr(pd.DataFrame, "to_csv", boom)
    with pytest.raises(OSError, match="disk full"):
        export_table(official, out)
    assert out.read_text() == "previous content\n"
    assert [p.name for p in tmp_path.iterdir()] == ["gt.csv"]


def test_summarize_fake(official):
    s = summarize(official)
    assert s["num_archs"] == 5 and s["num_isomorphism_classes"] == 5
    best = s["best"]["cifar100_test_200"]
    assert best == {"arch": FAKE_ARCHS[4], "accuracy": pytest.approx(expected_mean(4, "cifar100", "x-test", 200)),
                    "nb201_index": 4}
    assert "imagenet16_test_12" not in s["best"]


def test_load_ground_truth_unknown_suffix(tmp_path):
    with pytest.raises(GroundTruthError, match=r"'\.pth' file, a compact '\.csv' table or a NATS-Bench topology"):
        load_ground_truth(tmp_path / "gt.json")


# ---------------------------------------------------------------------------------------------------
# Real shared table
# ---------------------------------------------------------------------------------------------------
@pytest.fixture(scope="module")
def shared_table() -> TableGroundTruth:
    if not SHARED_CSV.is_file():
        pytest.skip(f"shared table absent: {SHARED_CSV}")
    return TableGroundTruth.from_csv(SHARED_CSV)


@pytest.mark.shared_data
def test_shared_table_summary(shared_table):
    s = summarize(shared_table)
    assert s["num_archs"] == 15625 and s["num_isomorphism_classes"] == 6466
    best = s["best"]
    assert best["cifar10_test_200"]["accuracy"] == pytest.approx(94.3733)
    assert best["cifar10_test_200"]["nb201_index"] == 6111  # ties with 13714: first in source order
    assert best["cifar100_test_200"]["accuracy"] == pytest.approx(73.5133)
    assert best["cifar100_test_200"]["nb201_index"] == 9930
    assert best["imagenet16_test_200"]["accuracy"] == pytest.approx(47.3111)
    assert best["imagenet16_test_200"]["nb201_index"] == 857
    assert best["cifar10valid_valid_200"]["accuracy"] == pytest.approx(91.6067)
    q = GTQuery("cifar10", "test", 200)
    tied = [shared_table.nb201_index(a) for a in shared_table.archs() if shared_table.query(a, q) == 94.3733]
    assert tied == [6111, 13714]


@pytest.mark.shared_data
def test_shared_table_rows_match_csv(shared_table):
    with SHARED_CSV.open(newline="") as fh:
        rows = [r for _, r in zip(range(3), csv.DictReader(fh))]
    for row in rows:
        for q in shared_table.queries():
            assert shared_table.query(row["arch"], q) == float(row[q.key])
        assert shared_table.nb201_index(row["arch"]) == int(row["nb201_index"])
    assert shared_table.query(rows[1]["arch"], GTQuery("cifar10", "test", 200)) == 93.66


@pytest.mark.shared_data
def test_shared_table_unavailable_query_lists_available(shared_table):
    with pytest.raises(GroundTruthError) as info:
        shared_table.query(shared_table.archs()[0], GTQuery("cifar100", "valid", 200))
    msg = str(info.value)
    assert "no cifar100_valid_200" in msg and "available queries here:" in msg
    assert "cifar100_valid_12" in msg and "cifar100_test_200" in msg and "imagenet16_valid_12" in msg


@pytest.mark.shared_data
def test_shared_table_export_round_trip(shared_table, tmp_path):
    again = TableGroundTruth.from_csv(export_table(shared_table, tmp_path / "copy.csv"))
    assert again.archs() == shared_table.archs() and again.queries() == shared_table.queries()
    for q in shared_table.queries():
        np.testing.assert_array_equal(again.query_many(again.archs(), q), shared_table.query_many(again.archs(), q))
    np.testing.assert_array_equal(again.extra_columns()["params_mb_cifar10"],
                                  shared_table.extra_columns()["params_mb_cifar10"])
    assert again.nb201_index(again.archs()[-1]) == 15624


# ---------------------------------------------------------------------------------------------------
# Table validation (in-memory doubles and small files)
# ---------------------------------------------------------------------------------------------------
def small_frame() -> pd.DataFrame:
    return pd.DataFrame({"arch": FAKE_ARCHS[:3], "cifar10_test_200": [90.0, 80.5, 10.0],
                         "cifar100_valid_12": [40.0, np.nan, 1.0], "notes": ["a", "b", "c"]})


def test_table_from_frame_queries_and_missing_values():
    gt = TableGroundTruth(small_frame())
    assert [q.key for q in gt.queries()] == ["cifar10_test_200", "cifar100_valid_12"]
    assert gt.query(FAKE_ARCHS[1], "cifar10_test_200") == 80.5
    assert gt.nb201_index(FAKE_ARCHS[1]) is None and "notes" in gt.frame.columns
    with pytest.raises(GroundTruthError, match="has no value of cifar100_valid_12 for architecture"):
        gt.query(FAKE_ARCHS[1], GTQuery("cifar100", "valid", 12))
    with pytest.raises(GroundTruthError, match=r"not in <DataFrame> \(3 architectures\)"):
        gt.query(FAKE_ARCHS[4], "cifar10_test_200")


def _write(tmp_path: Path, frame: pd.DataFrame, name="t.csv") -> Path:
    path = tmp_path / name
    frame.to_csv(path, index=False)
    return path


def test_table_missing_arch_column(tmp_path):
    path = _write(tmp_path, small_frame().rename(columns={"arch": "architecture"}))
    with pytest.raises(GroundTruthError, match=r"t\.csv: no 'arch' column .*'architecture'"):
        TableGroundTruth.from_csv(path)


def test_table_malformed_arch_names_row_and_token(tmp_path):
    frame = small_frame()
    frame.loc[1, "arch"] = FAKE_ARCHS[1].replace("nor_conv_1x1~0", "nor_conv_5x5~0")
    with pytest.raises(GroundTruthError) as info:
        TableGroundTruth.from_csv(_write(tmp_path, frame))
    msg = str(info.value)
    assert "t.csv" in msg and "row 1 (line 3)" in msg and "unknown op 'nor_conv_5x5'" in msg
    assert "token 'nor_conv_5x5~0'" in msg


def test_table_duplicate_arch(tmp_path):
    frame = small_frame()
    frame.loc[2, "arch"] = FAKE_ARCHS[0]
    with pytest.raises(GroundTruthError, match=r"row 2 \(line 4\): duplicate arch .* \(first at row 0 \(line 2\)\)"):
        TableGroundTruth.from_csv(_write(tmp_path, frame))


def test_table_truncated_mid_line(tmp_path):
    path = _write(tmp_path, small_frame())
    text = path.read_text()
    path.write_text(text[: len(text) - 12])  # cut inside the last row
    with pytest.raises(GroundTruthError, match=r"t\.csv looks truncated: its last line \(line 4\) has"):
        TableGroundTruth.from_csv(path)


def test_table_corrupt_and_empty_files(tmp_path):
    binary = tmp_path / "bin.csv"
    binary.write_bytes(bytes(range(256)) * 4)
    with pytest.raises(GroundTruthError, match=r"cannot read ground-truth table .*bin\.csv"):
        TableGroundTruth.from_csv(binary)
    empty = tmp_path / "empty.csv"
    empty.write_text("")
    with pytest.raises(GroundTruthError, match=r"empty\.csv is empty"):
        TableGroundTruth.from_csv(empty)


@pytest.mark.parametrize(
    "column, value, fragment",
    [
        ("cifar10_test_200", "n/a", "column 'cifar10_test_200', row 1: 'n/a' is not a number"),
        ("cifar10_test_200", 0.9453 * 1000, "is not an accuracy in percent"),
        ("cifar10_valid_200", 50.0, "looks like a metric column but: cifar10 has no validation split"),
        ("cifar100_test_50", 50.0, "looks like a metric column but: unknown epochs 50"),
        ("isomorphism_class", "0", "isomorphism_class '0' differs from Arch.canonical()"),
        ("nb201_index", 1.5, "nb201_index, row 1: 1.5 is not a non-negative integer"),
    ],
)
def test_table_bad_columns(column, value, fragment):
    frame = small_frame()
    if column not in frame.columns:
        frame[column] = frame["cifar10_test_200"] if column != "isomorphism_class" else \
            [Arch.from_str(a).canonical() for a in frame["arch"]]
        if column == "nb201_index":
            frame[column] = [0, 1, 2]
    frame[column] = frame[column].astype(object)
    frame.loc[1, column] = value
    with pytest.raises(GroundTruthError) as info:
        TableGroundTruth(frame)
    assert fragment in str(info.value)


def test_table_rejects_non_frame_and_nan_arch():
    with pytest.raises(GroundTruthError, match="expected a pandas DataFrame"):
        TableGroundTruth({"arch": FAKE_ARCHS})  # type: ignore[arg-type]
    frame = small_frame()
    frame.loc[0, "arch"] = math.nan
    with pytest.raises(GroundTruthError, match="row 0: empty or non-text arch"):
        TableGroundTruth(frame)


# ---- built datasets (gt build) ------------------------------------------------------------------

def test_built_dataset_queries_and_typo_guard():
    from harness.groundtruth.base import is_built_dataset

    q = GTQuery("digitsm", "valid", 8)
    assert q.key == "digitsm_valid_8" and GTQuery.from_key("digitsm_valid_8") == q
    assert is_built_dataset("digitsm") and not is_built_dataset("cifar10")
    for typo in ("cifar10vaild", "cifar100x", "imagenet61"):
        with pytest.raises(GroundTruthError, match="typo of NB201"):
            GTQuery(typo, "valid", 200)
    with pytest.raises(GroundTruthError, match="positive integer"):
        GTQuery("digitsm", "valid", 0)


def test_table_with_built_columns_and_seed_values(tmp_path):
    archs = [Arch.from_index(i).to_str() for i in (0, 7, 99)]
    path = tmp_path / "built.csv"
    pd.DataFrame({"arch": archs, "digitsm_valid_8": [50.0, 60.0, 70.0], "digitsm_valid_8_seed0": [49.0, 61.0, 70.0],
                  "digitsm_valid_8_seed1": [51.0, 59.0, 70.0], "n_seeds_digitsm_8": [2, 2, 2],
                  "notes_free_text": ["a", "b", "c"]}).to_csv(path, index=False)
    gt = TableGroundTruth.from_csv(path)
    assert [q.key for q in gt.queries()] == ["digitsm_valid_8"]
    assert gt.query(archs[1], "digitsm_valid_8") == 60.0
    seeds = gt.seed_values("digitsm_valid_8")
    assert list(seeds) == [0, 1] and seeds[1].tolist() == [51.0, 59.0, 70.0]
    assert gt.extra_columns()["n_seeds_digitsm_8"].tolist() == [2, 2, 2]
    with pytest.raises(GroundTruthError, match="no digitsm_valid_12"):
        gt.query(archs[0], "digitsm_valid_12")


def test_table_rejects_out_of_range_seed_values(tmp_path):
    path = tmp_path / "bad.csv"
    pd.DataFrame({"arch": [Arch.from_index(0).to_str()], "digitsm_valid_8": [50.0],
                  "digitsm_valid_8_seed0": [150.0]}).to_csv(path, index=False)
    with pytest.raises(GroundTruthError, match="not an accuracy in percent"):
        TableGroundTruth.from_csv(path)
