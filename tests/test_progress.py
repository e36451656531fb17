"""Live progress: the phase/count/ETA lines the demo prints, and the hooks in training and estimation."""
import io
import time

from harness import progress


def test_board_prints_a_line_per_unfinished_job_with_an_eta():
    out = io.StringIO()
    board = progress.Board(["uniform", "fairnas"], every=0.05, stream=out)
    with board:
        board.update("uniform", "train", 0, 100)
        time.sleep(0.02)
        board.update("uniform", "train", 50, 100)
        time.sleep(0.2)
        board.finish("fairnas", 3.0)
        time.sleep(0.12)
    text = out.getvalue()
    assert "uniform" in text and "50/100" in text and "ETA" in text
    assert "demo: fairnas: done in 3 s" in text
    assert "queued: fairnas" in text  # before it started
    assert "1 queued, 1 running, 0 done, 0 failed, ETA once a job has finished" in text
    last = text.strip().splitlines()[-1]  # after fairnas finished only uniform is listed
    assert "uniform" in last and "fairnas" not in last
    # the ETA is the rest at the rate so far: 50 more steps at 50 per ~0.02 s
    line = board.lines()[1]
    eta = float(line.split("ETA")[1].split("s")[0])
    assert 0 <= eta < 5


def test_the_summary_counts_jobs_and_spreads_the_mean_run_time_over_the_workers(monkeypatch):
    clock = [100.0]
    monkeypatch.setattr(progress.time, "monotonic", lambda: clock[0])
    board = progress.Board(["a", "b", "c", "d", "e"], every=None, stream=io.StringIO(), workers=2)
    board.update("a", "train", 0, 10)
    board.update("b", "train", 0, 10)
    clock[0] = 130.0
    board.finish("a", 30.0)
    board.update("c", "train", 0, 10)  # c starts at 130
    board.fail("b")
    clock[0] = 140.0
    # d, e queued: 2 x 30 s; c ran 10 s of a mean 30: 20 s; over 2 workers: (60 + 20) / 2 = 40 s
    assert board.summary() == "2 queued, 1 running, 1 done, 1 failed, ETA 40 s (mean of 1 finished: 30 s)"
    assert board.lines()[1:] == ["c  train        0/10   ", "queued: d, e"]
    board.update("a", "estimate", 5, 10)  # a late report from a finished job changes nothing
    assert board.summary().startswith("2 queued, 1 running, 1 done, 1 failed")
    for name in ("d", "e"):
        board.update(name, "train", 0, 10)
        board.finish(name, 30.0)
    # c alone is left, 20 s short of the mean: no other worker can share it, so 20 s, not 20 / 2
    assert board.summary() == "0 queued, 1 running, 3 done, 1 failed, ETA 20 s (mean of 3 finished: 30 s)"


def test_a_quiet_board_prints_only_finished_jobs():
    out = io.StringIO()
    with progress.Board(["a"], every=None, stream=out) as board:
        board.update("a", "train", 1, 2)
        board.finish("a", 1.0)
    assert out.getvalue() == "demo: a: done in 1 s\n"


def test_training_and_estimation_report_to_the_sink(tmp_path, image_folder):
    import json

    from harness.config import load_config
    from harness.runner import run_experiment

    from .test_runner import ARCHS

    gt = tmp_path / "gt.csv"
    gt.write_text("arch,cifar10valid_valid_200\n" + "".join(f"{a},{50 + 5 * i}\n" for i, a in enumerate(ARCHS)))
    cfg = load_config(None, [f"data.train_path='{image_folder}'", "data.resolution=8", "supernet.C=4", "supernet.N=1",
                             "train.max_steps=6", "train.batch_size=12", "run.device='cpu'", "estimate.archs='list'",
                             f"estimate.arch_list={json.dumps(ARCHS)}", f"groundtruth.source='{gt}'",
                             "metrics.bootstrap=20", f"data.cache_dir='{tmp_path / 'c'}'", "forgetting.probes=0",
                             "forgetting.decay_tracers=0", "run.threads=1"])
    seen = []
    progress.set_sink(lambda *a: seen.append(a))
    try:
        metrics = run_experiment(cfg, tmp_path / "run", progress=False)
    finally:
        progress.set_sink(None)
    train = [a for a in seen if a[0] == "train"]
    assert train[0] == ("train", 0, 6) and train[-1] == ("train", 6, 6) and len(train) == 7
    estimate = [a for a in seen if a[0] == "estimate"]
    assert estimate[0] == ("estimate", 0, len(ARCHS)) and estimate[-1] == ("estimate", len(ARCHS), len(ARCHS))
    assert metrics["environment"]["cpu_threads"] == 1  # run.threads, recorded
    import torch

    assert metrics["environment"]["cpu_capability"] == torch.backends.cpu.get_cpu_capability()  # the ISA, recorded
    assert "threads" not in (tmp_path / "run" / "config.toml").read_text()  # how it ran, not what it computes


def test_throttled_sink_keeps_phase_starts_and_ends():
    seen = []
    sink = progress.throttled(lambda *a: seen.append(a), every=60)
    for i in range(100):
        sink("train", i, 99)
    sink("estimate", 0, 5)
    assert seen == [("train", 0, 99), ("train", 99, 99), ("estimate", 0, 5)]
