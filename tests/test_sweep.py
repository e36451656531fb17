"""`nb201-harness sweep`: a grid of runs from one file, resumable after kill -9, on the local pool and on Ray."""
from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
import tomllib
from pathlib import Path

import pytest
import tomli_w

from harness.config import PATH_KEYS, ConfigError
from harness.sweep import SweepRun, load_sweep, run_name, run_sweep, status

from .conftest import require_shared

ROOT = Path(__file__).resolve().parents[1]
TINY = {"supernet.C": 4, "supernet.N": 1, "train.max_paths": 120, "train.checkpoint_every": 10,
        "train.log_every": 10, "forgetting.probes": 0,
        "forgetting.decay_tracers": 0, "metrics.bootstrap": 20, "run.device": "cpu", "data.valid_subset": 100}


def _sweep_file(tmp_path: Path, grid: dict | None = None, **extra) -> Path:
    lines = [f'base = "{ROOT / "configs" / "demo-digitsm.toml"}"', f'out = "{tmp_path / "out"}"', "[set]"]
    lines += [f'"{k}" = {json.dumps(v)}' for k, v in TINY.items()]
    lines += ["[grid]"] + [f'"{k}" = {json.dumps(v)}' for k, v in (grid or {
        "sampler.name": ["uniform", "fairnas"], "run.seed": [0, 1]}).items()]
    lines += ["[resources]", "cpus = 1"] + [f"{k} = {json.dumps(v)}" for k, v in extra.items()]
    path = tmp_path / "sweep.toml"
    path.write_text("\n".join(lines) + "\n")
    return path


def _metrics(out: Path) -> dict:
    return {d.name: json.loads((d / "metrics.json").read_text())["ranking"] for d in sorted(out.iterdir())
            if (d / "metrics.json").exists()}


def test_a_sweep_expands_to_stable_runs_and_checks_every_config_first(tmp_path):
    sweep = load_sweep(_sweep_file(tmp_path))
    runs = sweep.runs()
    assert [r.name for r in runs] == ["name-uniform_seed-0", "name-uniform_seed-1", "name-fairnas_seed-0",
                                      "name-fairnas_seed-1"]
    assert [(r.config.sampler["name"], r.config.run.seed) for r in runs] == [
        ("uniform", 0), ("uniform", 1), ("fairnas", 0), ("fairnas", 1)]
    assert all(r.config.supernet.C == 4 and r.run_dir == tmp_path / "out" / r.name for r in runs)
    assert run_name({"train.lr": 0.05, "data.augment": False}) == "lr-0.05_augment-false"
    from harness.sweep import _slug

    assert [_slug(v) for v in (".", "..", "a/b", "l2_norm")] == ["+", "++", "a+b", "l2_norm"]  # never a path step
    bad = _sweep_file(tmp_path, {"sampler.name": ["uniform", "no-such-sampler"]})
    with pytest.raises(ConfigError, match="run name-no-such-sampler: .*no-such-sampler"):
        load_sweep(bad).runs()


def test_variants_are_named_bundles_of_settings_crossed_with_the_grid(tmp_path):
    path = tmp_path / "s.toml"
    path.write_text(f'base = "{ROOT / "configs" / "demo-digitsm.toml"}"\n[set]\n"train.lr" = 0.2\n'
                    '"shrink.min_ops" = 3\n[grid]\n"run.seed" = [0, 1]\n[variants.none]\n[variants.angle]\n'
                    '"shrink.rule" = "angle"\n"train.lr" = 0.05\n')
    runs = load_sweep(path).runs(tmp_path / "o")
    assert [r.name for r in runs] == ["none_seed-0", "none_seed-1", "angle_seed-0", "angle_seed-1"]
    assert [(r.config.shrink.rule, r.config.train.lr, r.config.shrink.min_ops, r.config.run.seed) for r in runs] == [
        ("none", 0.2, 3, 0), ("none", 0.2, 3, 1), ("angle", 0.05, 3, 0), ("angle", 0.05, 3, 1)]  # a variant overrides [set]
    path.write_text('name = "{variant}-seed{run.seed}"\n' + path.read_text())  # the reports' names
    assert [r.name for r in load_sweep(path).runs()] == ["none-seed0", "none-seed1", "angle-seed0", "angle-seed1"]
    path.write_text(path.read_text().replace("{variant}-seed{run.seed}", "{variant}/seed{run.seed}"))
    assert [r.run_dir for r in load_sweep(path).runs(tmp_path)][-1] == tmp_path / "angle" / "seed1"
    path.write_text(path.read_text().replace("{variant}/seed{run.seed}", "{variant}"))
    with pytest.raises(ConfigError, match="gives two runs one directory"):
        load_sweep(path).runs()


