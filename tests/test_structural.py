"""Structural checks of a real (tiny) run: properties that must hold exactly, whatever the seed.

The ranking suite (``nb201-harness regress``) sees a bug only through its effect on the metrics; these tests
look at the pipeline itself while it runs, through global torch hooks, so they do not trust what the code
reports about itself (``train.steps``, ``paths``): which images train and which are scored, how many optimizer
steps and passes are made at which learning rate, which ops the sampler draws, whether every BN was really
recalibrated, and whether estimation scores against the true labels. Expected values come from the config and
from the dataset as loaded independently, never from the run's own output.
"""
from __future__ import annotations

import hashlib
import math
import random
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import torch
from scipy import stats
from torch import nn
from torch.optim.optimizer import register_optimizer_step_pre_hook

from harness import batched
from harness.config import load_config
from harness.data import load_dataset, nb201_split, normalization
from harness.estimate import estimate_archs
from harness.runner import build_data, run_experiment
from harness.samplers import SAMPLERS
from harness.samplers.nsas import chain_edges
from harness.space import EDGES, NUM_EDGES, NUM_OPS, OPS, parse_arch
from harness.supernet import Supernet

ROOT = Path(__file__).resolve().parents[1]
CONFIG = ROOT / "configs" / "regress-digitsm.toml"
GT = ROOT / "data" / "digitsm" / "digitsm_gt.csv"
STEPS = 60
ARCHS = pd.read_csv(GT)["arch"].iloc[:3].tolist()


def tiny_config(**extra):
    sets = [f"train.max_paths={STEPS}", "forgetting.probes=0", "forgetting.decay_tracers=0",
            "estimate.archs='list'", f"estimate.arch_list={ARCHS!r}".replace("'", '"'),
            f"groundtruth.source='{GT}'", "metrics.bootstrap=0", "train.log_every=10"]
    return load_config(CONFIG, sets + [f"{k.replace('__', '.')}={v}" for k, v in extra.items()])


def digests(x: torch.Tensor) -> set[str]:
    """One content hash per image of a (B, 3, H, W) batch."""
    flat = x.detach().float().contiguous().cpu().numpy().reshape(len(x), -1)
    return {hashlib.sha1(row.tobytes()).hexdigest() for row in flat}


@pytest.fixture(scope="module")
def observed(tmp_path_factory):
    """One tiny uniform run, watched: every supernet forward (mode, grad, images, arch) and optimizer step."""
    cfg = tiny_config()
    seen = {"train": set(), "calib": set(), "eval": set(), "passes": 0, "archs": [], "steps": 0, "lrs": []}

    def forward_hook(module, args):
        if not isinstance(module, Supernet):
            return
        x, arch = args[0], args[1]
        if module.training and torch.is_grad_enabled():
            seen["passes"] += 1
            seen["archs"].append(tuple(arch))
            seen["train"] |= digests(x)
        elif module.training:
            seen["calib"] |= digests(x)  # BN recalibration: train mode without gradients
        else:
            seen["eval"] |= digests(x)

    def step_hook(opt, args, kwargs):
        seen["steps"] += 1
        seen["lrs"].append(opt.param_groups[0]["lr"])

    real_paths = batched.forward_paths

    def paths_hook(model, x, paths, norm):  # the architecture-batched engine runs K paths without Supernet.forward
        if norm.mode == "train" and torch.is_grad_enabled():
            seen["passes"] += len(paths)
            seen["archs"].extend(tuple(p) for p in paths)
            seen["train"] |= digests(x)
        elif norm.mode in ("train", "calibrate"):
            seen["calib"] |= digests(x)
        else:
            seen["eval"] |= digests(x)
        return real_paths(model, x, paths, norm)

    handles = [nn.modules.module.register_module_forward_pre_hook(forward_hook),
               register_optimizer_step_pre_hook(step_hook)]
    batched.forward_paths = paths_hook
    try:
        torch.manual_seed(0)
        metrics = run_experiment(cfg, tmp_path_factory.mktemp("tiny") / "run", progress=False)
    finally:
        batched.forward_paths = real_paths
        for h in handles:
            h.remove()
    data = build_data(cfg, torch.device("cpu"), cfg.run.seed)
    return cfg, seen, metrics, data


def test_estimation_images_are_the_held_out_ones_and_never_train(observed):
    cfg, seen, _, data = observed
    train_all, held = digests(data.train.images), digests(data.held_out.images)
    assert not train_all & held, "the held-out split shares images with the training split"
    assert seen["eval"] == held, "estimation scored other images than the held-out split"
    assert not seen["eval"] & seen["train"], "estimation scored images the supernet trained on"
    assert seen["train"] <= train_all and seen["calib"] <= train_all
    assert len(held) == cfg.data.valid_subset


