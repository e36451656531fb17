"""The architecture-batched engine (harness/batched.py) against the eager single path, in the same process.

Run: ``pytest benchmarks/test_bench_engine.py --benchmark-only`` (``--benchmark-json=FILE`` keeps the figures).
Every benchmark times both engines on the same model and the same batches, interleaved, and records
``extra_info["speedup_vs_eager"]`` (eager time / batched time), both times and the device. Under
``--benchmark-disable`` (the test suite) each runs a couple of repetitions only, to check that it works.

Scale: NB201's (C=16, N=5, 32x32, batch 64) on a GPU, the CPU-sized supernet of test_bench_supernet.py otherwise
(C=8, N=1, 16x16); ``NB201_BENCH_SCALE=nb201`` forces NB201's on CPU too.
"""
from __future__ import annotations

import os
import random
import statistics
import time

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from harness.config import TrainSection
from harness.estimate import estimate_archs
from harness.samplers import SAMPLERS
from harness.space import OPS, Arch, unique_archs
from harness.supernet import Supernet
from harness.train import make_optimizer, train_step

from _common import device_info, sync  # benchmarks/_common.py

DEVICE = torch.device("cuda" if torch.cuda.is_available() else "cpu")
NB201 = DEVICE.type == "cuda" or os.environ.get("NB201_BENCH_SCALE") == "nb201"
C, N, RES, BS = (16, 5, 32, 64) if NB201 else (8, 1, 16, 64)


def _sync() -> None:
    sync(DEVICE)


def _device_info() -> dict:
    return device_info(DEVICE, C=C, N=N, resolution=RES, batch_size=BS)


def _interleaved(fns: dict, reps: int) -> dict:
    """Median seconds per call of each function, timed round-robin so that drift on a shared machine hits all."""
    times = {k: [] for k in fns}
    for f in fns.values():  # warm-up
        f()
    _sync()
    for _ in range(reps):
        for k, f in fns.items():
            start = time.perf_counter()
            f()
            _sync()
            times[k].append(time.perf_counter() - start)
    return {k: statistics.median(v) for k, v in times.items()}


def _paired(eager, batched_fn, reps: int) -> dict:
    """Both functions called alternately ``reps`` times after a warm-up: the median time of each, and the eager /
    batched ratio of every round (median, lowest, highest). A round's two calls run seconds apart, so a ratio per
    round cancels most of the drift of a shared machine, which moves single timings by +-30% on 2 CPU cores."""
    eager(), batched_fn()
    _sync()
    te, tb = [], []
    for _ in range(reps):
        for fn, times in ((eager, te), (batched_fn, tb)):
            start = time.perf_counter()
            fn()
            _sync()
            times.append(time.perf_counter() - start)
    ratios = [e / b for e, b in zip(te, tb)]
    return {"eager_s": statistics.median(te), "batched_s": statistics.median(tb),
            "speedup_vs_eager": statistics.median(ratios), "speedup_lowest": min(ratios),
            "speedup_highest": max(ratios), "rounds": reps, "speedup_per_round": ratios}


def _batches(n_images: int, seed: int = 0) -> list:
    g = torch.Generator().manual_seed(seed)
    x = torch.randn(n_images, 3, RES, RES, generator=g)
    y = torch.randint(0, 10, (n_images,), generator=g)
    return [(x[i:i + 256].to(DEVICE), y[i:i + 256].to(DEVICE)) for i in range(0, n_images, 256)]


def _model(bn_policy: str = "batch") -> Supernet:
    torch.manual_seed(0)
    return Supernet(C, N, 10, bn_policy=bn_policy).to(DEVICE)


