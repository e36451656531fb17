"""Several runs at once (harness/pool.py): `run --seeds --jobs` and the demo's workers."""
import json

import pandas as pd
import pytest

from harness.cli import main
from harness.pool import plan_workers

CONFIG = "configs/demo-digitsm.toml"
# a short run: 40 passes, the 200 ground-truth architectures on 500 images, no forgetting measurements
TINY = ["train.max_paths=40", "train.checkpoint_every=20", "metrics.bootstrap=50", "estimate.recalib_batches=1",
        "forgetting.probes=0", "forgetting.decay_tracers=0"]


def _args(*extra: str) -> list[str]:
    out = ["run", CONFIG, "--quiet"]
    for s in TINY:
        out += ["--set", s]
    return out + list(extra)


def _result(run_dir) -> tuple[pd.DataFrame, dict]:
    metrics = json.loads((run_dir / "metrics.json").read_text())
    return pd.read_csv(run_dir / "estimates.csv"), metrics["ranking"]


def test_plan_workers_never_oversubscribes_the_cores(monkeypatch):
    monkeypatch.setattr("os.cpu_count", lambda: 8)
    assert plan_workers(3) == (3, 2)  # never more workers than runs
    assert plan_workers(20) == (8, 1)
    assert plan_workers(20, workers=2) == (2, 4)
    assert plan_workers(20, workers=2, threads=1) == (2, 1)
    assert plan_workers(1, workers=4) == (1, 8)


@pytest.mark.slow
def test_seeds_at_once_equal_the_same_runs_one_by_one(tmp_path, capsys):
    """Two seeds in two worker processes give the estimates and metrics of the same two runs made one by one
    (CPU, one thread each in both cases): the worker count changes only the wall time."""
    assert main(_args("--seeds", "3,4", "--jobs", "2", "--threads", "1", "--out", str(tmp_path / "pool"))) == 0
    lines = [json.loads(line) for line in capsys.readouterr().out.splitlines() if line.startswith("{")]
    assert [line["seed"] for line in lines] == [3, 4]
    for seed in (3, 4):
        single = tmp_path / f"single-{seed}"
        assert main(_args("--set", f"run.seed={seed}", "--threads", "1", "--out", str(single))) == 0
        (est_a, rank_a), (est_b, rank_b) = _result(tmp_path / "pool" / f"seed-{seed}"), _result(single)
        pd.testing.assert_frame_equal(est_a, est_b)
        assert rank_a == rank_b
    assert _result(tmp_path / "pool" / "seed-3")[0]["estimate"].tolist() != \
        _result(tmp_path / "pool" / "seed-4")[0]["estimate"].tolist()  # the seeds did differ


@pytest.mark.slow
@pytest.mark.parametrize("jobs", [1, 2])
def test_a_failed_run_leaves_its_traceback_and_the_others_finish(tmp_path, capfd, jobs):
    """seed-1's directory holds another experiment's unfinished run, so that run refuses to start; seed-0 still
    finishes, the error and its traceback stay in seed-1, and the exit code says a run failed."""
    out = tmp_path / "runs"
    assert main(_args("--seeds", "1", "--set", "train.lr=0.5", "--out", str(out))) == 0
    (out / "seed-1" / "metrics.json").unlink()  # now an unfinished run of a different config
    capfd.readouterr()
    assert main(_args("--seeds", "0,1", "--jobs", str(jobs), "--out", str(out))) == 1
    err = capfd.readouterr().err
    assert "seed-1: failed" in err and "1 of 2 runs failed" in err and "different config" in err
    assert (out / "seed-0" / "metrics.json").exists() and not (out / "seed-1" / "metrics.json").exists()
    assert "RunDirError" in (out / "seed-1" / "error.txt").read_text()


@pytest.mark.parametrize("extra,message", [
    (["--jobs", "2"], "give them with --seeds"),
    (["--seeds", "0,0"], "repeats a seed"),
    (["--seeds", "0,x"], "comma-separated integers"),
    (["--seeds", "0,1", "--jobs", "0"], "must be >= 1"),
    (["--seeds", "0,1", "--set", "train.lr=-1"], "lr"),
])
def test_bad_seed_options_fail_in_one_line_before_any_run(tmp_path, capsys, extra, message):
    assert main(_args(*extra, "--out", str(tmp_path / "x"))) == 2
    err = capsys.readouterr().err.strip()
    assert message in err and len(err.splitlines()) == 1
    assert not (tmp_path / "x").exists()
