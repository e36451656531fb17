"""End-to-end runs on a tiny image folder and a tiny ground-truth table the tests write."""
import json
import tomllib

import pandas as pd
import pytest
import torch

import harness.runner as runner_mod
from harness.cli import main
from harness.config import load_config
from harness.runner import RunDirError, run_experiment

from .helpers import interrupt_training_at

ARCHS = [  # connected, diverse cells, plus the all-'none' cell whose output ignores the input
    "|nor_conv_3x3~0|+|nor_conv_3x3~0|nor_conv_3x3~1|+|nor_conv_3x3~0|nor_conv_3x3~1|nor_conv_3x3~2|",
    "|nor_conv_3x3~0|+|nor_conv_3x3~0|avg_pool_3x3~1|+|skip_connect~0|nor_conv_3x3~1|skip_connect~2|",
    "|nor_conv_1x1~0|+|none~0|none~1|+|skip_connect~0|nor_conv_1x1~1|none~2|",
    "|skip_connect~0|+|skip_connect~0|skip_connect~1|+|skip_connect~0|skip_connect~1|skip_connect~2|",
    "|avg_pool_3x3~0|+|avg_pool_3x3~0|avg_pool_3x3~1|+|avg_pool_3x3~0|avg_pool_3x3~1|avg_pool_3x3~2|",
    "|none~0|+|none~0|none~1|+|none~0|none~1|none~2|",
]


@pytest.fixture
def config(tmp_path, image_folder):
    gt = tmp_path / "gt.csv"
    pd.DataFrame({"arch": ARCHS, "cifar10valid_valid_200": [50.0 + 5 * i for i in range(len(ARCHS))]}).to_csv(gt, index=False)
    return load_config(None, [
        f"data.train_path='{image_folder}'", "data.resolution=8", "supernet.C=4", "supernet.N=1",
        "train.max_steps=20", "train.batch_size=12", "train.lr=0.1", "train.log_every=5", "train.checkpoint_every=5",
        "estimate.archs='list'", f"estimate.arch_list={json.dumps(ARCHS)}", "estimate.batch_size=30",
        f"groundtruth.source='{gt}'", "metrics.bootstrap=50", "run.device='cpu'", f"data.cache_dir='{tmp_path / 'cache'}'"])


def test_run_writes_a_complete_run_directory(tmp_path, config):
    out = tmp_path / "run"
    metrics = run_experiment(config, out, progress=False)
    assert sorted(p.name for p in out.iterdir()) == ["config.toml", "decay.csv", "estimates.csv", "metrics.json",
                                                    "probes.csv", "split.json", "supernet.pt", "train_log.csv"]
    on_disk = json.loads((out / "metrics.json").read_text())
    assert on_disk["ranking"]["n_archs"] == 6
    for key in ("kendall_tau", "spearman", "pearson", "precision_top1pct", "precision_top5pct", "precision_top10pct",
                "regret_top1", "kendall_tau_top10pct"):
        assert {"value", "ci_low", "ci_high"} <= set(on_disk["ranking"][key])
    assert on_disk["environment"]["torch"] and on_disk["environment"]["device"] == "cpu"
    assert on_disk["ground_truth"]["query"] == "cifar10valid_valid_200"
    assert on_disk["train"]["steps"] == 20
    est = pd.read_csv(out / "estimates.csv")
    assert est["arch"].tolist() == ARCHS
    assert est["ground_truth"].tolist() == [50.0 + 5 * i for i in range(6)]
    assert est["estimate"].between(0, 100).all()
    assert est["estimate"].nunique() > 1  # the supernet learned something: estimates differ by architecture
    assert est["estimate"].iloc[-1] == pytest.approx(10.0)  # constant output: one class of 10, balanced split
    tau = on_disk["ranking"]["kendall_tau"]["value"]
    assert tau is None or -1 <= tau <= 1  # None (JSON null) if a tiny supernet gives constant estimates
    assert metrics["ranking"]["spearman"]["value"] == pytest.approx(est["estimate"].corr(est["ground_truth"], "spearman"), nan_ok=True)
    split = json.loads((out / "split.json").read_text())
    assert split["kind"] == "stratified" and split["n_train"] + split["n_valid"] == 120
    with pytest.raises(RunDirError, match="finished run"):
        run_experiment(config, out, progress=False)


def test_runs_are_repeatable_on_cpu(tmp_path, config):
    run_experiment(config, tmp_path / "a", progress=False)
    run_experiment(config, tmp_path / "b", progress=False)
    a, b = (pd.read_csv(tmp_path / d / "estimates.csv") for d in "ab")
    pd.testing.assert_frame_equal(a, b)


def _interrupt_at_step_12_then_resume(config, out, monkeypatch):
    interrupt_training_at(12, config, out, monkeypatch)
    run_experiment(config, out, progress=False)