@pytest.mark.parametrize("text, match", [
    ('base = "{base}"\n[grid]\n"run.seed" = [0]\n[variants.a]\n"run.seed" = 1', "sets \\['run.seed'\\], which \\[grid\\] varies"),
    ('base = "{base}"\n[variants]\n"a b" = {{}}', "variant name 'a b'"),
    ('base = "{base}"\n[variants]\na = 3', "\\[variants.a\\] must be a table"),
    ('base = "{base}"\nname = "{{seed}}"', "name template field\\(s\\) \\['seed'\\]; valid: \\[\\]"),
    ('base = "{base}"\nname = "a b"', "outside its fields use letters"),
    ('base = "{base}"\nname = "../x"', "between non-empty folder names"),
    ('base = "x.toml"', "base config .*x.toml does not exist"),
    ('base = "{base}"\n[grid]\n"run.seed" = []', "must be a non-empty list"),
    ('base = "{base}"\n[grid]\n"run.seed" = [1, 1]', "repeats a value"),
    ('base = "{base}"\n[set]\n"run.seed" = 1\n[grid]\n"run.seed" = [2]', "both in \\[set\\] and \\[grid\\]"),
    ('base = "{base}"\n[resources]\ngpus = -1', "gpus = -1: must be a number >= 0"),
    ('base = "{base}"\n[resources]\ncores = 2', "unknown \\[resources\\] key"),
    ('base = "{base}"\nseeds = 3', "unknown key"),
    ('base = "{base}\n', "not a valid sweep file"),
])
def test_bad_sweep_files_are_one_line_errors(tmp_path, text, match):
    path = tmp_path / "s.toml"
    path.write_text(text.format(base=ROOT / "configs" / "demo-digitsm.toml") + "\n")
    with pytest.raises(ConfigError, match=match):
        load_sweep(path)


@pytest.mark.slow  # two small sweeps, one of them killed and resumed (about a minute on 2 cores)
def test_a_killed_sweep_resumes_to_identical_metrics(tmp_path):
    whole = tmp_path / "whole"
    whole.mkdir()
    run_sweep(load_sweep(_sweep_file(whole)), progress=False)
    expected = _metrics(whole / "out")
    assert len(expected) == 4

    killed = tmp_path / "killed"
    killed.mkdir()
    path = _sweep_file(killed)
    cmd = [sys.executable, "-m", "harness.cli", "sweep", str(path), "--quiet"]
    proc = subprocess.Popen(cmd, cwd=ROOT, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                            start_new_session=True)
    deadline = time.time() + 300
    while not any((killed / "out").glob("*/checkpoint.pt")) and time.time() < deadline:
        time.sleep(0.2)
    time.sleep(1.0)
    os.killpg(proc.pid, signal.SIGKILL)  # kill -9 of the sweep and its worker processes
    proc.wait()
    assert len(_metrics(killed / "out")) < 4  # it was stopped part way
    done = subprocess.run(cmd, cwd=ROOT, capture_output=True, text=True, timeout=600)
    assert done.returncode == 0, done.stderr[-2000:]
    assert _metrics(killed / "out") == expected
    assert (killed / "out" / "compare" / "summary.csv").exists()
    stamps = {p: p.stat().st_mtime_ns for p in (killed / "out").glob("*/metrics.json")}
    again = subprocess.run(cmd, cwd=ROOT, capture_output=True, text=True, timeout=600)  # all done: nothing reruns
    assert again.returncode == 0
    assert {p: p.stat().st_mtime_ns for p in (killed / "out").glob("*/metrics.json")} == stamps


@pytest.mark.slow  # starts a local Ray instance
def test_the_ray_engine_gives_the_local_engines_metrics(tmp_path, capsys, monkeypatch):
    ray = pytest.importorskip("ray")
    from harness.progress import Board

    grid = {"sampler.name": ["uniform"], "run.seed": [0, 1]}
    local, remote = tmp_path / "local", tmp_path / "ray"
    local.mkdir(), remote.mkdir()
    run_sweep(load_sweep(_sweep_file(local, grid)), progress=False)
    reports, update = [], Board.update  # what reached this process's board from the tasks, through the Ray queue
    monkeypatch.setattr(Board, "update", lambda self, *item: (reports.append(item), update(self, *item))[1])
    ray.init(num_cpus=2, include_dashboard=False, log_to_driver=False)
    try:
        _, errors = run_sweep(load_sweep(_sweep_file(remote, grid, gpus=0)), engine="ray", progress=True)
    finally:
        ray.shutdown()
    assert not errors
    err = capsys.readouterr().err  # the board's lines (the tasks report through a Ray queue)
    assert "sweep: name-uniform_seed-0: done in" in err and "sweep: name-uniform_seed-1: done in" in err
    for name in ("name-uniform_seed-0", "name-uniform_seed-1"):  # each task's start and training steps arrived
        phases = {phase for n, phase, *_ in reports if n == name}
        assert "starting" in phases and "train" in phases, (name, phases)
    assert _metrics(remote / "out") == _metrics(local / "out") and len(_metrics(local / "out")) == 2


def test_the_ray_engine_without_ray_says_how_to_install_it(tmp_path, monkeypatch):
    monkeypatch.setitem(sys.modules, "ray", None)  # import ray fails
    with pytest.raises(ConfigError, match=r"pip install -e '\.\[ray\]'"):
        run_sweep(load_sweep(_sweep_file(tmp_path, {"run.seed": [0]})), engine="ray", progress=False)


