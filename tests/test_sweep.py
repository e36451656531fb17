"""`nb201-harness sweep`: a grid of runs from one file, resumable after kill -9, on the local pool and on Ray."""
from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from harness.config import ConfigError
from harness.sweep import load_sweep, run_name, run_sweep

ROOT = Path(__file__).resolve().parents[1]
TINY = {"supernet.C": 4, "supernet.N": 1, "train.max_paths": 120, "train.checkpoint_every": 10,
        "train.log_every": 10, "forgetting.probes": 0,
        "forgetting.decay_tracers": 0, "metrics.bootstrap": 20, "run.device": "cpu"}


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
    bad = _sweep_file(tmp_path, {"sampler.name": ["uniform", "no-such-sampler"]})
    with pytest.raises(ConfigError, match="run name-no-such-sampler: .*no-such-sampler"):
        load_sweep(bad).runs()


@pytest.mark.parametrize("text, match", [
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
def test_the_ray_engine_gives_the_local_engines_metrics(tmp_path):
    ray = pytest.importorskip("ray")
    grid = {"sampler.name": ["uniform"], "run.seed": [0, 1]}
    local, remote = tmp_path / "local", tmp_path / "ray"
    local.mkdir(), remote.mkdir()
    run_sweep(load_sweep(_sweep_file(local, grid)), progress=False)
    ray.init(num_cpus=2, include_dashboard=False, log_to_driver=False)
    try:
        _, errors = run_sweep(load_sweep(_sweep_file(remote, grid, gpus=0)), engine="ray", progress=False)
    finally:
        ray.shutdown()
    assert not errors
    assert _metrics(remote / "out") == _metrics(local / "out") and len(_metrics(local / "out")) == 2


def test_the_ray_engine_without_ray_says_how_to_install_it(tmp_path, monkeypatch):
    monkeypatch.setitem(sys.modules, "ray", None)  # import ray fails
    with pytest.raises(ConfigError, match=r"pip install -e '\.\[ray\]'"):
        run_sweep(load_sweep(_sweep_file(tmp_path, {"run.seed": [0]})), engine="ray", progress=False)