def test_interrupted_training_resumes_from_the_checkpoint(tmp_path, config, monkeypatch, capsys):
    out = tmp_path / "run"
    _interrupt_at_step_12_then_resume(config, out, monkeypatch)
    assert "resuming training at step 10/20" in capsys.readouterr().err
    log = pd.read_csv(out / "train_log.csv")
    assert log["step"].tolist() == [5, 10, 15, 20]
    assert not (out / "checkpoint.pt").exists()


@pytest.mark.parametrize("threads", [1, 2])
def test_interrupted_estimation_keeps_finished_architectures(tmp_path, config, monkeypatch, threads):
    """A flush comes after a whole wave of chunks (harness.estimate.side_by_side: one chunk per torch thread on
    CPU): chunks of 2 architectures, so the crash at the first flush leaves 4 of the 6 to do on one thread and 2 on
    two threads (two chunks side by side)."""
    out = tmp_path / "run"
    config.forgetting.probes = config.forgetting.decay_tracers = 0  # only estimation calls estimate_archs
    config.estimate.arch_batch = 2
    config.run.threads = threads
    before = torch.get_num_threads()
    done = 2 * threads
    real = runner_mod.estimate_archs
    seen = []

    def crash_after_first_chunk(model, archs, *args, on_flush=None, **kw):
        seen.append(len(archs))

        def flush_then_crash(chunk):
            on_flush(chunk)
            raise KeyboardInterrupt

        return real(model, archs, *args, on_flush=flush_then_crash, flush_every=2, **kw)

    monkeypatch.setattr(runner_mod, "estimate_archs", crash_after_first_chunk)
    try:
        with pytest.raises(KeyboardInterrupt):
            run_experiment(config, out, progress=False)
        assert len(pd.read_csv(out / "estimates.partial.csv")) == done
        monkeypatch.setattr(runner_mod, "estimate_archs",
                            lambda *a, **k: (seen.append(len(a[1])), real(*a, **k))[1])
        run_experiment(config, out, progress=False)
    finally:
        torch.set_num_threads(before)
    assert seen == [6, 6 - done]  # the resumed run estimated only the missing architectures
    assert pd.read_csv(out / "estimates.csv")["arch"].tolist() == ARCHS


def test_unfinished_dir_with_another_config_is_refused(tmp_path, config):
    out = tmp_path / "run"
    out.mkdir()
    (out / "config.toml").write_text("[run]\nseed = 99\n")
    (out / "train_log.csv").write_text("step,loss\n")  # work done: not just the leftovers of a failed start
    with pytest.raises(RunDirError, match=r"different config \(data\.augment = .\(absent\). vs True"):
        run_experiment(config, out, progress=False)
    other = tmp_path / "other"
    other.mkdir()
    (other / "notes.txt").write_text("mine")
    with pytest.raises(RunDirError, match="not a run directory"):
        run_experiment(config, other, progress=False)


def test_run_directories_keep_their_identity_when_the_checkout_moves(tmp_path, monkeypatch):
    """config.toml stores data paths relative to the checkout, so a checkout moved with the ../shared/data beside
    it (CI checks out elsewhere) still finds its finished and unfinished runs; another file is another run."""
    from harness.runner import check_run_dir, finished_config_differs, same_identity

    def checkout(where):
        (where / "main").mkdir(parents=True)
        (where / "shared").mkdir()
        (where / "shared" / "gt.csv").write_text("arch,cifar10valid_valid_200\n")
        return load_config(None, [f"groundtruth.source='{where / 'shared' / 'gt.csv'}'",
                                  f"data.cache_dir='{where / 'main' / 'cache'}'"])

    first, moved = checkout(tmp_path / "a"), checkout(tmp_path / "b")
    monkeypatch.setattr(runner_mod, "ROOT", tmp_path / "a" / "main")
    done, unfinished = tmp_path / "done", tmp_path / "unfinished"
    for out in (done, unfinished):
        runner_mod.create_run_dir(out, first, "new")
    stored = tomllib.loads((done / "config.toml").read_text())
    assert stored["groundtruth"]["source"] == "../shared/gt.csv" and stored["data"]["cache_dir"] == "cache"
    assert stored["data"]["holdout"] == "train"  # a record keeps every key (only digests drop ADDED_KEYS)
    (done / "metrics.json").write_text("{}")
    (unfinished / "train_log.csv").write_text("step,loss\n")
    monkeypatch.setattr(runner_mod, "ROOT", tmp_path / "b" / "main")
    assert finished_config_differs(done, moved) == [] and check_run_dir(unfinished, moved) == "resume"
    assert same_identity((done / "config.toml").read_text(), moved)
    (tmp_path / "b" / "other.csv").write_text("arch,cifar10valid_valid_200\n")
    other = load_config(None, [f"groundtruth.source='{tmp_path / 'b' / 'other.csv'}'",
                               f"data.cache_dir='{tmp_path / 'b' / 'main' / 'cache'}'"])
    assert finished_config_differs(done, other) == [
        "groundtruth.source = '../shared/gt.csv' vs '" + str(tmp_path / "b" / "other.csv") + "'"]
    with pytest.raises(RunDirError, match="different config"):
        check_run_dir(unfinished, other)