def test_a_run_directory_another_process_writes_is_refused_until_that_process_dies(tmp_path):
    # a worker of a sweep whose parent alone was killed -9 still writes its run: a rerun must not write there too
    from harness.runner import RunDirError, create_run_dir, run_experiment

    sweep = load_sweep(_sweep_file(tmp_path, {"run.seed": [0]}))
    (run,) = sweep.runs()
    create_run_dir(run.run_dir, run.config, "new")  # an unfinished run
    holder = subprocess.Popen([sys.executable, "-c", "import sys, time; from pathlib import Path; "
                               "from harness.runner import run_dir_lock\n"
                               "with run_dir_lock(Path(sys.argv[1])):\n    time.sleep(300)", str(run.run_dir)],
                              cwd=ROOT)
    try:
        deadline = time.time() + 60
        lock = run.run_dir / ".lock"
        while not (lock.exists() and str(holder.pid) in lock.read_text()) and time.time() < deadline:
            time.sleep(0.1)
        with pytest.raises(ConfigError, match=rf"being written by another process \(pid and host: {holder.pid} "):
            run_sweep(sweep, progress=False)  # refused before any run starts
        with pytest.raises(RunDirError, match=rf"being written by another process \(pid and host: {holder.pid} "):
            run_experiment(run.config, run.run_dir, progress=False)
        assert sorted(p.name for p in run.run_dir.iterdir()) == [".lock", "config.toml"]  # nothing written
    finally:
        holder.kill()  # kill -9: the kernel drops its lock
        holder.wait()
    _, errors = run_sweep(sweep, progress=False)
    assert not errors and (run.run_dir / "metrics.json").exists()
    assert not (run.run_dir / ".lock").exists()  # a finished directory holds the run only


def test_the_committed_reports_are_sweeps_over_every_registered_method():
    from harness.estimators import ESTIMATORS
    from harness.samplers import SAMPLERS

    require_shared()  # the reports' sweeps are over configs that point at ../shared/data
    files = sorted(ROOT.glob("reports/*/sweep*.toml"))
    assert {f.parent.name for f in files} == {"strategies-cifar10-cpu", "shrinking-cifar10-cpu", "estimators-cifar10",
                                              "differentiable-cifar10-cpu", "unsampled-ops"}
    for f in files:  # every run's config is valid, and each make.sh runs its sweeps
        assert load_sweep(f).runs(), f
        assert f"{f.name}" in (f.parent / "make.sh").read_text(), f
    strategies = load_sweep(ROOT / "reports/strategies-cifar10-cpu/sweep.toml").grid["sampler.name"]
    assert sorted(strategies) == sorted(n for n in SAMPLERS.names() if not SAMPLERS.get(n).differentiable)
    estimators = load_sweep(ROOT / "reports/estimators-cifar10/sweep.toml").grid["estimator.name"]
    assert sorted(estimators) == sorted(n for n in ESTIMATORS.names() if not ESTIMATORS.get(n).trains)
    for report in ("shrinking-cifar10-cpu", "strategies-cifar10-cpu", "differentiable-cifar10-cpu"):
        runs = load_sweep(ROOT / f"reports/{report}/sweep.toml").runs()  # the committed directory names
        assert {r.name for r in runs} == {p.name for p in (ROOT / f"reports/{report}/runs").iterdir()}
        # and their runs count as finished (also those made before some keys existed: the test below), so a
        # make.sh that reruns a few (ONLY=...) keeps the others; their paths are relative to the checkout, so
        # this holds wherever it lives
        assert {status(r) for r in runs} == {"done"}, report
        for r in runs:
            stored = tomllib.loads((r.run_dir / "config.toml").read_text())
            assert not [(s, k) for s, k in PATH_KEYS if Path(stored[s].get(k, "")).is_absolute()], r.run_dir


def test_a_finished_run_made_before_a_key_existed_counts_as_done_unless_it_differs(tmp_path):
    """A committed run whose config.toml predates a section (here [shrink] and [split]: emulated by removing them
    from a copy of one) is done for a sweep at those keys' defaults; a real difference, and an added key at a
    value other than its default, still count."""
    import copy
    import shutil

    require_shared()  # the committed run's sweep is over a config that points at ../shared/data
    run = load_sweep(ROOT / "reports/strategies-cifar10-cpu/sweep.toml").runs()[0]
    old = tmp_path / run.name
    old.mkdir()
    shutil.copy(run.run_dir / "metrics.json", old)
    stored = tomllib.loads((run.run_dir / "config.toml").read_text())
    assert stored["shrink"]["rule"] == "none" and "split" in stored  # what the copy leaves out
    del stored["shrink"], stored["split"]
    (old / "config.toml").write_text(tomli_w.dumps(stored))
    assert status(SweepRun(run.name, run.config, old)) == "done"
    other = copy.deepcopy(run.config)
    other.train.lr, other.shrink.rule = 0.5, "angle"
    with pytest.raises(ConfigError, match=r"another config \(shrink.rule = \(absent\) vs 'angle'; train.lr = 0.025 "
                                          r"vs 0.5\)"):
        status(SweepRun(run.name, other, old))
