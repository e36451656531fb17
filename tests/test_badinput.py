"""Bad input, crafted files, faults and interruptions (docs/bad-input.md): one clear line and the documented exit
status, before any work starts; nothing already computed is lost or falsified; no code runs from a data file;
a killed run resumes to exactly the metrics of an uninterrupted one.

Every row of docs/bad-input.md names the test (or ``CASES`` id) that backs it; test_every_documented_row_is_tested
checks that each exists.
"""
from __future__ import annotations

import json
import os
import pickle
import re
import shutil
import signal
import subprocess
import sys
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import torch

import harness.train as train_mod
from harness.cli import EXIT_CODES, main
from harness.config import load_config
from harness.runner import run_experiment
from harness.safeload import load_torch

from .test_runner import ARCHS

ROOT = Path(__file__).resolve().parents[1]
DOC = ROOT / "docs" / "bad-input.md"


class Marker:
    """Unpickling this creates ``path``: the proof that a loader ran code from a file."""

    def __init__(self, path: Path):
        self.path = str(path)

    def __reduce__(self):
        return (os.system, (f"touch {self.path}",))


# ----------------------------------------------------------------------------- fixtures

@pytest.fixture
def project(tmp_path, image_folder):
    """A config file (relative paths: they resolve against its folder) for a tiny run, and its ground truth.
    120 images, 60 for training in batches of 12: 5 steps an epoch, checkpoints every 3 steps (mid-epoch)."""
    folder = tmp_path / "proj"
    folder.mkdir()
    shutil.copytree(image_folder, folder / "imgs")
    pd.DataFrame({"arch": ARCHS, "cifar10valid_valid_200": [50.0 + 5 * i for i in range(len(ARCHS))]}).to_csv(
        folder / "gt.csv", index=False)
    (folder / "run.toml").write_text(f"""
[run]
device = "cpu"
[data]
train_path = "imgs"
resolution = 8
cache_dir = "cache"
[supernet]
C = 4
N = 1
[train]
max_steps = 20
batch_size = 12
lr = 0.1
log_every = 5
checkpoint_every = 3
[estimate]
archs = "list"
arch_list = {json.dumps(ARCHS)}
batch_size = 30
[forgetting]
probes = 3
decay_tracers = 2
decay_lags = [1, 2]
[groundtruth]
source = "gt.csv"
[metrics]
bootstrap = 50
""")
    return folder


def run_cli(*argv) -> int:
    return main([str(a) for a in argv])


def one_line(capsys, code_expected: int, code: int, pattern: str) -> str:
    err = capsys.readouterr().err.strip()
    assert code == code_expected, err
    last = err.splitlines()[-1]
    assert "Traceback" not in err and re.search(pattern, last), err
    return last


# ----------------------------------------------------------------------------- no code from data files

def test_crafted_official_pth_runs_no_code(tmp_path, capsys):
    marker = tmp_path / "ran"
    for name, legacy in (("zip.pth", False), ("legacy.pth", True)):
        evil = tmp_path / name
        torch.save({"meta_archs": [], "arch2infos": {0: Marker(marker)}, "evaluated_indexes": []}, evil,
                   _use_new_zipfile_serialization=not legacy)
        code = run_cli("gt", "info", "--source", evil)
        one_line(capsys, 2, code, r"refusing to load: it names the global (posix|os)\.system.*--trust-pickle")
        assert not marker.exists()


def test_crafted_plain_pickle_as_official_file_runs_no_code(tmp_path, capsys):
    marker, evil = tmp_path / "ran", tmp_path / "plain.pth"
    evil.write_bytes(pickle.dumps(Marker(marker)))
    code = run_cli("gt", "info", "--source", evil)
    one_line(capsys, 2, code, r"plain\.pth")
    assert not marker.exists()


def test_trust_pickle_is_the_only_way_around_and_it_warns(tmp_path, capsys):
    marker, evil = tmp_path / "ran", tmp_path / "t.pth"
    torch.save({"x": Marker(marker)}, evil)
    run_cli("gt", "info", "--source", evil, "--trust-pickle")
    assert marker.exists()  # the user said they trust it: it loaded unrestricted (then failed as not NB201)
    assert "unrestricted unpickling" in capsys.readouterr().err


