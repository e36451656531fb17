"""Estimators (harness/estimators): baselines, the 12-epoch table, zero-cost proxies, vote; and runs with them.

Expected values are computed by hand or by an independent method in the test (finite differences for synflow,
module counts for params), never taken from the estimator's own output."""
from __future__ import annotations

import copy
import inspect
import json
import math
import random

import numpy as np
import pandas as pd
import pytest
import torch
from scipy.stats import spearmanr
from torch import nn

import harness.runner as runner_mod
from harness.config import ConfigError, load_config
from harness.estimators import ESTIMATORS, Context
from harness.estimators.base import arch_seed
from harness.estimators.nwot import NASWOT, relu_kernel
from harness.estimators.vote import copeland
from harness.nets import NB201Network, count_parameters
from harness.runner import run_experiment
from harness.space import EDGES, OPS, Arch, parse_arch

from .conftest import SHARED
from .test_runner import ARCHS  # connected and degenerate cells, the all-'none' one last

PROXIES = [n for n in ESTIMATORS.names() if n != "supernet"]


def ctx(images=(), seed=0, C=2, N=1, resolution=8) -> Context:
    return Context(C=C, N=N, num_classes=10, resolution=resolution, device=torch.device("cpu"), seed=seed,
                   images=list(images))


def batch(n=16, seed=0, res=8):
    g = torch.Generator().manual_seed(seed)
    return torch.randn(n, 3, res, res, generator=g), torch.randint(0, 10, (n,), generator=g)


# ------------------------------------------------------------------ hand-computed values

def test_params_of_a_tiny_network_by_hand():
    """C=1, N=1, 2 classes, skip-only cells: stem 27 + BN 2; reductions 1->2 (18+4, 36+4, shortcut 2) and 2->4
    (72+8, 144+8, 8); last BN 8; classifier 4*2+2. Also the module count of the built network, for others."""
    c = Context(C=1, N=1, num_classes=2, resolution=8, device=torch.device("cpu"), seed=0)
    skip = parse_arch(ARCHS[3])
    assert ESTIMATORS.get("params")().score([skip], c) == [29 + 64 + 240 + 8 + 10]
    for s in ARCHS:
        a = parse_arch(s)
        assert ESTIMATORS.get("params")().score([a], ctx()) == [count_parameters(NB201Network(a, 2, 1, 10))]


def test_nwot_kernel_and_score_by_hand():
    """Codes of [[1,-1],[1,1],[-1,-1]] at one ReLU: [[1,0],[1,1],[0,0]]; K counts agreeing units:
    [[2,1,1],[1,2,0],[1,0,2]], det 4."""
    x = torch.tensor([[1.0, -1.0], [1.0, 1.0], [-1.0, -1.0]])
    net = nn.Sequential(nn.ReLU())
    assert torch.equal(relu_kernel(net, x), torch.tensor([[2.0, 1, 1], [1, 2, 0], [1, 0, 2]], dtype=torch.float64))
    assert NASWOT().measure(net, x, None, ctx()) == pytest.approx(math.log(4.0))
    two = nn.Sequential(nn.ReLU(), nn.Identity(), nn.ReLU())  # the same codes twice: K doubles, det x 8
    assert NASWOT().measure(two, x, None, ctx()) == pytest.approx(math.log(32.0))


def _synflow_by_finite_differences(arch: Arch, c: Context) -> float:
    """The definition computed without autograd: the network with BN removed and |parameters| in float64 is
    affine in each single weight, so dR/dw = R(w = 1) - R(w = 0) exactly; sum |w * dR/dw| over conv/linear
    weights, then log."""
    torch.manual_seed(arch_seed(c.seed, arch))  # the same initialisation as the estimator's
    net = NB201Network(arch, c.C, c.N, c.num_classes)
    for module in list(net.modules()):
        for name, child in list(module.named_children()):
            if isinstance(child, nn.BatchNorm2d):
                setattr(module, name, nn.Identity())
    net = net.double()
    with torch.no_grad():
        for t in list(net.parameters()) + list(net.buffers()):
            t.abs_()
        ones = torch.ones(1, 3, c.resolution, c.resolution, dtype=torch.float64)
        total = 0.0
        for m in net.modules():
            if isinstance(m, (nn.Conv2d, nn.Linear)):
                flat = m.weight.view(-1)
                for i in range(flat.numel()):
                    w = flat[i].item()
                    flat[i] = 1.0
                    r1 = net(ones).sum().item()
                    flat[i] = 0.0
                    r0 = net(ones).sum().item()
                    flat[i] = w
                    total += abs(w * (r1 - r0))
    return math.log(total)


