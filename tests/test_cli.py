import json

import pandas as pd
import pytest

from harness.cli import main
from harness.nets import arch_costs
from tests.conftest import GT_CSV


@pytest.mark.shared_data
def test_gt_info_on_the_shared_table_reports_nb201s_optima(gt_frame, capsys):
    assert main(["gt", "info", "--source", str(GT_CSV)]) == 0
    info = json.loads(capsys.readouterr().out)
    assert info["num_archs"] == 15625 and info["num_isomorphism_classes"] == 6466
    best = info["best"]
    assert round(best["cifar10_test_200"]["accuracy"], 2) == 94.37
    assert round(best["cifar100_test_200"]["accuracy"], 2) == 73.51
    assert round(best["imagenet16_test_200"]["accuracy"], 2) == 47.31
    assert best["cifar100_test_200"]["nb201_index"] == 9930


def test_space_export_writes_every_architecture_with_costs(tmp_path, capsys):
    out = tmp_path / "space.csv"
    assert main(["space", "export", "--out", str(out)]) == 0
    frame = pd.read_csv(out)
    assert len(frame) == 15625 and frame["arch"].is_unique
    assert round(frame["flops_m"].min(), 2) == 7.78 and round(frame["flops_m"].max(), 2) == 220.12
    row = frame.iloc[4321]
    assert row["params"] == arch_costs(row["arch"]).params
    assert main(["space", "export", "--out", str(tmp_path / "s8.csv"), "--C", "8", "--N", "1", "--classes", "100"]) == 0
    assert pd.read_csv(tmp_path / "s8.csv")["params"].max() < frame["params"].max()


@pytest.mark.shared_data
def test_space_export_agrees_with_nb201_parameter_counts(tmp_path, gt_frame):
    out = tmp_path / "space.csv"
    assert main(["space", "export", "--out", str(out)]) == 0
    merged = gt_frame.merge(pd.read_csv(out), on="arch")
    recorded = (merged["params_mb_cifar10"] * 1e6).round().astype("int64")
    sizes = set(merged["params"])
    consistent = ((merged["params_mb_cifar10"] * 1e6 - recorded).abs() < 1e-3) & recorded.isin(sizes)
    assert consistent.sum() == 15421
    assert (merged.loc[consistent, "params"] == recorded[consistent]).all()


def test_gt_errors_are_one_line(tmp_path, capsys):
    assert main(["gt", "info", "--source", str(tmp_path / "nope.csv")]) == 2
    err = capsys.readouterr().err
    assert err.startswith("nb201-harness: error:") and len(err.strip().splitlines()) == 1


def test_gt_export_and_info_on_an_official_format_file(tmp_path, capsys):
    from tests.test_groundtruth import FAKE_ARCHS as ARCH_STRS, expected_mean, write_fake_official

    pth = write_fake_official(tmp_path / "NAS-Bench-201-v1_1-096897.pth")
    table = tmp_path / "nb201.csv"
    assert main(["gt", "export", "--source", str(pth), "--out", str(table)]) == 0
    frame = pd.read_csv(table)
    assert frame["arch"].tolist() == list(ARCH_STRS)
    assert frame["cifar10valid_valid_200"].tolist() == pytest.approx(
        [expected_mean(i, "cifar10-valid", "x-valid", 200) for i in range(len(ARCH_STRS))])
    capsys.readouterr()
    assert main(["gt", "info", "--source", str(table)]) == 0
    info = json.loads(capsys.readouterr().out)
    assert info["num_archs"] == len(ARCH_STRS)
    best = max(range(len(ARCH_STRS)), key=lambda i: expected_mean(i, "cifar10", "ori-test", 200))
    assert info["best"]["cifar10_test_200"]["arch"] == ARCH_STRS[best]


def test_help_loads_no_heavy_library():
    """`--help` of every command parses arguments without torch, pandas or matplotlib (a start under 1 s; the
    time itself is benchmarks/test_bench_cli.py's)."""
    import subprocess
    import sys

    code = ("import sys, harness.cli as c\n"
            "for argv in ([], ['run'], ['demo'], ['compare'], ['check'], ['regress'], ['gt', 'build'], ['gt', 'export'],"
            " ['gt', 'info'], ['space', 'export']):\n"
            "    try:\n        c.build_parser().parse_args([*argv, '--help'])\n    except SystemExit:\n        pass\n"
            "print(sorted(m for m in ('torch', 'pandas', 'matplotlib', 'scipy') if m in sys.modules))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert out.strip().splitlines()[-1] == "[]"


def _parsers(parser):
    import argparse

    yield parser
    for action in parser._actions:
        if isinstance(action, argparse._SubParsersAction):
            for sub in action.choices.values():
                yield from _parsers(sub)


def test_every_option_has_help_and_states_its_default():
    import argparse

    from harness.cli import build_parser

    for parser in _parsers(build_parser()):
        for action in parser._actions:
            if isinstance(action, (argparse._HelpAction, argparse._SubParsersAction)):
                continue
            assert action.help, f"{parser.prog} {action.dest}: no help text"
        text = " ".join(parser.format_help().split())  # wrapped lines joined
        for action in parser._actions:
            d = action.default
            if action.option_strings and not action.required and not (
                    d is None or d is False or d is argparse.SUPPRESS or d in ([], "")):
                assert f"default: {d}" in text or "default" in action.help, (parser.prog, action.dest)