def _cifar_root(root: Path, evil: Path | None = None) -> Path:
    base = root / "cifar-10-batches-py"
    base.mkdir(parents=True)
    flat = np.random.default_rng(0).integers(0, 256, (4, 3072), dtype=np.uint8)
    for i, name in enumerate([f"data_batch_{j}" for j in range(1, 6)] + ["test_batch"]):
        payload = {b"data": flat, b"labels": [(i + k) % 10 for k in range(4)]}
        if evil is not None and name == "data_batch_3":
            payload[b"extra"] = Marker(evil)
        (base / name).write_bytes(pickle.dumps(payload, protocol=2))
    (base / "batches.meta").write_bytes(pickle.dumps({b"label_names": [f"c{k}".encode() for k in range(10)]}))
    return root


def test_crafted_cifar_batch_runs_no_code(tmp_path):
    from harness.data import load_dataset
    from harness.safeload import UnsafeFileError

    marker = tmp_path / "ran"
    root = _cifar_root(tmp_path / "evil", marker)
    with pytest.raises(UnsafeFileError, match=r"data_batch_3: refusing to load.*system"):
        load_dataset(f"cifar10:{root}", "train")
    assert not marker.exists()
    good = load_dataset(f"cifar10:{_cifar_root(tmp_path / 'good')}", "train")  # the real layout still loads
    assert good.images.shape == (20, 32, 32, 3)


@pytest.mark.parametrize("name", ["checkpoint.pt", "supernet.pt"])
def test_crafted_run_checkpoint_runs_no_code(project, tmp_path, capsys, monkeypatch, name):
    cfg = load_config(project / "run.toml")
    out = tmp_path / "run"
    _kill_at(8, cfg, out, monkeypatch)  # a real unfinished run directory
    marker = tmp_path / "ran"
    torch.save({"model": Marker(marker)}, out / name)
    code = run_cli("run", project / "run.toml", "--out", out, "--quiet")
    one_line(capsys, 2, code, rf"{name}: refusing to load")
    assert not marker.exists()


# ----------------------------------------------------------------------------- resume equals uninterrupted

def _kill_at(step: int, cfg, out: Path, monkeypatch, owner=train_mod) -> None:
    """Training dies at ``step`` (in-process stand-in for kill -9: nothing is written on the way out); ``owner``
    holds the ``train_step`` that dies (a differentiable sampler class has its own)."""
    real = owner.train_step

    def die(*args):
        if args[4] == step:
            raise SystemExit("killed")
        return real(*args)

    monkeypatch.setattr(owner, "train_step", die)
    with pytest.raises(SystemExit):
        run_experiment(cfg, out, progress=False)
    monkeypatch.setattr(owner, "train_step", real)


def _same_results(a: Path, b: Path) -> None:
    for name in ("train_log.csv", "probes.csv", "decay.csv", "estimates.csv"):
        fa, fb = pd.read_csv(a / name), pd.read_csv(b / name)
        fa, fb = (f.drop(columns=[c for c in ("seconds",) if c in f]) for f in (fa, fb))
        pd.testing.assert_frame_equal(fa, fb, check_exact=True, obj=name)
    ma, mb = (json.loads((d / "metrics.json").read_text()) for d in (a, b))
    assert ma["ranking"] == mb["ranking"] and ma["forgetting"] == mb["forgetting"]
    assert ma["train"]["final_loss"] == mb["train"]["final_loss"]


KILL = """
import os, signal, sys
import harness.train as T
from harness.config import load_config
from harness.runner import run_experiment
from harness.safeload import load_torch
real = T.train_step
def die(*args):
    if args[4] == int(sys.argv[3]):
        os.kill(os.getpid(), signal.SIGKILL)
    return real(*args)
T.train_step = die
run_experiment(load_config(sys.argv[1]), sys.argv[2], progress=False)
"""