def test_optimizer_steps_and_passes_equal_the_budget_at_the_configured_lr(observed):
    cfg, seen, metrics, _ = observed
    assert seen["steps"] == STEPS, f"{seen['steps']} optimizer steps for a budget of {STEPS} (uniform: 1 per pass)"
    assert seen["passes"] == STEPS
    lr = cfg.train.lr  # 0.1 in the config file; cosine to lr_min = 0 over the run
    expected = [cfg.train.lr_min + (lr - cfg.train.lr_min) * (1 + math.cos(math.pi * t / STEPS)) / 2
                for t in range(STEPS)]
    np.testing.assert_allclose(seen["lrs"], expected, rtol=1e-9, atol=1e-12)
    assert lr == 0.1
    assert metrics["train"]["steps"] == STEPS and metrics["train"]["paths"] == STEPS


def test_trained_ops_are_uniform_within_binomial_bounds(observed):
    _, seen, _, _ = observed
    draws = np.array(seen["archs"])  # (passes, 6)
    counts = np.bincount(draws.ravel(), minlength=NUM_OPS)
    n = draws.size
    lo, hi = stats.binom.interval(1 - 1e-6, n, 1 / NUM_OPS)
    for op, c in zip(OPS, counts):
        assert lo <= c <= hi, f"{op} trained {c} times of {n} edge draws; uniform gives {lo:.0f}..{hi:.0f}"


PLAN_BASED = [n for n in SAMPLERS.names() if not SAMPLERS.get(n).differentiable]


@pytest.mark.parametrize("name", PLAN_BASED)
def test_sampler_op_frequencies(name):
    """The strategy's own architecture of each step: every op of every edge within binomial bounds (p = 1/5,
    two-sided 1e-6 per cell): uniform draws, the NSAS family's current architecture, FairNAS's group; novelty
    search favours rarely seen ops, which keeps it inside the same bounds; NSAS-C's chain cells leave the cut
    edges at none. FairNAS: every op of every edge
    exactly once in every step."""
    expected_per_step = "exact" if name == "fairnas" else None
    sampler = SAMPLERS.get(name)()
    rng, counts, steps = random.Random(0), np.zeros((NUM_EDGES, NUM_OPS), int), 2000
    for step in range(steps):
        plan = sampler.plan(step, rng)
        archs = [a for a, _ in plan]
        if expected_per_step == "exact":
            per_step = np.zeros((NUM_EDGES, NUM_OPS), int)
            for a in archs:
                per_step[range(NUM_EDGES), list(a)] += 1
            assert (per_step == 1).all(), f"step {step}: FairNAS did not train every op of every edge once"
        archs = archs[:1]  # the current architecture (NSAS adds constraint paths after it)
        if name == "per-cell":  # one architecture per search cell: count every cell's draw
            archs = list(archs[0])
        for a in archs:
            counts[range(NUM_EDGES), list(a)] += 1
        sampler.observe(step, [a for a, _ in plan], [torch.tensor(1.0) for _ in plan])
    if name == "per-cell":  # ABS's redraw of all-none nodes: P(none) on an edge into a node of n inputs
        p_none = {1: 0.0, 2: (0.2 - 0.2 ** 2) / (1 - 0.2 ** 2), 3: (0.2 - 0.2 ** 3) / (1 - 0.2 ** 3)}
        n = steps * sampler.cells
        for e, (_, dst) in enumerate(EDGES):
            p = np.array([p_none[dst]] + [(1 - p_none[dst]) / (NUM_OPS - 1)] * (NUM_OPS - 1))
            lo, hi = stats.binom.interval(1 - 1e-6, n, p)
            assert ((counts[e] >= lo) & (counts[e] <= hi)).all(), f"edge {e}: {counts[e].tolist()} vs {n * p}"
        return
    lo, hi = stats.binom.interval(1 - 1e-6, steps, 1 / NUM_OPS)
    if name == "nsas-c":  # the chain topology: the cut edges are always none, the others uniform
        cut = sorted(set(range(NUM_EDGES)) - set(chain_edges(2)))
        assert (counts[cut, 0] == steps).all(), f"nsas-c trained a cut edge: {counts[cut].tolist()}"
        counts = np.delete(counts, cut, axis=0)
    assert ((counts >= lo) & (counts <= hi)).all(), f"{name}: op counts per edge {counts.tolist()} outside {lo}..{hi}"


def test_every_bn_is_recalibrated_on_the_calibration_batches():
    """After estimation under bn_policy=recalibrate no BN keeps the statistics it had before (planted sentinels),
    and the stem BN's running mean equals the channel means of the stem convolution over the calibration images.
    The eager engine recalibrates the modules themselves; the batched one keeps per-architecture statistics
    aside and equals it (tests/test_batched.py)."""
    torch.manual_seed(0)
    model = Supernet(8, 1, 10, "recalibrate")
    arch = parse_arch(ARCHS[0])
    calib = [(torch.randn(16, 3, 8, 8), torch.zeros(16, dtype=torch.long)) for _ in range(3)]
    bns = [m for m in model.modules() if isinstance(m, nn.modules.batchnorm._BatchNorm) and m.track_running_stats]
    assert bns
    for bn in bns:
        bn.running_mean.fill_(1e6)
        bn.running_var.fill_(1e6)
    estimate_archs(model, [arch], calib[:1], calib, progress=False, engine="eager")
    used = [bn for bn in bns if bn.num_batches_tracked > 0]
    assert used, "no BN saw a calibration batch"
    for bn in used:
        assert (bn.running_mean.abs() < 1e5).all() and (bn.running_var < 1e5).all()
    stem_conv, stem_bn = next((m for m in model.modules() if isinstance(m, nn.Conv2d)), None), bns[0]
    with torch.no_grad():
        feats = torch.cat([stem_conv(x) for x, _ in calib])
    np.testing.assert_allclose(stem_bn.running_mean.numpy(), feats.mean((0, 2, 3)).numpy(), rtol=1e-4, atol=1e-5)


