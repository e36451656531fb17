"""Shrinking and few-shot splitting inside real runs: schedule, logging, sampler restriction, resume, metrics."""
import json

import pandas as pd
import pytest

import harness.train as train_mod
from harness.config import ConfigError, load_config
from harness.runner import run_experiment
from harness.shrinkers import Space
from harness.space import Arch, all_archs

from .helpers import interrupt_training_at
from .test_runner import ARCHS

# 120 images, 60 for training at batch 12: 5 steps per epoch; 20 steps = 4 epochs.
# warm-up 1 epoch, a round every epoch: rounds at steps 5, 10, 15 take every edge from 5 ops to 2.
SHRINK = ["shrink.warmup_epochs=1.0", "shrink.shrink_every=1.0", "shrink.min_ops=2", "shrink.score_images=30",
          "shrink.estimate_space=40"]


@pytest.fixture
def base(tmp_path, image_folder):
    gt = tmp_path / "gt.csv"
    known = all_archs()  # the whole space, as NB201's table: every final space has architectures to score
    pd.DataFrame({"arch": [a.to_str() for a in known],
                  "cifar10valid_valid_200": [float(i % 37) for i in range(len(known))]}).to_csv(gt, index=False)
    return [f"data.train_path='{image_folder}'", "data.resolution=8", "supernet.C=4", "supernet.N=1",
            "train.max_steps=20", "train.batch_size=12", "train.lr=0.1", "train.log_every=5",
            "train.checkpoint_every=4", "estimate.archs='list'", f"estimate.arch_list={json.dumps(ARCHS)}",
            "estimate.batch_size=30", "estimate.recalib_batches=1", f"groundtruth.source='{gt}'",
            "metrics.bootstrap=50", "run.device='cpu'", f"data.cache_dir='{tmp_path / 'cache'}'",
            "forgetting.probes=4", "forgetting.probe_points=3"]


def _record_trained(monkeypatch) -> list[tuple[int, Arch]]:
    trained = []
    real = train_mod.train_step

    def spy(model, sampler, x, y, step, *args):
        loss, archs = real(model, sampler, x, y, step, *args)
        trained.extend((step, a) for a in archs)
        return loss, archs

    monkeypatch.setattr(train_mod, "train_step", spy)
    return trained


@pytest.mark.parametrize("sampler", ["uniform", "fairnas"])
@pytest.mark.parametrize("rule", ["angle", "accuracy", "weight-norm"])
@pytest.mark.slow  # whole runs or many parametrised cases; the fast tier stays within 5 minutes
def test_each_rule_shrinks_on_schedule_and_the_sampler_obeys(tmp_path, base, monkeypatch, sampler, rule):
    cfg = load_config(None, base + SHRINK + [f"shrink.rule='{rule}'", f"sampler.name='{sampler}'",
                                             "train.max_steps=0", "train.max_paths=100"])
    trained = _record_trained(monkeypatch)
    metrics = run_experiment(cfg, tmp_path / "run", progress=False)
    log = pd.read_csv(tmp_path / "run" / "shrink.csv")
    steps = 100 // (5 if sampler == "fairnas" else 1)
    assert metrics["strategy"] == f"{sampler}+{rule}"
    # every round scores every alive (edge, op) and removes one op per edge until 2 are left
    spe = 5
    assert sorted(log["step"].unique()) == [spe, 2 * spe, 3 * spe][: len(log["round"].unique())]
    assert log.groupby("round").size().tolist() == [30, 24, 18]
    assert log.groupby("round")["removed"].sum().tolist() == [6, 6, 6]
    assert log["score"].notna().all()
    space = Space([sorted(set(range(5)) - set(log[log.removed & (log.edge == e)].op)) for e in range(6)])
    assert all(len(ops) == 2 for ops in space.alive)
    assert metrics["shrink"]["final_space"] == space.describe() and metrics["shrink"]["space_size"] == 64
    assert metrics["shrink"]["reached_target"]
    # after each round, no trained architecture uses an op that round removed
    for step, arch in trained:
        gone = log[log.removed & (log.step <= step)]
        assert not any(arch[e] == o for e, o in zip(gone.edge, gone.op)), (step, arch.to_str())
    assert metrics["train"]["steps"] == steps
    est = pd.read_csv(tmp_path / "run" / "estimates.csv")
    assert est["in_space"].tolist() == [Arch.from_str(a) in space for a in est["arch"]]
    space_est = pd.read_csv(tmp_path / "run" / "space_estimates.csv")
    assert len(space_est) == metrics["shrink"]["n_space_estimated"] >= 2
    assert all(Arch.from_str(a) in space for a in space_est["arch"])
    assert set(metrics["shrink"]) >= {"top1pct_retained", "top5pct_retained", "space_regret", "ranking_in_space",
                                      "op_score_tau_by_round", "best_in_space", "best_overall"}
    assert len(metrics["shrink"]["op_score_tau_by_round"]) == 3


