"""CUDA checks of the hot path (skipped without a GPU; run them whenever one is present)."""
import copy
import random

import numpy as np
import pytest
import torch

from harness.config import TrainSection
from harness.data import DeviceBatches
from harness.estimate import evaluate_arch
from harness.samplers import SAMPLERS
from harness.space import Arch
from harness.supernet import Supernet
from harness.train import make_optimizer, train_step

pytestmark = pytest.mark.gpu
ARCH = Arch.from_str("|nor_conv_3x3~0|+|nor_conv_3x3~0|avg_pool_3x3~1|+|skip_connect~0|nor_conv_3x3~1|skip_connect~2|")


@pytest.fixture
def cuda_setup():
    torch.manual_seed(0)
    rng = np.random.default_rng(0)
    images = rng.integers(0, 256, size=(512, 32, 32, 3), dtype=np.uint8)
    labels = rng.integers(0, 10, size=512)
    batches = DeviceBatches(images, labels, device="cuda", batch_size=64, mean=(0.5,) * 3, std=(0.25,) * 3,
                            augment=True, drop_last=True, generator=torch.Generator("cuda").manual_seed(0))
    model = Supernet(16, 5, 10).cuda()
    return model, batches


def test_training_steps_never_synchronise_with_the_host(cuda_setup):
    model, batches = cuda_setup
    cfg = TrainSection(max_steps=100)
    opt, sched = make_optimizer(model, cfg, 100)
    sampler, rng, it = SAMPLERS.get("uniform")(), random.Random(0), batches.batches()
    train_step(model, sampler, *next(it), 0, rng, opt, cfg.grad_clip)  # warm-up (lazy init may sync)
    torch.cuda.synchronize()
    torch.cuda.set_sync_debug_mode("error")
    try:
        for step in range(1, 20):  # crosses an epoch boundary (8 batches per epoch)
            x, y = next(it)
            train_step(model, sampler, x, y, step, rng, opt, cfg.grad_clip)
            sched.step()
    finally:
        torch.cuda.set_sync_debug_mode(0)


def test_estimation_batches_never_synchronise_until_read(cuda_setup):
    model, batches = cuda_setup
    eval_batches = list(batches.iter_fixed(4))
    evaluate_arch(model, ARCH, eval_batches)
    torch.cuda.synchronize()
    torch.cuda.set_sync_debug_mode("error")
    try:
        out = evaluate_arch(model, ARCH, eval_batches)
    finally:
        torch.cuda.set_sync_debug_mode(0)
    assert out.cpu()[2].item() == 256


def test_cuda_forward_matches_cpu(cuda_setup):
    model, _ = cuda_setup
    x = torch.randn(8, 3, 32, 32)
    model.eval()
    with torch.no_grad():
        gpu = model(x.cuda(), ARCH).cpu()
        cpu = model.cpu()(x, ARCH)
    assert torch.allclose(gpu, cpu, atol=1e-3, rtol=1e-3)


def test_shrink_scores_on_cuda_equal_cpu():
    from harness.shrinkers import SHRINKERS, ScoreContext, Space

    torch.manual_seed(0)
    cpu = Supernet(8, 2, 10)
    init = {n: p.detach().clone() for n, p in cpu.named_parameters()}
    opt = torch.optim.SGD(cpu.parameters(), lr=0.1)
    rng = random.Random(0)
    for _ in range(10):
        opt.zero_grad()
        arch = Arch(rng.randrange(5) for _ in range(6))
        torch.nn.functional.cross_entropy(cpu(torch.randn(8, 3, 16, 16), arch), torch.arange(8)).backward()
        opt.step()
    gpu = copy.deepcopy(cpu).cuda()
    space = Space([[1, 2, 3], [0, 3, 4], [3], [1, 3], [0, 1, 2, 3, 4], [2, 4]])
    for rule in ("angle", "weight-norm"):
        a = SHRINKERS.get(rule)().scores(cpu, space, ScoreContext(random.Random(0), init_state=init))
        b = SHRINKERS.get(rule)().scores(gpu, space, ScoreContext(random.Random(0), init_state=init))
        np.testing.assert_allclose(a, b, rtol=1e-5, equal_nan=True)