@pytest.mark.parametrize("strategy", ["uniform", "fairnas", "nsas"])
@pytest.mark.slow  # three strategies' steps with both engines (about 15 s); the fast tier stays within 5 minutes
def test_step_speedup_vs_eager(benchmark, strategy):
    """One training step of ``strategy``, batched engine against eager (``[train] engine``). Both step their own
    copy of the same supernet on the same batches with the same plans."""
    cls = SAMPLERS.get(strategy)
    reps = 2 if benchmark.disabled else 15
    batches = _batches(BS * 8)
    state = {}
    for engine in ("eager", "batched"):
        model = _model()
        opt, _ = make_optimizer(model, TrainSection(max_steps=10_000), 10_000)
        sampler, rng = cls(), random.Random(0)
        counter = {"step": 0}

        def step(model=model, opt=opt, sampler=sampler, rng=rng, counter=counter, engine=engine):
            x, y = batches[counter["step"] % len(batches)]
            x, y = x[:BS], y[:BS]
            train_step(model, sampler, x, y, counter["step"], rng, opt, 5.0, engine)
            counter["step"] += 1

        model.train()
        for _ in range(12):  # NSAS: fill the archive (M = 10) so the step is the steady-state one
            step()
        state[engine] = step
    t = _interleaved(state, reps)
    benchmark.extra_info.update(_device_info(), strategy=strategy, paths_per_step=cls().paths_per_step,
                                eager_s=t["eager"], batched_s=t["batched"],
                                speedup_vs_eager=t["eager"] / t["batched"])
    benchmark.pedantic(state["batched"], rounds=3 if benchmark.disabled else 15, warmup_rounds=1)


def _workload(kind: str, n: int, seed: int) -> list[Arch]:
    """``sample``: a seeded sample of ``n`` non-isomorphic architectures, as a run with ``[estimate] sample``
    scores; ``block``: ``n`` consecutive ones of the whole non-isomorphic space in first-cell order (from a seeded
    start), which is what each stretch of a full-space estimation (all 6,466) looks like to the engine."""
    pool = unique_archs()
    rng = random.Random(seed)
    if kind == "sample":
        return rng.sample(pool, n)
    pool = sorted(pool, key=tuple)
    start = rng.randrange(len(pool) - n)
    return pool[start:start + n]


@pytest.mark.parametrize("workload", ["sample", "block"])
@pytest.mark.parametrize("bn_policy", ["track", "recalibrate"])
@pytest.mark.parametrize("images", [512, 5000])
@pytest.mark.slow  # whole runs or many parametrised cases; the fast tier stays within 5 minutes
def test_estimation_speedup_vs_eager(benchmark, images, bn_policy, workload):
    """Architectures per second over ``images`` held-out images (and, for ``recalibrate``, 2 calibration batches
    of 256), ``estimate_archs`` with ``engine="batched"`` (its default ``arch_batch``) against ``"eager"``, on a
    ``workload`` of architectures (:func:`_workload`); ``speedup_vs_eager`` is the median ratio of paired rounds
    (:func:`_paired`). Both engines run at the process's torch thread count (``threads`` in ``extra_info``):
    the eager path uses them inside each op, the batched one for chunks side by side
    (:func:`harness.estimate.side_by_side`)."""
    model = _model(bn_policy).eval()
    n_archs = 4 if benchmark.disabled else 64  # on 2 CPU cores: two chunks of 32, scored side by side
    eval_batches = _batches(images if not benchmark.disabled else min(images, 512))
    calib = _batches(512, seed=1) if bn_policy == "recalibrate" else ()
    archs = _workload(workload, n_archs, seed=images)

    def run(engine):
        return lambda: estimate_archs(model, archs, eval_batches, calib, progress=False, engine=engine)

    reps = 1 if benchmark.disabled else (3 if images > 512 else 15)
    t = _paired(run("eager"), run("batched"), reps)
    benchmark.extra_info.update(_device_info(), images=images, bn_policy=bn_policy, workload=workload,
                                archs_per_call=n_archs, eager_archs_per_s=n_archs / t["eager_s"],
                                batched_archs_per_s=n_archs / t["batched_s"], **t)
    benchmark.pedantic(run("batched"), rounds=1, warmup_rounds=0)