@pytest.mark.slow
def test_kill_9_mid_epoch_resumes_to_identical_metrics(project, tmp_path):
    cfg = load_config(project / "run.toml")
    run_experiment(cfg, tmp_path / "whole", progress=False)
    cut = tmp_path / "cut"
    # SIGKILL at step 8: the last checkpoint is step 6, one batch into the second epoch (5 steps an epoch), with
    # one step of loss summed towards the log row of step 10
    proc = subprocess.run([sys.executable, "-c", KILL, str(project / "run.toml"), str(cut), "8"], cwd=tmp_path,
                          capture_output=True, text=True, timeout=300)
    assert proc.returncode == -signal.SIGKILL, proc.stderr
    saved = load_torch(cut / "checkpoint.pt", "run checkpoint")
    assert saved["state"]["step"] == 6 and saved["batches"]["pos"] == 1 and saved["state"]["since"] == 1
    run_experiment(cfg, cut, progress=False)
    _same_results(tmp_path / "whole", cut)


@pytest.mark.slow
@pytest.mark.parametrize("variant", ["angle-shrinking", "darts"])
def test_mid_epoch_kill_of_shrinking_and_bilevel_runs_resumes_identically(project, tmp_path, monkeypatch, variant):
    from harness.samplers.differentiable import DARTSSampler

    sets = {"angle-shrinking": ["shrink.rule='angle'", "shrink.warmup_epochs=1", "shrink.shrink_every=1",
                                "shrink.min_ops=4", "shrink.estimate_space=4"],
            "darts": ["sampler.name='darts'", "search.alpha_every=1"]}[variant]
    cfg = load_config(project / "run.toml", sets)
    run_experiment(cfg, tmp_path / "whole", progress=False)
    # killed at step 8: the last checkpoint is step 6, mid-epoch (after angle's first round at step 5)
    _kill_at(8, cfg, tmp_path / "cut", monkeypatch, owner=DARTSSampler if variant == "darts" else train_mod)
    assert load_torch(tmp_path / "cut" / "checkpoint.pt", "run checkpoint")["state"]["step"] == 6
    run_experiment(cfg, tmp_path / "cut", progress=False)
    _same_results(tmp_path / "whole", tmp_path / "cut")
    extra = {"angle-shrinking": ["shrink.csv", "space_estimates.csv"], "darts": ["alpha.csv"]}[variant]
    for name in extra:
        pd.testing.assert_frame_equal(pd.read_csv(tmp_path / "whole" / name), pd.read_csv(tmp_path / "cut" / name),
                                      check_exact=True, obj=name)


@pytest.mark.slow
def test_kill_during_estimation_resumes_to_identical_metrics(project, tmp_path, monkeypatch):
    import harness.runner as runner_mod

    cfg = load_config(project / "run.toml")
    cfg.estimate.arch_batch = 2  # chunks of 2 architectures: the kill comes after the first of several
    run_experiment(cfg, tmp_path / "whole", progress=False)
    real, calls = runner_mod.estimate_archs, []

    def die_after_first_chunk(model, archs, *args, on_flush=None, **kw):
        if on_flush is None:  # forgetting probes
            return real(model, archs, *args, **kw)
        calls.append(1)

        def flush_then_die(chunk):
            on_flush(chunk)
            raise SystemExit("killed")

        return real(model, archs, *args, on_flush=flush_then_die, flush_every=2, **kw)

    monkeypatch.setattr(runner_mod, "estimate_archs", die_after_first_chunk)
    with pytest.raises(SystemExit):
        run_experiment(cfg, tmp_path / "cut", progress=False)
    monkeypatch.setattr(runner_mod, "estimate_archs", real)
    assert calls and len(pd.read_csv(tmp_path / "cut" / "estimates.partial.csv")) == 2
    run_experiment(cfg, tmp_path / "cut", progress=False)
    _same_results(tmp_path / "whole", tmp_path / "cut")