def test_global_mode_and_target_size_stop_early(tmp_path, base):
    cfg = load_config(None, base + SHRINK + ["shrink.rule='weight-norm'", "shrink.mode='global'", "shrink.drop=4",
                                             "shrink.min_ops=1", "shrink.target_size=2000"])
    metrics = run_experiment(cfg, tmp_path / "run", progress=False)
    log = pd.read_csv(tmp_path / "run" / "shrink.csv")
    removed = log.groupby("round")["removed"].sum().tolist()
    assert removed[:-1] == [4] * (len(removed) - 1) and 1 <= removed[-1] <= 4
    last = log[log["round"] == log["round"].max()]
    size_before_last = 1
    for _, ops in last.groupby("edge"):
        size_before_last *= len(ops)
    assert metrics["shrink"]["space_size"] <= 2000 < size_before_last  # stopped as soon as the target was met


def test_interrupted_shrinking_run_resumes_with_its_space_and_log(tmp_path, base, monkeypatch):
    cfg = load_config(None, base + SHRINK + ["shrink.rule='angle'"])
    out = tmp_path / "run"
    interrupt_training_at(13, cfg, out, monkeypatch)
    before = pd.read_csv(out / "shrink.csv")
    assert sorted(before["round"].unique()) == [1, 2] and (out / "init_weights.pt").exists()
    metrics = run_experiment(cfg, out, progress=False)
    after = pd.read_csv(out / "shrink.csv")
    pd.testing.assert_frame_equal(after[after["round"] <= 2], before)  # rounds 1-2 kept, not redone
    assert after.groupby("round").size().tolist() == [30, 24, 18] and metrics["shrink"]["rounds"] == 3


@pytest.mark.slow  # whole runs or many parametrised cases; the fast tier stays within 5 minutes
def test_few_shot_run_splits_estimates_by_owner_and_resumes_after_the_split(tmp_path, base, monkeypatch):
    cfg = load_config(None, base + ["split.edges=[3]", "split.at_epochs=2.0"])
    out = tmp_path / "run"
    interrupt_training_at(17, cfg, out, monkeypatch)
    metrics = run_experiment(cfg, out, progress=False)
    assert metrics["strategy"] == "uniform+few-shot"
    assert metrics["few_shot"]["sub_supernets"] == 5 and metrics["few_shot"]["split_step"] == 10
    assert metrics["supernet"]["parameters"] > 4 * metrics["few_shot"]["sub_supernets"] * 1000
    assert metrics["shrink"] is None and pd.read_csv(out / "estimates.csv")["in_space"].all()


@pytest.mark.slow  # whole runs or many parametrised cases; the fast tier stays within 5 minutes
def test_split_after_shrinking(tmp_path, base):
    cfg = load_config(None, base + SHRINK + ["shrink.rule='weight-norm'", "split.edges=[0]", "split.after_shrink=true"])
    metrics = run_experiment(cfg, tmp_path / "run", progress=False)
    assert metrics["strategy"] == "uniform+weight-norm+few-shot"
    assert metrics["few_shot"]["split_step"] == 15  # right after the last round