def test_uniform_step_vs_xautodl_random(benchmark):
    """The peer reference: xautodl's RANDOM supernet (TinyNetworkRANDOM, NB201's RSPS search model) training one
    uniformly sampled path per step, against our uniform step with each engine, same sizes, same process."""
    search_random = pytest.importorskip("xautodl.models.cell_searchs.search_model_random")
    from xautodl.models.cell_searchs.genotypes import Structure

    space = list(OPS)
    theirs = search_random.TinyNetworkRANDOM(C, N, 4, 10, space, False, True).to(DEVICE).train()
    t_opt = torch.optim.SGD(theirs.parameters(), lr=0.025, momentum=0.9, nesterov=True, weight_decay=5e-4)
    batches = _batches(BS * 8)
    rng = random.Random(0)
    counter = {"xautodl": 0}

    def xautodl_step():
        x, y = batches[counter["xautodl"] % len(batches)]
        counter["xautodl"] += 1
        theirs.arch_cache = Structure.str2structure(Arch(tuple(rng.randrange(len(OPS)) for _ in range(6))).to_str())
        t_opt.zero_grad()
        F.cross_entropy(theirs(x[:BS])[1], y[:BS]).backward()
        torch.nn.utils.clip_grad_norm_(theirs.parameters(), 5.0)
        t_opt.step()

    fns = {"xautodl": xautodl_step}
    for engine in ("eager", "batched"):
        model = _model("track").train()
        opt, _ = make_optimizer(model, TrainSection(max_steps=10_000), 10_000)
        sampler, srng, c = SAMPLERS.get("uniform")(), random.Random(0), {"step": 0}

        def step(model=model, opt=opt, sampler=sampler, srng=srng, c=c, engine=engine):
            x, y = batches[c["step"] % len(batches)]
            train_step(model, sampler, x[:BS], y[:BS], c["step"], srng, opt, 5.0, engine)
            c["step"] += 1

        fns[engine] = step
    t = _interleaved(fns, 2 if benchmark.disabled else 30)
    benchmark.extra_info.update(_device_info(), xautodl_s=t["xautodl"], eager_s=t["eager"], batched_s=t["batched"],
                                eager_vs_xautodl=t["xautodl"] / t["eager"],
                                batched_vs_xautodl=t["xautodl"] / t["batched"],
                                speedup_vs_eager=t["eager"] / t["batched"])
    benchmark.pedantic(fns["batched"], rounds=3 if benchmark.disabled else 20, warmup_rounds=1)


@pytest.mark.slow  # a few short runs end to end, even under --benchmark-disable
def test_several_runs_aggregate_throughput(benchmark, tmp_path):
    """Several runs on one device (``run --seeds --jobs``, :mod:`harness.pool`): ``K`` short runs of the demo config
    (the supernet trained for a few hundred passes, 200 architectures estimated) in ``K`` worker processes at once,
    against the same ``K`` runs one after another with all CPU threads. ``K`` = the CPU cores (each process one
    thread), or 4 on a GPU, where the launch-bound runs share the device. ``speedup_vs_eager`` here is the aggregate
    throughput ratio: time one at a time / time all at once."""
    from harness.config import load_config
    from harness.demo import DEMO_CONFIG
    from harness.pool import Job, run_jobs

    k = 4 if DEVICE.type == "cuda" else max(2, os.cpu_count() or 1)
    passes = 20 if benchmark.disabled else 300
    keys = [f"train.max_paths={passes}", "forgetting.probes=0", "forgetting.decay_tracers=0",
            "metrics.bootstrap=50", f"run.device='{DEVICE.type}'"]
    if benchmark.disabled:  # a check that the comparison runs (CI): the 200 architectures on 100 images, not 500
        keys.append("data.valid_subset=100")

    def jobs(tag: str) -> list:
        return [Job(f"seed-{s}", load_config(DEMO_CONFIG, [*keys, f"run.seed={s}"]), tmp_path / tag / f"seed-{s}")
                for s in range(k)]

    start = time.perf_counter()
    _, errors = run_jobs(jobs("one-at-a-time"), workers=1, progress=False)
    sequential = time.perf_counter() - start
    start = time.perf_counter()
    _, errors_k = run_jobs(jobs("all-at-once"), workers=k, threads=max(1, (os.cpu_count() or 1) // k),
                           progress=False)
    together = time.perf_counter() - start
    assert not errors and not errors_k
    benchmark.extra_info.update(_device_info(), runs=k, passes_per_run=passes, one_at_a_time_s=sequential,
                                all_at_once_s=together, speedup_vs_eager=sequential / together)
    benchmark.pedantic(lambda: None, rounds=1)