@pytest.mark.slow
def test_ctrl_c_checkpoints_and_says_how_to_resume(project, tmp_path, capsys, monkeypatch):
    cfg = load_config(project / "run.toml")
    run_experiment(cfg, tmp_path / "whole", progress=False)
    real = train_mod.train_step

    def ctrl_c(*args):
        if args[4] == 7:
            os.kill(os.getpid(), signal.SIGINT)  # a real SIGINT, delivered mid-step
        return real(*args)

    monkeypatch.setattr(train_mod, "train_step", ctrl_c)
    out = tmp_path / "cut"
    code = run_cli("run", project / "run.toml", "--out", out, "--quiet")
    last = one_line(capsys, 130, code, r"interrupted at step 8/20; checkpoint saved .*resume with: nb201-harness run")
    assert f"--out {out}" in last
    assert load_torch(out / "checkpoint.pt", "run checkpoint")["state"]["step"] == 8
    monkeypatch.setattr(train_mod, "train_step", real)
    assert run_cli("run", project / "run.toml", "--out", out, "--quiet") == 0
    _same_results(tmp_path / "whole", out)


def test_full_disk_during_a_checkpoint_loses_nothing(project, tmp_path, capsys, monkeypatch):
    cfg = load_config(project / "run.toml")
    run_experiment(cfg, tmp_path / "whole", progress=False)
    out, real_save, saves = tmp_path / "cut", torch.save, []

    def full_disk(obj, f, *a, **kw):
        saves.append(Path(f).name)
        if len(saves) == 3:  # the third checkpoint: half a file, then ENOSPC
            Path(f).write_bytes(b"PK\x03\x04 half a checkpoint")
            raise OSError(28, "No space left on device", str(f))
        return real_save(obj, f, *a, **kw)

    monkeypatch.setattr(torch, "save", full_disk)  # harness.io imports torch when it saves
    code = run_cli("run", project / "run.toml", "--out", out, "--quiet")
    one_line(capsys, 2, code, r"No space left on device")
    monkeypatch.setattr(torch, "save", real_save)
    assert load_torch(out / "checkpoint.pt", "run checkpoint")["state"]["step"] == 6  # the previous one, intact
    assert not [p for p in out.iterdir() if p.name.endswith(".tmp")]
    assert run_cli("run", project / "run.toml", "--out", out, "--quiet") == 0
    _same_results(tmp_path / "whole", out)


# ----------------------------------------------------------------------------- config errors before any write

CONFIG_CASES = {  # id: (override(s), message pattern)
    "confidence-2": ("metrics.confidence=2", r"confidence = 2.0: must lie strictly between 0 and 1"),
    "bootstrap-negative": ("metrics.bootstrap=-5", r"bootstrap = -5: must be >= 0"),
    "valid-subset-negative": ("data.valid_subset=-3", r"valid_subset = -3: must be >= 0"),
    "sampler-name-not-string": ("sampler.name=5", r"\[sampler\] name = 5: expected a string"),
    "sampler-option-value": (["sampler.name='nsas'", "sampler.lam=1.0"], r"lam must be < 1"),
    "magnitude-without-alpha": ("shrink.rule='magnitude'",
                                r"\[shrink\] rule = 'magnitude' scores ops by architecture parameters.*'uniform-alpha'"),
    "split-schedule-unknown": (["split.edges=[0]", "split.schedule='restart'"],
                               r"\[split\] schedule = 'restart'; valid: continue, fresh"),
    "split-fresh-at-start": (["split.edges=[0]", "split.schedule='fresh'"],
                             r"schedule = 'fresh' restarts the optimizer.*at_epochs > 0"),
    "per-cell-cells-set": (["sampler.name='per-cell'", "sampler.cells=3"], r"\[sampler\] cells is set by the harness"),
    "sampler-unknown-key": ("sampler.foo=1", r"unknown key in \[sampler\] for sampler 'uniform' 'foo'; valid: \(none"),
    "lr-negative": ("train.lr=-0.1", r"\[train\] lr = -0.1: must be > 0"),
    "lr-nan": ("train.lr=nan", r"\[train\] lr = nan: expected a finite number"),
    "train-path-missing": ("data.train_path='no/such/folder'", r"train_path: .*no/such/folder does not exist"),
    "gt-source-missing": ("groundtruth.source='absent.csv'", r"source: .*absent.csv is not a file"),
    "recalib-zero": (["supernet.bn_policy='recalibrate'", "estimate.recalib_batches=0"],
                     r"recalib_batches must be >= 1"),
    "device-gpu": ("run.device='gpu'", r"device = 'gpu': not a device name"),
    "device-cuda-absent": ("run.device='cuda:0'", r"CUDA is not available|only \d+ CUDA device"),
    "seed-negative": ("run.seed=-1", r"seed = -1: must be in 0\.\.4294967295"),
    "shrink-warmup-outside": ("shrink.rule='angle'", r"warmup_epochs = 50.0 is not inside the run"),
    "bn-scope-unknown": ("supernet.bn_scope='all'", r"\[supernet\] bn_scope = 'all'; valid: cells, cells\+lastact"),
    "holdout-unknown": ("data.holdout='sideways'", r"\[data\] holdout = 'sideways'; valid: train, test"),
    "holdout-test-without-test-set": ("data.holdout='test'", r"holdout = 'test' needs \[data\] test_path"),
}


