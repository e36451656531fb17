"""CUDA checks of the hot path (skipped without a GPU; run them whenever one is present)."""
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
