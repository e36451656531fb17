"""Several runs at once (harness/pool.py): `run --seeds --jobs` and the demo's workers. Bad `--seeds` and
`--jobs` values are in tests/test_badinput.py (CLI_CASES)."""
import json

import pandas as pd
import pytest

from harness.cli import main
from harness.pool import plan_workers

CONFIG = "configs/demo-digitsm.toml"
# a short run: 40 passes, the 200 ground-truth architectures on 100 images, no forgetting measurements
TINY = ["train.max_paths=40", "data.valid_subset=100", "train.checkpoint_every=20", "metrics.bootstrap=50", "estimate.recalib_batches=1",
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
    finishes, the error and its traceback stay in seed-1, and the exit code is a user error's (2), as for one run."""
    out = tmp_path / "runs"
    assert main(_args("--seeds", "1", "--set", "train.lr=0.5", "--out", str(out))) == 0
    (out / "seed-1" / "metrics.json").unlink()  # now an unfinished run of a different config
    capfd.readouterr()
    assert main(_args("--seeds", "0,1", "--jobs", str(jobs), "--out", str(out))) == 2  # bad input: a user error
    err = capfd.readouterr().err
    assert "seed-1: failed" in err and "1 of 2 runs failed (bad input" in err and "different config" in err
    assert (out / "seed-0" / "metrics.json").exists() and not (out / "seed-1" / "metrics.json").exists()
    assert "RunDirError" in (out / "seed-1" / "error.txt").read_text()


def test_a_demo_run_refusing_bad_input_is_a_user_error(tmp_path, capsys):
    """A run of the demo that fails on bad input (its directory holds another experiment's unfinished run) ends the
    demo with the user-error status and one line, not as a harness bug."""
    out = tmp_path / "demo"
    assert main(["demo", "--out", str(out), "--strategy", "params", "--quiet", "--set", "metrics.bootstrap=50"]) == 0
    (out / "params" / "metrics.json").unlink()
    capsys.readouterr()
    assert main(["demo", "--out", str(out), "--strategy", "params", "--quiet", "--set", "metrics.bootstrap=60"]) == 2
    err = capsys.readouterr().err
    assert "nb201-harness: error: 1 demo run(s) failed: params: RunDirError" in err and "Traceback" not in err