@pytest.mark.parametrize("override, message", [
    (["shrink.rule='angle'", "shrink.warmup_epochs=10.0"], "no round would run"),
    (["split.edges=[1]", "split.at_epochs=9.0"], "never be split"),
    (SHRINK + ["shrink.rule='angle'", "shrink.warmup_epochs=3.0", "split.edges=[1]", "split.after_shrink=true"],
     "needs 3 rounds .* room for 1"),
])
def test_schedules_outside_the_run_are_errors(tmp_path, base, override, message):
    with pytest.raises(ConfigError, match=message):
        run_experiment(load_config(None, base + override), tmp_path / "run", progress=False)


@pytest.mark.slow  # several shrinking runs end to end (about 14 s); the fast tier stays within 5 minutes
def test_compare_reads_shrinking_runs_into_tables_and_figures(tmp_path, base):
    from harness import compare

    dirs = []
    for name, extra in [("plain", []), ("angle-s0", SHRINK + ["shrink.rule='angle'"]),
                        ("angle-s1", SHRINK + ["shrink.rule='angle'", "run.seed=1"])]:
        run_experiment(load_config(None, base + extra), tmp_path / name, progress=False)
        dirs.append(tmp_path / name)
    records = [compare.load_run(d) for d in dirs]
    runs = compare.runs_table(records)
    angle = runs[runs["strategy"] == "uniform+angle"]
    assert angle["space_size"].tolist() == [64, 64]
    metrics = json.loads((dirs[1] / "metrics.json").read_text())["shrink"]
    assert angle["top5pct_retained"].iloc[0] == pytest.approx(metrics["top5pct_retained"])
    assert angle["tau_in_space"].iloc[0] == pytest.approx(metrics["ranking_in_space"]["kendall_tau"]["value"], nan_ok=True)
    assert runs.loc[runs["strategy"] == "uniform", "space_size"].isna().all()  # no shrinking: no shrink values
    summary = compare.strategy_table(records).set_index("strategy")
    assert summary.loc["uniform+angle", "space_regret"] == pytest.approx(angle["space_regret"].mean())
    figs = compare.figures(records)
    assert {"shrink_alive", "shrink_scores", "shrink_retention"} <= set(figs)
    assert not {"shrink_alive"} & set(compare.figures(records[:1]))
    written = compare.write_report(records, tmp_path / "report")
    assert (tmp_path / "report" / "shrink_alive.png") in written
    assert "top5pct_retained" in (tmp_path / "report" / "summary.md").read_text()
    from .test_demo import _load_make_report

    text = _load_make_report()._shrink_reading(records)
    assert "`uniform+angle` (2 runs): final space 64 architectures" in text
    assert f"`uniform+angle` kept the most of the true top 5% ({angle['top5pct_retained'].mean():.3f} of it" in text
    assert "64 / 15625" not in text and f"{64 / 15625:.1%}" in text


@pytest.mark.slow  # whole runs or many parametrised cases; the fast tier stays within 5 minutes
def test_one_global_round_after_training_as_abs(tmp_path, base, monkeypatch):
    """ABS's NB201 shrinking: the whole budget on the full space, then one global angle round that removes 20 of
    the 30 (edge, op) and keeps at least one op per edge. Oracle: the 20 removed are the 20 lowest scores of that
    round's log (ties to the lower op index), subject to the one-per-edge floor."""
    cfg = load_config(None, base + ["shrink.rule='angle'", "shrink.warmup_epochs=100", "shrink.at_end=true",
                                    "shrink.mode='global'", "shrink.drop=20", "shrink.min_ops=1",
                                    "shrink.estimate_space=10"])
    trained = _record_trained(monkeypatch)
    metrics = run_experiment(cfg, tmp_path / "run", progress=False)
    log = pd.read_csv(tmp_path / "run" / "shrink.csv")
    assert log["round"].unique().tolist() == [1] and log["step"].unique().tolist() == [20]  # after the last step
    assert len(log) == 30 and log["removed"].sum() == 20
    assert all(len({a[e] for _, a in trained}) == 5 for e in range(6))  # trained on the full space all along
    kept = log[~log["removed"]]
    assert kept.groupby("edge").size().reindex(range(6)).notna().all()  # every edge keeps an op
    floor_free = log.sort_values(["score", "op"], kind="stable")
    expected, left = set(), {e: 5 for e in range(6)}
    for _, row in floor_free.iterrows():
        if len(expected) < 20 and left[row["edge"]] > 1:
            expected.add((row["edge"], row["op"]))
            left[row["edge"]] -= 1
    assert set(map(tuple, log.loc[log["removed"], ["edge", "op"]].to_numpy())) == expected
    block = metrics["shrink"]
    assert block["rounds"] == 1 and block["round_steps"] == [20]
    assert metrics["strategy"] == "uniform+angle-at-end"  # not pooled with the per-epoch angle schedule's runs
    assert [len(ops) for ops in block["final_space"]] == kept.groupby("edge").size().tolist()