@pytest.mark.parametrize("case", sorted(CONFIG_CASES))
def test_config_error_before_anything_is_written(project, tmp_path, capsys, case):
    overrides, pattern = CONFIG_CASES[case]
    sets = [a for o in ([overrides] if isinstance(overrides, str) else overrides) for a in ("--set", o)]
    if case == "device-cuda-absent" and torch.cuda.is_available():
        sets = ["--set", f"run.device='cuda:{torch.cuda.device_count()}'"]
    out = tmp_path / "out"
    code = run_cli("run", project / "run.toml", *sets, "--out", out, "--quiet")
    one_line(capsys, 2, code, pattern)
    assert not out.exists()


def test_non_utf8_config_names_the_file(tmp_path, capsys):
    bad = tmp_path / "latin1.toml"
    bad.write_bytes("[run]\nname = 'caf\xe9'\n".encode("latin-1"))
    one_line(capsys, 2, run_cli("run", bad), rf"{re.escape(str(bad))}: not UTF-8")


def test_relative_paths_resolve_against_the_config_file(project, tmp_path, monkeypatch):
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    monkeypatch.chdir(elsewhere)
    cfg = load_config(project / "run.toml")  # from another folder: the file's relative paths still work
    assert cfg.groundtruth.source == str(project / "gt.csv") and cfg.data.train_path == str(project / "imgs")
    assert cfg.data.cache_dir == str(project / "cache")
    (elsewhere / "x.csv").write_text("arch\n")
    override = load_config(project / "run.toml", ["groundtruth.source='x.csv'"])  # overrides: the current folder
    assert override.groundtruth.source == str(elsewhere / "x.csv")


def test_rerun_with_another_config_says_which_keys_differ(project, tmp_path, capsys, monkeypatch):
    out = tmp_path / "run"
    _kill_at(8, load_config(project / "run.toml"), out, monkeypatch)
    code = run_cli("run", project / "run.toml", "--set", "train.lr=0.2", "--out", out, "--quiet")
    one_line(capsys, 2, code, r"different config \(train\.lr = 0\.1 vs 0\.2\)")
    assert (out / "checkpoint.pt").exists()


def test_leftovers_of_a_failed_start_are_reused(project, tmp_path, capsys):
    out = tmp_path / "run"
    out.mkdir()
    (out / "config.toml").write_text("[run]\nname = 'an earlier, failed start'\n")
    (out / "split.json").write_text("{}")
    assert run_cli("run", project / "run.toml", "--out", out, "--quiet") == 0
    assert "leftovers of a failed start" in capsys.readouterr().err


# ----------------------------------------------------------------------------- nothing lost or falsified

def test_gt_export_refuses_its_own_source_and_existing_files(tmp_path, capsys):
    table = tmp_path / "t.csv"
    pd.DataFrame({"arch": ARCHS[:2], "cifar10valid_valid_200": [50.0, 60.0], "cifar10valid_valid_200_seed777":
                  [49.0, 61.0], "cifar10valid_valid_200_seed888": [51.0, 59.0]}).to_csv(table, index=False)
    before = table.read_bytes()
    one_line(capsys, 2, run_cli("gt", "export", "--source", table, "--out", table), r"is the input file itself")
    one_line(capsys, 2, run_cli("gt", "export", "--source", table, "--out", table, "--force"),
             r"is the input file itself")
    assert table.read_bytes() == before
    other = tmp_path / "other.csv"
    other.write_text("keep me")
    one_line(capsys, 2, run_cli("gt", "export", "--source", table, "--out", other), r"exists; .*--force")
    assert other.read_text() == "keep me"
    assert run_cli("gt", "export", "--source", table, "--out", other, "--force") == 0