def test_metrics_name_the_ground_truth_relative_to_the_checkout(tmp_path, config, monkeypatch):
    """metrics.json names the ground-truth file as config.toml does (beside the checkout: ../shared/...), so a
    committed run's report does not carry the path of the machine that made it."""
    monkeypatch.setattr(runner_mod, "ROOT", tmp_path / "main")  # config's gt.csv lies beside this "checkout"
    metrics = run_experiment(config, tmp_path / "run", progress=False)
    assert metrics["ground_truth"]["source"] == "../gt.csv"
    assert json.loads((tmp_path / "run" / "metrics.json").read_text())["ground_truth"]["source"] == "../gt.csv"
    monkeypatch.setattr(runner_mod, "ROOT", tmp_path / "elsewhere" / "main")  # not in or beside it: absolute
    assert run_experiment(config, tmp_path / "run2", progress=False)["ground_truth"]["source"] == str(tmp_path / "gt.csv")


def test_cli_run_and_config_errors(tmp_path, config, capsys):
    cfg_file = tmp_path / "c.toml"
    cfg_file.write_text(config.to_toml())
    assert main(["run", str(cfg_file), "--out", str(tmp_path / "cli"), "--quiet"]) == 0
    summary = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    assert summary["n_archs"] == 6
    assert summary["kendall_tau"] is None or -1 <= summary["kendall_tau"] <= 1  # None: constant estimates
    assert main(["run", str(cfg_file), "--set", "train.lrr=1"]) == 2
    assert "unknown key in [train] 'lrr'" in capsys.readouterr().err


def test_tracking_logs_tau_against_training_progress(tmp_path, config):
    config.estimate.track_every = 10
    config.estimate.track_archs = 4
    run_experiment(config, tmp_path / "run", progress=False)
    progress = pd.read_csv(tmp_path / "run" / "progress.csv")
    assert progress["step"].tolist() == [10, 20] and progress["progress"].tolist() == [0.5, 1.0]
    assert (progress["n_archs"] == 4).all()
    assert progress["kendall_tau"].dropna().between(-1, 1).all()


def test_forgetting_probes_do_not_change_training(tmp_path, config):
    config.forgetting.probes, config.forgetting.probe_every = 3, 5
    config.forgetting.decay_every, config.forgetting.decay_lags = 4, [1, 3]
    metrics = run_experiment(config, tmp_path / "probed", progress=False)
    config.forgetting.probes, config.forgetting.decay_tracers = 0, 0
    run_experiment(config, tmp_path / "plain", progress=False)
    probed, plain = (pd.read_csv(tmp_path / d / "estimates.csv") for d in ("probed", "plain"))
    pd.testing.assert_frame_equal(probed, plain)  # measuring never perturbs the trajectory
    assert not (tmp_path / "plain" / "probes.csv").exists()
    probes = pd.read_csv(tmp_path / "probed" / "probes.csv")
    assert probes["step"].tolist() == [5] * 3 + [10] * 3 + [15] * 3 + [20] * 3
    assert probes["acc"].between(0, 100).all() and set(probes["arch"]) <= set(ARCHS)
    truth = dict(zip(plain["arch"], plain["ground_truth"]))
    assert (probes["ground_truth"] == probes["arch"].map(truth)).all()
    decay = pd.read_csv(tmp_path / "probed" / "decay.csv")
    assert sorted(set(decay["trained_step"])) == [4, 8, 12, 16] and set(decay["lag"]) == {0, 1, 3}
    f = metrics["forgetting"]
    assert f["n_probes"] == 3 and len(f["probe_tau"]) == 4 and [d["lag"] for d in f["decay"]] == [1, 3]
    assert f["mean_forgetting"] is not None


def test_resumed_training_keeps_the_forgetting_record(tmp_path, config, monkeypatch):
    config.forgetting.probes, config.forgetting.probe_every = 3, 5
    config.forgetting.decay_every, config.forgetting.decay_lags = 4, [1, 3]
    run_experiment(config, tmp_path / "whole", progress=False)
    _interrupt_at_step_12_then_resume(config, tmp_path / "cut", monkeypatch)
    for name in ("probes.csv", "decay.csv", "estimates.csv"):
        pd.testing.assert_frame_equal(pd.read_csv(tmp_path / "cut" / name), pd.read_csv(tmp_path / "whole" / name))