def test_max_rounds_caps_the_schedule(tmp_path, base):
    cfg = load_config(None, base + SHRINK + ["shrink.rule='weight-norm'", "shrink.max_rounds=1"])
    metrics = run_experiment(cfg, tmp_path / "run", progress=False)
    assert metrics["shrink"]["rounds"] == 1 and metrics["shrink"]["round_steps"] == [5]


@pytest.mark.slow  # whole runs or many parametrised cases; the fast tier stays within 5 minutes
def test_fresh_schedule_is_the_official_few_shot_protocol_and_resumes(tmp_path, base, monkeypatch):
    """[split] schedule = "fresh": a cosine over the 10 steps before the split, then a new optimizer (no momentum)
    and a new cosine over the 10 after (few-shot-supernet_train.py:116,142,146-147); the per-cell paths after
    the split agree on the split edge across cells (rank_model.py:97-111's pool), and not before it. The
    expected learning rates are the cosine formula written out, not the scheduler's output."""
    import math

    import harness.train as tm

    cfg = load_config(None, base + ["sampler.name='per-cell'", "sampler.reject_empty_nodes=false",
                                    "split.edges=[0]", "split.at_epochs=2.0", "split.schedule='fresh'"])
    lrs, fresh_state, paths = {}, {}, {}
    real = tm.train_step

    def spy(model, sampler, x, y, step, rng, opt, *rest):
        lrs[step] = opt.param_groups[0]["lr"]
        fresh_state.setdefault(step, len(opt.state))
        loss, archs = real(model, sampler, x, y, step, rng, opt, *rest)
        paths[step] = archs[0]
        return loss, archs

    monkeypatch.setattr(tm, "train_step", spy)
    out = tmp_path / "run"
    interrupt_training_at(15, cfg, out, monkeypatch)  # resumes from the step-12 checkpoint, after the split
    monkeypatch.setattr(tm, "train_step", spy)
    metrics = run_experiment(cfg, out, progress=False)
    assert metrics["few_shot"]["split_step"] == 10 and sorted(lrs) == list(range(20))
    assert metrics["strategy"] == "per-cell+few-shot-fresh"  # not pooled with the continued schedule's runs

    def cosine(t, T):
        return 0.001 + (0.1 - 0.001) * (1 + math.cos(math.pi * t / T)) / 2

    for step, lr in lrs.items():
        assert lr == pytest.approx(cosine(step, 10) if step < 10 else cosine(step - 10, 10)), step
    assert fresh_state[10] == 0 and fresh_state[9] > 0  # no momentum carried over the split
    assert all(len({cell[0] for cell in paths[s]}) == 1 for s in range(10, 20))
    assert any(len({cell[0] for cell in paths[s]}) > 1 for s in range(10))


def test_continue_schedule_keeps_one_cosine_over_the_run(tmp_path, base, monkeypatch):
    import math

    import harness.train as tm

    cfg = load_config(None, base + ["split.edges=[0]", "split.at_epochs=2.0"])
    lrs = {}
    real = tm.train_step

    def spy(model, sampler, x, y, step, rng, opt, *rest):
        lrs[step] = opt.param_groups[0]["lr"]
        return real(model, sampler, x, y, step, rng, opt, *rest)

    monkeypatch.setattr(tm, "train_step", spy)
    run_experiment(cfg, tmp_path / "run", progress=False)
    for step, lr in lrs.items():
        assert lr == pytest.approx(0.001 + (0.1 - 0.001) * (1 + math.cos(math.pi * step / 20)) / 2), step