@pytest.fixture(scope="module")
def two_runs(tmp_path_factory):
    """A finished uniform run and a finished fairnas run of the demo benchmark, shortened."""
    root = tmp_path_factory.mktemp("runs")
    archs = pd.read_csv(ROOT / "data" / "digitsm" / "digitsm_gt.csv")["arch"].head(12).tolist()
    for name in ("uniform", "fairnas"):
        cfg = load_config(ROOT / "configs" / "demo-digitsm.toml",
                          [f"sampler.name='{name}'", "train.max_paths=60", "metrics.bootstrap=0",
                           "forgetting.probes=0", "forgetting.decay_tracers=0", "estimate.archs='list'",
                           f"estimate.arch_list={json.dumps(archs)}"])
        run_experiment(cfg, root / name, progress=False)
    return root


@pytest.mark.slow
def test_check_update_refuses_a_run_of_another_strategy(two_runs, tmp_path, capsys):
    base = tmp_path / "b.json"
    assert run_cli("check", two_runs / "uniform", "--baseline", base, "--update", "--description", "uniform") == 0
    before = base.read_text()
    code = run_cli("check", two_runs / "fairnas", "--baseline", base, "--update")
    one_line(capsys, 4, code, r"not comparable: .*strategy 'fairnas', baseline 'uniform'.*--force")
    code = run_cli("check", two_runs / "fairnas", "--baseline", base, "--update", "--force")
    one_line(capsys, 2, code, r"give a new --description")
    assert base.read_text() == before
    assert run_cli("check", two_runs / "fairnas", "--baseline", base, "--update", "--force", "--description",
                   "fairnas") == 0
    assert json.loads(base.read_text())["strategy"] == "fairnas"


def test_check_update_needs_a_new_description_when_the_run_count_changes(two_runs, tmp_path, capsys):
    shutil.copytree(two_runs / "uniform", tmp_path / "u2")
    base = tmp_path / "b.json"
    assert run_cli("check", two_runs / "uniform", tmp_path / "u2", "--baseline", base, "--update",
                   "--description", "uniform, mean of 2 runs") == 0
    code = run_cli("check", two_runs / "uniform", "--baseline", base, "--update")
    one_line(capsys, 2, code, r"description is about 2 run\(s\) and this update uses 1")
    assert "mean of 2 runs" in base.read_text()


@pytest.mark.parametrize("command", ["run", "compare", "demo", "gt-export", "check-update", "space-export"])
@pytest.mark.parametrize("where", ["under-a-file", "read-only"])
def test_unwritable_out_is_one_line_before_work(project, two_runs, tmp_path, capsys, monkeypatch, command, where):
    import harness.io as io_mod

    blocker = tmp_path / "blocker"
    if where == "under-a-file":
        blocker.write_text("a file")
    else:
        blocker.mkdir()
        blocker.chmod(0o500)
        if os.geteuid() == 0:  # root may write anywhere: the permission check is what is tested
            monkeypatch.setattr(io_mod.os, "access", lambda path, mode: Path(path) != blocker)
    out = blocker / "sub" / ("x.csv" if command in ("gt-export", "space-export") else
                             "b.json" if command == "check-update" else "dir")
    argv = {"run": ["run", project / "run.toml", "--out", out, "--quiet"],
            "compare": ["compare", two_runs / "uniform", "--out", out],
            "demo": ["demo", "--out", out, "--quiet", "--strategy", "uniform"],
            "gt-export": ["gt", "export", "--source", project / "gt.csv", "--out", out],
            "check-update": ["check", two_runs / "uniform", "--baseline", out, "--update", "--description", "x"],
            "space-export": ["space", "export", "--out", out]}[command]
    one_line(capsys, 2, run_cli(*argv), r"cannot write .*(is a file, not a folder|no write permission)")