def test_few_shot_training_after_the_split_never_synchronises(cuda_setup):
    from harness.fewshot import FewShotSupernet, continue_training

    parent, batches = cuda_setup
    model = FewShotSupernet(parent, edges=[3])
    cfg = TrainSection(max_steps=100)
    opt, sched = make_optimizer(model, cfg, 100)
    sampler, rng, it = SAMPLERS.get("uniform")(), random.Random(0), batches.batches()
    train_step(model, sampler, *next(it), 0, rng, opt, cfg.grad_clip)
    before = dict(model.nets[0].named_parameters())
    model.split(1)
    opt, sched = continue_training(model, before, opt, sched, lambda m: make_optimizer(m, cfg, 100))
    for step in range(1, 6):  # first use of each sub-supernet's optimizer state may allocate
        train_step(model, sampler, *next(it), step, rng, opt, cfg.grad_clip)
    torch.cuda.synchronize()
    torch.cuda.set_sync_debug_mode("error")
    try:
        for step in range(6, 16):
            train_step(model, sampler, *next(it), step, rng, opt, cfg.grad_clip)
            sched.step()
    finally:
        torch.cuda.set_sync_debug_mode(0)
    assert all(p.is_cuda for p in model.parameters())


def test_shrinking_and_few_shot_run_end_to_end_on_cuda(tmp_path, image_folder):
    import pandas as pd

    from harness.config import load_config
    from harness.runner import run_experiment
    from harness.space import all_archs

    gt = tmp_path / "gt.csv"
    pd.DataFrame({"arch": [a.to_str() for a in all_archs()],
                  "cifar10valid_valid_200": [float(i % 41) for i in range(15625)]}).to_csv(gt, index=False)
    cfg = load_config(None, [
        f"data.train_path='{image_folder}'", "data.resolution=8", "supernet.C=4", "supernet.N=1",
        "train.max_steps=20", "train.batch_size=12", "estimate.archs='sample'", "estimate.sample_size=20",
        "estimate.batch_size=30", f"groundtruth.source='{gt}'", "metrics.bootstrap=20", "run.device='cuda'",
        f"data.cache_dir='{tmp_path / 'cache'}'", "shrink.rule='angle'", "shrink.warmup_epochs=1.0",
        "shrink.shrink_every=1.0", "shrink.estimate_space=20", "split.edges=[0]", "split.after_shrink=true"])
    metrics = run_experiment(cfg, tmp_path / "run", progress=False)
    assert metrics["environment"]["device"].startswith("cuda")
    assert metrics["shrink"]["space_size"] == 64 and metrics["few_shot"]["split_step"] == 15
    assert metrics["shrink"]["n_space_estimated"] >= 2


@pytest.mark.parametrize("name", ["darts", "sd-darts", "gdas", "gdas-nsas"])
def test_differentiable_steps_on_cuda_follow_cpu(name):
    """The same bilevel steps from the same start on CUDA and on CPU end at (nearly) the same alpha."""
    g = torch.Generator().manual_seed(0)
    data = [(torch.randn(16, 3, 8, 8, generator=g), torch.randint(0, 10, (16,), generator=g)) for _ in range(8)]
    torch.manual_seed(0)
    cpu_model = Supernet(4, 1, 10)
    alphas = {}
    for device in ("cpu", "cuda"):
        model = copy.deepcopy(cpu_model).to(device)
        batches = [(x.to(device), y.to(device)) for x, y in data]
        sampler = SAMPLERS.get(name)()
        sampler.attach(model, iter(batches[4:]), steps=4, seed=0)
        opt, _ = make_optimizer(model, TrainSection(), 4)
        for step, (x, y) in enumerate(batches[:4]):
            sampler.train_step(model, x, y, step, random.Random(0), opt, 5.0)
        alphas[device] = sampler.alpha.detach().cpu()
    if name.startswith("gdas"):  # CPU and CUDA generators draw different numbers: only check it ran and moved
        assert torch.isfinite(alphas["cuda"]).all() and alphas["cuda"].abs().sum() > 0
    else:
        assert torch.allclose(alphas["cuda"], alphas["cpu"], atol=1e-5)