@pytest.mark.parametrize("arch", [ARCHS[1], ARCHS[2]])
def test_synflow_equals_its_definition_by_finite_differences(arch):
    c = Context(C=1, N=1, num_classes=3, resolution=4, device=torch.device("cpu"), seed=5)
    a = parse_arch(arch)
    (got,) = ESTIMATORS.get("synflow")().score([a], c)
    assert got == pytest.approx(_synflow_by_finite_differences(a, c), rel=1e-10)


def test_copeland_vote_by_hand():
    """Three architectures scored by (synflow, jacob_cov, snip): a = (3, 1, 5), b = (2, 2, 7), c = (NaN, 0, 6).
    b beats a on jacob_cov and snip (2 of 3); b beats c on jacob_cov and snip (the NaN synflow comparison is no
    vote); a vs c: a wins jacob_cov only and c wins snip only, so neither has a majority. Wins: 0, 2, 0."""
    scores = np.array([[3.0, 1.0, 5.0], [2.0, 2.0, 7.0], [np.nan, 0.0, 6.0]])
    assert copeland(scores).tolist() == [0.0, 2.0, 0.0]


# ------------------------------------------------------------------ invariances

def test_synflow_is_data_independent_and_init_dependent():
    est = ESTIMATORS.get("synflow")()
    archs = [parse_arch(s) for s in ARCHS[:3]]
    assert not est.needs_data
    a = est.score(archs, ctx([batch(seed=1)]))
    assert est.score(archs, ctx([batch(seed=2)])) == a
    assert est.score(archs, ctx(seed=1)) != a  # another initialisation


def test_nwot_is_invariant_to_labels_and_to_the_order_of_images():
    est = NASWOT()
    x, y = batch(24)
    for s in ARCHS[:3]:
        net = NB201Network(parse_arch(s), 2, 1, 10).train()
        want = est.measure(copy.deepcopy(net), x, y, ctx())
        assert est.measure(copy.deepcopy(net), x, y[torch.randperm(len(y))], ctx()) == want
        perm = torch.randperm(len(y))
        assert est.measure(copy.deepcopy(net), x[perm], y, ctx()) == pytest.approx(want, rel=1e-9)


@pytest.mark.parametrize("name", PROXIES)
def test_scores_do_not_depend_on_the_other_architectures(name):
    """Resuming re-scores the rest in new chunks: a score is a function of the architecture, run seed and data."""
    est = ESTIMATORS.get(name)()
    archs = [parse_arch(s) for s in ARCHS]
    c = ctx([batch(20)])
    c.gt, c.query = _TinyTable(), type("Q", (), {"dataset": "cifar10-valid", "metric": "valid", "seeds": "mean"})()
    together = est.score(archs, c)
    alone = [est.score([a], c)[0] for a in archs]
    flat = (lambda v: [tuple(x.values()) if isinstance(x, dict) else x for x in v])
    np.testing.assert_allclose(np.array(flat(together), dtype=float), np.array(flat(alone), dtype=float),
                               rtol=1e-6, equal_nan=True)


class _TinyTable:
    def query_many(self, archs, q):
        assert q.epochs == 12
        return np.array([float(sum(a)) for a in archs])


def test_the_12_epoch_estimator_reads_the_12_epoch_column(gt_frame):
    from harness.groundtruth import GTQuery, load_ground_truth
    from .conftest import GT_CSV

    gt = load_ground_truth(str(GT_CSV))
    rows = gt_frame.sample(20, random_state=0)
    c = ctx()
    c.gt, c.query = gt, GTQuery("cifar10-valid", "valid", 200)
    got = ESTIMATORS.get("nb201-12ep")().score([parse_arch(s) for s in rows["arch"]], c)
    np.testing.assert_allclose(got, rows["cifar10valid_valid_12"].to_numpy())


# ------------------------------------------------------------------ NASLib's recorded scores

NASLIB = SHARED / "nb201" / "sources" / "naslib_zc_nasbench201_partial__6639fd15.json"
NL_OPS = ["skip_connect", "none", "nor_conv_3x3", "nor_conv_1x1", "avg_pool_3x3"]
NL_EDGES = [(0, 1), (0, 2), (0, 3), (1, 2), (1, 3), (2, 3)]  # NASLib's edge order


def naslib_arch(key: str) -> Arch:
    ops = dict(zip(NL_EDGES, (int(t) for t in key.strip("()").split(","))))
    return Arch(tuple(OPS.index(NL_OPS[ops[e]]) for e in EDGES))


