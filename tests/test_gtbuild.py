"""gt build: stand-alone training into a compact ground-truth table, resumable, with per-seed values."""
import json

import numpy as np
import pandas as pd
import pytest

import harness.gtbuild as gtbuild
from harness.cli import main
from harness.groundtruth import TableGroundTruth
from harness.gtbuild import BuildError, BuildSpec, build, seed_agreement, select_archs

ARCHS = [
    "|nor_conv_3x3~0|+|nor_conv_3x3~0|nor_conv_3x3~1|+|nor_conv_3x3~0|nor_conv_3x3~1|nor_conv_3x3~2|",
    "|avg_pool_3x3~0|+|avg_pool_3x3~0|avg_pool_3x3~1|+|avg_pool_3x3~0|avg_pool_3x3~1|avg_pool_3x3~2|",
    "|none~0|+|none~0|none~1|+|none~0|none~1|none~2|",
]


def tiny_spec(**kw) -> BuildSpec:
    base = dict(data="builtin:digitsm", name="tiny", archs=ARCHS, seeds=[0, 1], epochs=1, C=4, N=1,
                batch_size=64, augment=False, normalize="digitsm")
    return BuildSpec(**{**base, **kw})


@pytest.mark.slow
def test_build_writes_the_compact_table(tmp_path):
    out = tmp_path / "gt.csv"
    table = build(tiny_spec(), out, progress=False)
    gt = TableGroundTruth.from_csv(out)
    assert [a.to_str() for a in gt.archs()] == ARCHS
    assert [q.key for q in gt.queries()] == ["tiny_test_1", "tiny_train_1", "tiny_valid_1"]
    seeds = gt.seed_values("tiny_valid_1")
    assert sorted(seeds) == [0, 1]
    assert np.allclose(gt.query_many(ARCHS, "tiny_valid_1"), (seeds[0] + seeds[1]) / 2)
    assert table["n_seeds_tiny_1"].tolist() == [2, 2, 2]
    # a built table names no official NB201 index: that order is arbitrary and only NB201's file defines it
    assert "nb201_index" not in table.columns and gt.nb201_index(ARCHS[0]) is None
    valid = gt.query_many(ARCHS, "tiny_valid_1")
    # the all-'none' cell ignores its input: it can only predict one class (~10% on balanced data),
    # while an all-conv cell learns the digits in one epoch
    assert valid[2] < 15 and valid[0] > 30
    meta = json.loads((tmp_path / "gt.build.json").read_text())
    assert meta["status"] == "finished" and meta["spec"]["archs"] == ARCHS
    assert not (tmp_path / "gt.partial.csv").exists()
    with pytest.raises(BuildError, match="exists"):
        build(tiny_spec(), out, progress=False)


@pytest.mark.slow
def test_interrupted_build_resumes_without_losing_jobs(tmp_path, monkeypatch):
    out = tmp_path / "gt.csv"
    real = gtbuild.train_standalone
    calls = []

    def flaky(arch, seed, data, spec):
        if len(calls) == 4:
            raise KeyboardInterrupt  # the user pressed Ctrl-C during the fifth network
        calls.append((arch, seed))
        return real(arch, seed, data, spec)

    monkeypatch.setattr(gtbuild, "train_standalone", flaky)
    with pytest.raises(KeyboardInterrupt):
        build(tiny_spec(), out, progress=False)
    partial = pd.read_csv(tmp_path / "gt.partial.csv")
    assert len(partial) == 4 and not out.exists()
    # architecture-major order: the partial table already holds both seeds of the first two architectures
    assert calls == [(ARCHS[0], 0), (ARCHS[0], 1), (ARCHS[1], 0), (ARCHS[1], 1)]
    first = partial.set_index(["arch", "seed"])["valid"]

    calls.clear()
    monkeypatch.setattr(gtbuild, "train_standalone", lambda *a: calls.append(a[:2]) or real(*a))
    build(tiny_spec(), out, progress=False)
    assert len(calls) == 2  # only the unfinished jobs ran
    table = pd.read_csv(out)
    for (arch, seed), value in first.items():
        row = table.set_index("arch").loc[arch]
        assert row[f"tiny_valid_1_seed{seed}"] == pytest.approx(value)