@pytest.mark.parametrize("name", __import__("harness.samplers", fromlist=["SAMPLERS"]).SAMPLERS.names())
def test_every_strategy_trains_estimates_and_records_forgetting(tmp_path, config, name):
    config.sampler = {"name": name}
    config.train.max_steps, config.train.max_paths = 0, 30
    config.forgetting.probes, config.forgetting.probe_every = 3, 2
    config.forgetting.decay_every, config.forgetting.decay_lags = 2, [1, 2]
    metrics = run_experiment(config, tmp_path / name, progress=False)
    assert metrics["strategy"] == name
    train = metrics["train"]
    assert train["steps"] == 30 // train["paths_per_step"] and 0 < train["paths"] <= 30
    est = pd.read_csv(tmp_path / name / "estimates.csv")
    assert len(est) == 6 and est["estimate"].between(0, 100).all()
    probes = pd.read_csv(tmp_path / name / "probes.csv")
    assert len(probes) == 3 * len(set(probes["step"])) and probes["step"].max() == train["steps"]
    assert metrics["forgetting"]["n_probes"] == 3
    assert (tmp_path / name / "decay.csv").exists()


def test_track_bn_policy_runs_end_to_end(tmp_path, config):
    config.supernet.bn_policy = "track"  # NB201's BN=1: running statistics from training, no recalibration
    metrics = run_experiment(config, tmp_path / "run", progress=False)
    assert metrics["estimator"]["bn_policy"] == "track" and metrics["supernet"]["bn_policy"] == "track"
    est = pd.read_csv(tmp_path / "run" / "estimates.csv")
    assert est["estimate"].between(0, 100).all() and est["estimate"].nunique() > 1


@pytest.mark.parametrize("sampler,policy", [("fairnas", "recalibrate"), ("nsas", "track"), ("uniform", "batch")])
@pytest.mark.slow  # three whole runs with each engine in float64 (about 30 s); the fast tier stays within 5 minutes
def test_both_engines_give_the_same_run(tmp_path, config, sampler, policy, monkeypatch):
    """A whole tiny run (multi-path training steps, forgetting probes and tracers, track_every, estimation) with
    the architecture-batched engine for training and estimation against the eager single path: the same training
    losses, estimates, probe curves and ranking metrics.

    In float64: the two engines round differently in float32 (channels-last convolutions, merged BNs), and twenty
    SGD steps of a 4-channel supernet with BN over 4x4 maps amplify a 1e-7 difference to whole percent (measured:
    parameters 15-100% apart after 20 float32 steps, 1e-14 in float64), so only float64 tells a different
    computation from rounding."""
    import harness.data as data_mod
    from functools import partialmethod

    monkeypatch.setattr(data_mod.DeviceBatches, "__init__",
                        partialmethod(data_mod.DeviceBatches.__init__, dtype=torch.float64))
    monkeypatch.setattr("harness.train.paths_per_pass", lambda device: 64)  # a GPU's: all of a plan's paths at once
    config.sampler["name"] = sampler
    config.supernet.bn_policy = policy
    config.data.resolution = 16
    config.estimate.recalib_batches = 2
    config.estimate.track_every, config.estimate.track_archs = 10, 4
    config.forgetting.decay_tracers, config.forgetting.decay_lags = 2, [1, 2]
    metrics = {}
    default = torch.get_default_dtype()
    torch.set_default_dtype(torch.float64)  # the supernet's parameters
    try:
        for engine in ("eager", "batched"):
            config.train.engine = config.estimate.engine = engine
            metrics[engine] = run_experiment(config, tmp_path / engine, progress=False)
    finally:
        torch.set_default_dtype(default)
    for name in ("estimates.csv", "train_log.csv", "probes.csv", "decay.csv", "progress.csv"):
        a, b = (pd.read_csv(tmp_path / e / name) for e in ("eager", "batched"))
        assert a.shape == b.shape and len(a) > 0, name
        a, b = (t.drop(columns=[c for c in t.columns if c.endswith("seconds")]) for t in (a, b))  # timings
        num = list(a.select_dtypes("number").columns)
        assert (a.drop(columns=num) == b.drop(columns=num)).all().all(), name
        assert b[num].to_numpy() == pytest.approx(a[num].to_numpy(), rel=1e-9, abs=1e-9, nan_ok=True), name
    ra, rb = metrics["eager"]["ranking"], metrics["batched"]["ranking"]
    for key in ("kendall_tau", "spearman", "precision_top10pct", "regret_top1"):
        assert rb[key]["value"] == pytest.approx(ra[key]["value"], rel=1e-9, nan_ok=True), key
