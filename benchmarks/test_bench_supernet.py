"""Supernet hot-path benchmarks: one training step and one estimation batch on the present device.

Run: ``pytest benchmarks/ --benchmark-only`` (add ``--benchmark-json=FILE`` to keep the figures).
Each benchmark records the device, torch version and the reference it is compared with in
``extra_info``. The reference is measured in the same process: the plain PyTorch step with the
same model (a host-side ``DataLoader``-style batch copy instead of GPU-resident data), so the
ratio says what the harness's data path buys on this device.
"""
from __future__ import annotations

import random
import time

import numpy as np
import pytest
import torch

from harness.config import TrainSection
from harness.data import DeviceBatches
from harness.estimate import evaluate_arch
from harness.samplers import SAMPLERS
from harness.supernet import Supernet
from harness.train import make_optimizer, train_step

from _common import device_info, sync  # benchmarks/_common.py

DEVICE = torch.device("cuda" if torch.cuda.is_available() else "cpu")
# NB201 scale on a GPU; CPU-sized otherwise so the benchmark finishes in seconds
C, N, RES, BS = (16, 5, 32, 64) if DEVICE.type == "cuda" else (8, 1, 16, 64)


def _sync() -> None:
    sync(DEVICE)


def _device_info() -> dict:
    return device_info(DEVICE, C=C, N=N, resolution=RES, batch_size=BS)


@pytest.fixture(scope="module")
def setup():
    torch.manual_seed(0)
    rng = np.random.default_rng(0)
    images = rng.integers(0, 256, size=(2048, RES, RES, 3), dtype=np.uint8)
    labels = rng.integers(0, 10, size=2048)
    batches = DeviceBatches(images, labels, device=DEVICE, batch_size=BS, mean=(0.5,) * 3, std=(0.25,) * 3,
                            augment=True, drop_last=True, generator=torch.Generator(DEVICE).manual_seed(0))
    model = Supernet(C, N, 10).to(DEVICE)
    cfg = TrainSection(max_steps=10_000)
    opt, _ = make_optimizer(model, cfg, 10_000)
    return model, opt, batches, images, labels, cfg


def _time(fn, n: int) -> float:
    fn()
    _sync()
    start = time.perf_counter()
    for _ in range(n):
        fn()
    _sync()
    return (time.perf_counter() - start) / n


def test_train_step(benchmark, setup):
    model, opt, batches, images, labels, cfg = setup
    sampler, rng, it = SAMPLERS.get("uniform")(), random.Random(0), batches.batches()

    def harness_step():
        x, y = next(it)
        train_step(model, sampler, x, y, 0, rng, opt, cfg.grad_clip)

    host = np.random.default_rng(1)

    def reference_step():  # host-side batch cut + copy, as a DataLoader feeds a GPU loop
        idx = host.integers(0, len(images), BS)
        x = torch.from_numpy(images[idx]).permute(0, 3, 1, 2).float().div(255).to(DEVICE)
        y = torch.from_numpy(labels[idx]).to(DEVICE)
        train_step(model, sampler, x, y, 0, rng, opt, cfg.grad_clip)

    model.train()
    ref = _time(reference_step, 20)
    ours = _time(harness_step, 20)
    benchmark.extra_info.update(_device_info(), reference_s=ref, harness_s=ours, speedup_vs_reference=ref / ours)
    benchmark.pedantic(lambda: (harness_step(), _sync()), rounds=30, warmup_rounds=3)


def test_estimation_batch(benchmark, setup):
    model, _, batches, *_ = setup
    arch = SAMPLERS.get("uniform")().plan(0, random.Random(3))[0][0]
    eval_batches = list(batches.iter_fixed(4))
    benchmark.extra_info.update(_device_info(), images_per_call=sum(len(y) for _, y in eval_batches))
    benchmark.pedantic(lambda: evaluate_arch(model, arch, eval_batches).cpu(), rounds=30, warmup_rounds=3)


@pytest.mark.parametrize("name", SAMPLERS.names())
@pytest.mark.slow  # one step of every strategy (about 40 s); the fast tier stays within 5 minutes
def test_strategy_step_cost(benchmark, setup, name):
    """One training step of each strategy, and its cost relative to ``uniform`` timed in this process.

    Strategies with archives are warmed up first (``paths_per_step`` reached), so the figure is the
    steady-state cost: FairNAS trains 5 paths a step, NSAS 1 + M; the differentiable ones take their bilevel
    step (DARTS: a mixed-op weight pass and a mixed-op alpha pass).
    """
    model, opt, batches, *_ = setup
    it = batches.batches()

    def stepper(strategy):
        cls = SAMPLERS.get(strategy)
        # per-cell: one architecture per search cell of this supernet (the runner sets it from [supernet] N)
        sampler = cls(cells=model.num_search_cells) if getattr(cls, "needs_cells", False) else cls()
        rng = random.Random(0)
        state = {"step": 0}
        if sampler.differentiable:  # alpha's search batches come from the same stream here
            sampler.attach(model, it, steps=1000, seed=0)

        def step():
            x, y = next(it)
            if sampler.differentiable:
                sampler.train_step(model, x, y, state["step"], rng, opt, 5.0)
            else:
                train_step(model, sampler, x, y, state["step"], rng, opt, 5.0)
            state["step"] += 1

        for _ in range(12):  # fill archives (M = 10)
            step()
        return step, sampler

    model.train()
    uniform, _ = stepper("uniform")
    ours, sampler = stepper(name)
    n = 2 if benchmark.disabled else 20  # --benchmark-disable (the test suite): only check that it runs
    t_uniform, t_ours = _time(uniform, n), _time(ours, n)
    benchmark.extra_info.update(_device_info(), strategy=name, paths_per_step=sampler.paths_per_step,
                                uniform_step_s=t_uniform, step_s=t_ours, relative_to_uniform=t_ours / t_uniform,
                                relative_per_path=t_ours / t_uniform / sampler.paths_per_step)
    benchmark.pedantic(lambda: (ours(), _sync()), rounds=20, warmup_rounds=2)


@pytest.mark.parametrize("rule", ["angle", "weight-norm"])
def test_shrink_round_cost(benchmark, setup, rule):
    """Scoring the whole NB201 space once (a shrink round's work for the weight-based rules), relative to one
    uniform training step timed in this process. The accuracy rule costs ``samples`` child-model
    evaluations instead (see test_estimation_batch)."""
    from harness.shrinkers import SHRINKERS, ScoreContext, Space

    model, opt, batches, *_ = setup
    init = {n: p.detach().clone() for n, p in model.named_parameters()}
    sampler, rng, it = SAMPLERS.get("uniform")(), random.Random(0), batches.batches()

    def step():
        train_step(model, sampler, *next(it), 0, rng, opt, 5.0)

    def score():
        SHRINKERS.get(rule)().scores(model, Space(), ScoreContext(random.Random(0), init_state=init))

    model.train()
    n = 2 if benchmark.disabled else 10
    t_step, t_score = _time(step, n), _time(score, n)
    benchmark.extra_info.update(_device_info(), rule=rule, archs_scored=15625, train_step_s=t_step, round_s=t_score,
                                round_in_train_steps=t_score / t_step)
    benchmark.pedantic(score, rounds=5, warmup_rounds=1)