def test_resume_refuses_a_different_spec(tmp_path, monkeypatch):
    out = tmp_path / "gt.csv"
    real, calls = gtbuild.train_standalone, []

    def one_then_interrupt(*a):
        if calls:
            raise KeyboardInterrupt
        calls.append(a)
        return real(*a)

    monkeypatch.setattr(gtbuild, "train_standalone", one_then_interrupt)
    with pytest.raises(KeyboardInterrupt):
        build(tiny_spec(), out, progress=False)
    with pytest.raises(BuildError, match="differs in: epochs"):  # one finished job is not thrown away
        build(tiny_spec(epochs=2), out, progress=False)


def test_a_start_that_finished_no_job_is_reused_by_a_corrected_spec(tmp_path, monkeypatch, capsys):
    out = tmp_path / "gt.csv"
    real = gtbuild.train_standalone
    monkeypatch.setattr(gtbuild, "train_standalone", lambda *a: (_ for _ in ()).throw(KeyboardInterrupt))
    with pytest.raises(KeyboardInterrupt):
        build(tiny_spec(), out, progress=False)
    monkeypatch.setattr(gtbuild, "train_standalone", real)
    build(tiny_spec(seeds=[0]), out, progress=False)
    assert "finished no job" in capsys.readouterr().err and out.exists()


def test_same_seed_gives_the_same_network_and_accuracy():
    spec = tiny_spec(archs=ARCHS[:1], seeds=[0])
    data = gtbuild.load_build_data(spec)
    a = gtbuild.train_standalone(ARCHS[0], 3, data, spec)
    b = gtbuild.train_standalone(ARCHS[0], 3, data, spec)
    assert a["valid"] == b["valid"] and a["train"] == b["train"]


@pytest.mark.parametrize("kw, fragment", [
    (dict(name="cifar10valid"), "new lowercase alphanumeric name"),
    (dict(name="Digits-M"), "new lowercase alphanumeric name"),
    (dict(seeds=[0, 0]), "distinct"),
    (dict(archs=[ARCHS[0], ARCHS[0]]), "repeats"),
    (dict(epochs=0), "epochs must be positive"),
])
def test_bad_specs_are_refused(kw, fragment):
    with pytest.raises((BuildError, ValueError), match=fragment):
        tiny_spec(**kw)


def test_arch_selection(tmp_path):
    assert len(select_archs("sample:7", 1)) == 7 and select_archs("sample:7", 1) == select_archs("sample:7", 1)
    assert len(select_archs("unique")) == 6466
    f = tmp_path / "archs.txt"
    f.write_text("# two\n" + "\n".join(ARCHS[:2]) + "\n")
    assert [a.to_str() for a in select_archs(f"list:{f}")] == ARCHS[:2]
    with pytest.raises(BuildError, match="sample:K"):
        select_archs("random:3")


@pytest.mark.slow
def test_cli_build_with_two_workers_and_seed_agreement(tmp_path, capsys):
    out = tmp_path / "gt.csv"
    args = ["gt", "build", "--data", "builtin:digitsm", "--name", "tiny", "--archs", "sample:4", "--seeds", "0,1",
            "--epochs", "1", "--C", "4", "--N", "1", "--no-augment", "--workers", "2", "--quiet", "--out", str(out)]
    assert main(args) == 0
    summary = json.loads(capsys.readouterr().out)
    agreement = summary["seed_agreement_valid"]["seed0_vs_seed1"]
    assert agreement == seed_agreement(out, "tiny", 1)["seed0_vs_seed1"]
    assert agreement["n_archs"] == 4 and -1 <= agreement["kendall_tau"] <= 1