CLI_CASES = {  # id: (argv, exit status, message pattern)
    "seeds-not-integers": (["gt", "build", "--data", "builtin:digitsm", "--name", "x", "--seeds", "a,b", "--out",
                            "{tmp}/t.csv"], 2, r"--seeds 'a,b': expected comma-separated integers"),
    "gt-build-workers-negative": (["gt", "build", "--data", "builtin:digitsm", "--name", "x", "--workers", "-1",
                                   "--out", "{tmp}/t.csv"], 2, r"--workers -1: must be >= 1"),
    "gt-build-bad-lr": (["gt", "build", "--data", "builtin:digitsm", "--name", "x", "--lr", "-1", "--out",
                         "{tmp}/t.csv"], 2, r"--lr must be positive"),
    "gt-build-missing-data": (["gt", "build", "--data", "{tmp}/nope", "--name", "x", "--out", "{tmp}/t.csv"], 2,
                              r"--data: .*nope does not exist"),
    "space-export-C-0": (["space", "export", "--C", "0", "--out", "{tmp}/s.csv"], 2, r"--C 0: must be >= 1"),
    "space-export-N-negative": (["space", "export", "--N", "-1", "--out", "{tmp}/s.csv"], 2, r"--N -1: must be >= 1"),
    "check-sigmas-negative": (["check", "{runs}/uniform", "--baseline", "{tmp}/b.json", "--update", "--sigmas", "-3"],
                              2, r"--sigmas -3.0: must be a finite number >= 0"),
    "compare-same-run-twice": (["compare", "{runs}/uniform", "{runs}/uniform"], 2, r"are the same run"),
    "compare-not-a-run": (["compare", "{tmp}"], 2, r"has no metrics.json"),
    "gt-header-only": (["gt", "info", "--source", "{tmp}/header.csv"], 2, r"holds no architectures"),
    "gt-truncated-pth": (["gt", "info", "--source", "{tmp}/cut.pth"], 2, r"truncated or corrupt"),
    "arch-malformed": (["run", "{proj}/run.toml", "--set", "estimate.arch_list=['|nor_conv_3x3~0|']", "--out",
                        "{tmp}/r"], 2, r"arch"),
    "unknown-config-key": (["run", "{proj}/run.toml", "--set", "train.lrr=0.1"], 2, r"Did you mean 'lr'"),
    "run-jobs-without-seeds": (["run", "{proj}/run.toml", "--jobs", "2", "--out", "{tmp}/r"], 2,
                               r"--jobs runs several seeds at once: give them with --seeds"),
    "run-seeds-repeated": (["run", "{proj}/run.toml", "--seeds", "0,0", "--out", "{tmp}/r"], 2, r"repeats a seed"),
    "run-seeds-not-integers": (["run", "{proj}/run.toml", "--seeds", "0,x", "--out", "{tmp}/r"], 2,
                               r"--seeds '0,x': expected comma-separated integers"),
    "run-jobs-0": (["run", "{proj}/run.toml", "--seeds", "0,1", "--jobs", "0", "--out", "{tmp}/r"], 2,
                   r"--jobs 0: must be >= 1"),
    "run-seeds-bad-override": (["run", "{proj}/run.toml", "--seeds", "0,1", "--set", "train.lr=-1", "--out",
                                "{tmp}/r"], 2, r"lr"),
}


@pytest.mark.parametrize("case", sorted(CLI_CASES))
def test_cli_bad_input(project, two_runs, tmp_path, capsys, case):
    argv, code, pattern = CLI_CASES[case]
    (tmp_path / "header.csv").write_text("arch,cifar10valid_valid_200\n")
    (tmp_path / "cut.pth").write_bytes(b"PK\x03\x04 truncated")
    argv = [a.format(tmp=tmp_path, runs=two_runs, proj=project) for a in argv]
    one_line(capsys, code, run_cli(*argv), pattern)
    assert not (tmp_path / "t.csv").exists() and not (tmp_path / "t.build.json").exists()
    assert not (tmp_path / "r").exists() and not (tmp_path / "s.csv").exists()