@pytest.mark.shared_data
@pytest.mark.parametrize("name", ["params", "flops", "synflow"])
@pytest.mark.slow  # 150 architectures on NB201's full network (up to 14 s); the fast tier stays within 5 minutes
def test_agreement_with_naslibs_recorded_scores(name):
    """Spearman >= 0.9 with NASLib's recorded CIFAR-10 scores on the same architectures (NB201 sizes; a seeded
    150 of its ~725 to keep the test short). FLOPs conventions differ slightly (harness/nets.py)."""
    if not NASLIB.exists():
        pytest.skip(f"shared NASLib scores absent ({NASLIB})")
    data = json.loads(NASLIB.read_text())["cifar10"]
    keys = sorted(k for k, v in data.items() if name in v)
    keys = random.Random(0).sample(keys, 150)
    c = Context(C=16, N=5, num_classes=10, resolution=32, device=torch.device("cpu"), seed=0)
    ours = ESTIMATORS.get(name)().score([naslib_arch(k) for k in keys], c)
    theirs = [data[k][name]["score"] for k in keys]
    assert spearmanr(ours, theirs).statistic >= 0.9


# ------------------------------------------------------------------ runs

@pytest.fixture
def config(tmp_path, image_folder):
    gt = tmp_path / "gt.csv"
    pd.DataFrame({"arch": ARCHS, "cifar10valid_valid_200": [50.0 + 5 * i for i in range(len(ARCHS))],
                  "cifar10valid_valid_12": [40.0 + 3 * i for i in range(len(ARCHS))]}).to_csv(gt, index=False)
    return load_config(None, [
        f"data.train_path='{image_folder}'", "data.resolution=8", "supernet.C=2", "supernet.N=1",
        "estimate.archs='list'", f"estimate.arch_list={json.dumps(ARCHS)}", f"groundtruth.source='{gt}'",
        "train.batch_size=12", "metrics.bootstrap=20", "run.device='cpu'", f"data.cache_dir='{tmp_path / 'cache'}'"])


@pytest.mark.parametrize("name", PROXIES)
def test_every_estimator_runs_end_to_end(tmp_path, config, name):
    takes_batch = "batch_size" in inspect.signature(ESTIMATORS.get(name).__init__).parameters
    config.estimator = {"name": name, **({"batch_size": 16} if takes_batch else {})}
    metrics = run_experiment(config, tmp_path / "run", progress=False)
    est = pd.read_csv(tmp_path / "run" / "estimates.csv")
    assert est["arch"].tolist() == ARCHS and len(est) == metrics["ranking"]["n_archs"] == 6
    assert metrics["strategy"] == name and metrics["estimator"]["name"] == name
    assert metrics["estimator"]["seconds"] >= 0
    if takes_batch:
        assert metrics["estimator"]["options"]["batch_size"] == 16
    assert not (tmp_path / "run" / "estimates.partial.csv").exists()
    assert (tmp_path / "run" / "config.toml").read_text().count(f'name = "{name}"') == 1


def test_an_interrupted_proxy_run_resumes_to_identical_scores(tmp_path, config, monkeypatch):
    config.estimator = {"name": "snip", "batch_size": 8}
    run_experiment(config, tmp_path / "whole", progress=False)
    real = runner_mod._score_archs

    def crash_after_two(est, name, ctx, out, archs, progress, flush_every=16):
        calls = {"n": 0}
        score = est.score

        def limited(chunk, c):
            calls["n"] += 1
            if calls["n"] > 1:
                raise KeyboardInterrupt
            return score(chunk, c)

        est.score = limited
        return real(est, name, ctx, out, archs, progress, flush_every=2)

    monkeypatch.setattr(runner_mod, "_score_archs", crash_after_two)
    with pytest.raises(KeyboardInterrupt):
        run_experiment(config, tmp_path / "cut", progress=False)
    assert len(pd.read_csv(tmp_path / "cut" / "estimates.partial.csv")) == 2
    monkeypatch.setattr(runner_mod, "_score_archs", real)
    run_experiment(config, tmp_path / "cut", progress=False)
    a, b = (pd.read_csv(tmp_path / d / "estimates.csv") for d in ("whole", "cut"))
    pd.testing.assert_frame_equal(a.drop(columns="seconds"), b.drop(columns="seconds"), check_exact=True)


def test_estimator_config_errors_are_one_line(tmp_path):
    with pytest.raises(ConfigError, match=r"unknown estimator 'synflo'.*Did you mean 'synflow'"):
        load_config(None, ["estimator.name=synflo"])
    with pytest.raises(ConfigError, match=r"unknown key in \[estimator\] for estimator 'snip' 'batch'"):
        load_config(None, ["estimator.name=snip", "estimator.batch=3"])
    with pytest.raises(ConfigError, match="batch_size = 1: expected at least 2"):
        load_config(None, ["estimator.name=snip", "estimator.batch_size=1"])
    with pytest.raises(ConfigError, match="takes no options"):
        load_config(None, ["estimator.name=params", "estimator.batch_size=3"])


def test_the_supernet_estimator_leaves_old_configs_and_digests_unchanged():
    cfg = load_config(None)
    assert cfg.estimator == {"name": "supernet"}
    assert "estimator" not in cfg.identity_toml() and "estimator" not in cfg.identity_toml(root=SHARED)
    assert "estimator" in load_config(None, ["estimator.name=params"]).identity_toml()