def _raw_digest(x: torch.Tensor, mean, std) -> list[str]:
    """Hash of each normalised image's uint8 pixels, recovered by inverting the normalisation."""
    m, sd = torch.tensor(mean).view(1, 3, 1, 1), torch.tensor(std).view(1, 3, 1, 1)
    pixels = torch.round((x.float() * sd + m) * 255).clamp(0, 255).to(torch.uint8).permute(0, 2, 3, 1)
    return [hashlib.sha1(r.tobytes()).hexdigest() for r in pixels.contiguous().numpy()]


class Oracle(nn.Module):
    """Predicts each image's label from a table keyed by its pixels, built from the dataset as loaded by
    ``load_dataset`` (not from the harness's batches): an estimation pipeline that scores honestly reports 100%."""

    bn_policy = "batch"

    def __init__(self, table: dict[str, int], mean, std):
        super().__init__()
        self.table, self.mean, self.std = table, mean, std
        self.dummy = nn.Parameter(torch.zeros(()))

    def owner(self, arch):
        return self

    def forward(self, x, arch):
        labels = torch.tensor([self.table[d] for d in _raw_digest(x, self.mean, self.std)])
        return torch.nn.functional.one_hot(labels, 10).float() + 0 * self.dummy


def test_estimation_scores_against_the_true_labels():
    cfg = tiny_config()
    data = build_data(cfg, torch.device("cpu"), cfg.run.seed)
    raw = load_dataset(cfg.data.train_path, "train")
    split = nb201_split(raw, seed=cfg.data.split_seed)
    table, clash = {}, set()
    for r, lbl in zip(raw.images[split.valid], raw.labels[split.valid]):
        d = hashlib.sha1(np.ascontiguousarray(r).tobytes()).hexdigest()
        if table.setdefault(d, int(lbl)) != int(lbl):
            clash.add(d)
    mean, std = normalization(cfg.groundtruth.dataset)
    held = _raw_digest(data.held_out.images, mean, std)
    assert set(held) <= set(table), "held-out images are not images of the source's held-out split"
    assert len(set(held) & clash) < len(held) // 20  # the pixel table decides nearly every image
    oracle = Oracle({d: v for d, v in table.items() if d not in clash}, mean, std)
    keep = [i for i, d in enumerate(held) if d not in clash]
    x, y = data.held_out.images[keep], data.held_out.labels[keep]
    batches = [(x[i:i + 128], y[i:i + 128]) for i in range(0, len(keep), 128)]
    rows = estimate_archs(oracle, [parse_arch(ARCHS[0])], batches, progress=False)
    assert rows[0]["estimate"] == 100.0, "estimation scored against labels other than the images' own"


@pytest.mark.parametrize("tau", [10.0, 0.1])
def test_gdas_samples_ops_with_the_softmax_of_alpha(tau):
    """GDAS's hard sample is the argmax of Gumbel-perturbed log-probabilities: categorical with softmax(alpha)
    for any temperature. Counts per edge within binomial bounds of those probabilities."""
    from harness.samplers.gdas import gumbel_hard

    alpha = torch.tensor([[2.0, 1.0, 0.0, -1.0, 0.5]] * NUM_EDGES)
    probs, n = alpha.softmax(-1)[0].numpy(), 4000
    g = torch.Generator().manual_seed(0)
    counts = np.zeros((NUM_EDGES, NUM_OPS), int)
    for _ in range(n):
        _, index = gumbel_hard(alpha, tau, g)
        counts[range(NUM_EDGES), index.numpy()] += 1
    lo, hi = stats.binom.interval(1 - 1e-6, n, probs)
    assert ((counts >= lo) & (counts <= hi)).all(), (counts.tolist(), lo, hi)


def test_search_images_are_disjoint_from_training_and_estimation_images():
    """A differentiable strategy trains alpha on held-out images that estimation does not score on."""
    cfg = tiny_config(sampler__name="'darts'")
    data = build_data(cfg, torch.device("cpu"), cfg.run.seed)
    search, train, held = digests(data.search.images), digests(data.train.images), digests(data.held_out.images)
    assert search and not search & train, "alpha trains on images the weights train on"
    assert not search & held, "alpha trains on images estimation scores on"
    assert data.split_info["search_overlaps_estimation"] is False