def test_bad_sweep_files_are_one_line_errors_before_any_run(project, tmp_path, capsys):
    head = f'base = "{project / "run.toml"}"\nout = "{tmp_path / "o"}"\n'
    for body, pattern in (
            ('[grid]\n"run.seed" = [0, 1]\n[variants.a]\n"run.seed" = 2\n',
             r"\[variants.a\] sets \['run.seed'\], which \[grid\] varies"),
            ('name = "{seed}"\n[grid]\n"run.seed" = [0, 1]\n', r"name template field\(s\) \['seed'\]"),
            ('name = "x"\n[grid]\n"run.seed" = [0, 1]\n', r"gives two runs one directory"),
            ('[grid]\n"train.lr" = [0.1, -1.0]\n', r"run lr--1.0: .*lr")):
        (tmp_path / "s.toml").write_text(head + body)
        one_line(capsys, 2, run_cli("sweep", tmp_path / "s.toml", "--quiet"), pattern)
        assert not (tmp_path / "o").exists()


def test_a_run_directory_another_process_writes_is_refused(project, tmp_path, capsys):
    from harness.runner import create_run_dir, run_dir_lock

    out = tmp_path / "r"
    cfg = load_config(project / "run.toml", [])
    create_run_dir(out, cfg, "new")  # an unfinished run
    with run_dir_lock(out):  # held, as by a worker of a killed sweep (a second open file: flock refuses it too)
        one_line(capsys, 2, run_cli("run", project / "run.toml", "--out", out, "--quiet"),
                 rf"is being written by another process \(pid and host: {os.getpid()} ")
        assert sorted(p.name for p in out.iterdir()) == [".lock", "config.toml"]
    assert run_cli("run", project / "run.toml", "--out", out, "--quiet") == 0  # once it is free


# ----------------------------------------------------------------------------- exit codes

def test_exit_0_1_and_4_of_check(two_runs, tmp_path, capsys):
    base = tmp_path / "b.json"
    assert run_cli("check", two_runs / "uniform", "--baseline", base, "--update", "--description", "u") == 0
    assert run_cli("check", two_runs / "uniform", "--baseline", base) == 0
    data = json.loads(base.read_text())
    data["metrics"]["kendall_tau"]["value"] += 0.5
    base.write_text(json.dumps(data))
    assert run_cli("check", two_runs / "uniform", "--baseline", base) == 1
    capsys.readouterr()
    one_line(capsys, 4, run_cli("check", two_runs / "fairnas", "--baseline", base), r"^nb201-harness: not comparable")


def test_exit_2_is_one_line_and_debug_shows_the_traceback(tmp_path, capsys):
    one_line(capsys, 2, run_cli("gt", "info", "--source", tmp_path / "nope.csv"), r"^nb201-harness: error: ")
    assert run_cli("gt", "info", "--source", tmp_path / "nope.csv", "--debug") == 2
    assert "Traceback" in capsys.readouterr().err


def test_exit_3_for_a_bug_shows_the_traceback(monkeypatch, tmp_path, capsys):
    import harness.groundtruth as gt_mod

    def bug(path):
        return {}["a programmer's KeyError"]

    monkeypatch.setattr(gt_mod, "load_ground_truth", bug)
    assert run_cli("gt", "info", "--source", tmp_path / "x.csv") == 3
    err = capsys.readouterr().err
    assert "Traceback" in err and "unexpected error (KeyError): this is a bug" in err.splitlines()[-1]


def test_exit_codes_are_documented():
    readme = (ROOT / "README.md").read_text()
    for code in EXIT_CODES:
        assert re.search(rf"^\| {code} \|", readme, re.M), f"exit status {code} is not in README's table"


def test_every_documented_row_is_tested():
    rows = [line for line in DOC.read_text().splitlines() if line.startswith("| ") and not line.startswith("| input")
            and not line.startswith("|--")]
    names = set(globals()) | {f"CASES:{c}" for c in (*CONFIG_CASES, *CLI_CASES)}
    assert len(rows) >= 40
    for row in rows:
        cells = [c.strip() for c in row.strip("|").split("|")]
        assert len(cells) == 4, row
        for test in re.findall(r"`([^`]+)`", cells[3]):
            assert test in names or test.split("[")[0] in names, f"{test} (docs/bad-input.md) is not a test here"
        assert re.findall(r"`([^`]+)`", cells[3]), f"row without a test: {row}"
