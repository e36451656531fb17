"""Differentiable search: the mixed-op supernet, DARTS / SD-DARTS / GDAS / GDAS-NSAS, alpha estimators, sharpness."""
import copy
import json
import random

import numpy as np
import pandas as pd
import pytest
import torch
import torch.nn.functional as F

from harness.alpha import alpha_score, derived_arch, dominant_eigenvalue, parameter_free_fraction, rank_by_score, vote
from harness.compare import figures, load_run, runs_table
from harness.config import ConfigError, TrainSection, load_config
from harness.plots import alpha_curves
from harness.runner import run_experiment
from harness.samplers import SAMPLERS
from harness.samplers.differentiable import DARTSSampler, SDDARTSSampler
from harness.samplers.gdas import GDASSampler, gumbel_hard
from harness.search import alpha_scores
from harness.space import NUM_ARCHS, NUM_EDGES, NUM_OPS, OPS, Arch, all_archs, parse_arch, random_arch
from harness.supernet import SearchCell, Supernet
from harness.train import TrainState, make_optimizer, train

from .helpers import interrupt_training_at
from .test_runner import ARCHS, config  # noqa: F401  (the tiny run fixture)

DIFFERENTIABLE = [n for n in SAMPLERS.names() if SAMPLERS.get(n).differentiable]
NONE, SKIP = OPS.index("none"), OPS.index("skip_connect")


def _batches(n=8, size=8, seed=0):
    g = torch.Generator().manual_seed(seed)
    while True:
        yield torch.randn(n, 3, size, size, generator=g), torch.randint(0, 10, (n,), generator=g)


def _net(seed=0, bn_policy="batch"):
    torch.manual_seed(seed)
    return Supernet(C=4, N=1, num_classes=10, bn_policy=bn_policy)


# ---- the mixed-op supernet ----------------------------------------------------------------------------------

def test_mixed_op_is_the_weighted_sum_of_the_single_ops():
    """Node 3 is linear in the weights of the edges into it: the mixed cell's output must equal the weighted sum
    of single-path cells in which one of those edges carries one op (the others 'none'), all computed by the
    single-path forward."""
    torch.manual_seed(0)
    cell = SearchCell(4, affine=False, track_running_stats=False).eval()
    x = torch.randn(6, 4, 8, 8)
    rng = random.Random(0)
    into_3 = [e for e in range(NUM_EDGES) if e >= 3]  # edges 0->3, 1->3, 2->3
    for _ in range(5):
        prefix = [rng.randrange(NUM_OPS) for _ in range(3)]
        w = torch.zeros(NUM_EDGES, NUM_OPS)
        for e in range(3):
            w[e, prefix[e]] = 1.0
        w[3:] = torch.rand(3, NUM_OPS)  # arbitrary weights, not even normalised
        expected = torch.zeros_like(x)
        for e in into_3:
            for o in range(1, NUM_OPS):
                arch = Arch(prefix + [o if k == e else NONE for k in into_3])
                expected += w[e, o] * cell(x, arch)
        with torch.no_grad():
            assert torch.allclose(cell.forward_weighted(x, w), expected, atol=1e-5)


def test_one_hot_weights_give_the_single_path_network():
    net = _net().eval()
    x = next(_batches())[0]
    rng = random.Random(1)
    for arch in [parse_arch(a) for a in ARCHS] + [random_arch(rng) for _ in range(10)]:
        w = F.one_hot(torch.tensor(arch), NUM_OPS).float()
        with torch.no_grad():
            assert torch.allclose(net.forward_weighted(x, w), net(x, arch), atol=1e-5), arch
    with pytest.raises(ValueError, match="shape"):
        net.forward_weighted(x, torch.zeros(5, 5))


def _called_ops(net, run):
    """(cell, edge, op) of every op module called while ``run()`` executes, with call counts."""
    calls, handles = {}, []
    cells = [c for c in net.cells if isinstance(c, SearchCell)]
    for ci, cell in enumerate(cells):
        for e, ops in enumerate(cell.edges):
            for o, module in enumerate(ops):
                def hook(_m, _i, _o, key=(ci, e, o)):
                    calls[key] = calls.get(key, 0) + 1
                handles.append(module.register_forward_hook(hook))
    try:
        run()
    finally:
        for h in handles:
            h.remove()
    return calls, len(cells)


def test_gdas_runs_exactly_one_op_per_edge_in_forward():
    net = _net()
    x, y = next(_batches())
    sampler = GDASSampler()
    sampler.attach(net, _batches(seed=1), steps=100, seed=0)
    modules_run = {OPS.index(n) for n in ("nor_conv_1x1", "nor_conv_3x3", "avg_pool_3x3")}
    seen, learned = set(), 0
    for step in range(30):
        box = {}

        def run():
            box["loss"], box["arch"] = sampler.path_loss(net, x, y, step, sampler.alpha)
        calls, n_cells = _called_ops(net, run)
        arch = box["arch"]
        seen.update(arch)
        expected = {(c, e, arch[e]): 1 for c in range(n_cells) for e in range(NUM_EDGES) if arch[e] in modules_run}
        assert calls == expected  # the sampled op of every edge, once; nothing else (skip and none run no module)
        (grad,) = torch.autograd.grad(box["loss"], sampler.alpha)
        assert torch.isfinite(grad).all()
        learned += bool((grad != 0).any())
    assert seen == set(range(NUM_OPS))
    # alpha learns from the single path (a path whose output node has one input edge can give exactly zero: the
    # batch-statistics BN after the cell cancels the scale of that edge's weight)
    assert learned >= 15
    # the DARTS mixed op, by contrast, runs every op of every edge
    calls, n_cells = _called_ops(net, lambda: net.forward_weighted(x, torch.full((NUM_EDGES, NUM_OPS), 0.2)))
    assert calls == {(c, e, o): 1 for c in range(n_cells) for e in range(NUM_EDGES) for o in modules_run}


@pytest.mark.parametrize("constraint", ["random-diverse", "random-compensate"])
def test_gdas_nsas_notebook_constraint_sets_and_detached_gradient(constraint):
    """Oracles from the official GDAS-NSAS notebooks: diver_gene makes the second path differ from the random
    one on every edge; cal_compensate only where random agrees with the sampled path (elsewhere the sampled op).
    With constraint_grad = false the value is 0.8 L(current) + 0.1 (L(random) + L(diverse)) (lam 0.2) and the
    gradient is plain GDAS's: equal, parameter by parameter, to a GDAS sampler's with the same seed."""
    x, y = next(_batches())
    for step in range(20):
        net = _net()
        s = SAMPLERS.get("gdas-nsas")(constraint=constraint, lam=0.2)
        s.attach(net, _batches(seed=1), steps=20, seed=step)
        torch.manual_seed(step)
        _, current = s.path_loss(net, x, y, 0, s.alpha.detach())
        rand, other = s.members(current)
        for e in range(NUM_EDGES):
            if constraint == "random-diverse" or rand[e] == current[e]:
                assert other[e] != rand[e]
            else:
                assert other[e] == current[e]
    net, ref = _net(), _net()
    s = SAMPLERS.get("gdas-nsas")(constraint=constraint, lam=0.2, constraint_grad=False)
    g = GDASSampler()
    s.attach(net, _batches(seed=1), steps=20, seed=3)
    g.attach(ref, _batches(seed=1), steps=20, seed=3)
    loss, arch = s.weight_loss(net, x, y, 0)
    ref_loss, ref_arch = g.weight_loss(ref, x, y, 0)
    assert arch == ref_arch and s.used_ == 2
    loss.backward()
    ref_loss.backward()
    for (name, p), q in zip(net.named_parameters(), ref.parameters()):
        assert (p.grad is None) == (q.grad is None), name
        if p.grad is not None:
            assert torch.allclose(p.grad, q.grad, rtol=0, atol=1e-7), name
    assert loss.item() != pytest.approx(ref_loss.item())  # the value carries the constraint
    # the value, by hand, with a sampler whose draws are replayed
    s2 = SAMPLERS.get("gdas-nsas")(constraint=constraint, lam=0.2, constraint_grad=False)
    net2 = _net()
    s2.attach(net2, _batches(seed=1), steps=20, seed=3)
    state = s2.noise.get_state()
    loss2, arch2 = s2.weight_loss(net2, x, y, 0)
    s2.noise.set_state(state)
    hard, _ = s2.sample(0, s2.alpha.detach())
    with torch.no_grad():
        cur = F.cross_entropy(net2.forward_weighted(x, hard, arch2), y)
        r, d = (F.cross_entropy(net2(x, a), y) for a in s2.members(arch2))
    assert loss2.item() == pytest.approx((0.8 * cur + 0.1 * (r + d)).item(), rel=1e-6)


def test_gumbel_hard_sample_is_one_hot_with_soft_gradients_and_follows_alpha():
    alpha = torch.tensor([[0.0, 0, 0, 3, 0]] * NUM_EDGES, requires_grad=True)
    g = torch.Generator().manual_seed(0)
    counts = np.zeros(NUM_OPS)
    for _ in range(400):
        hard, index = gumbel_hard(alpha, 1.0, g)
        assert torch.allclose(hard.detach(), F.one_hot(index, NUM_OPS).float(), atol=1e-6)
        counts += np.bincount(index.numpy(), minlength=NUM_OPS)
    p = torch.softmax(alpha.detach()[0], 0).numpy()
    assert np.allclose(counts / counts.sum(), p, atol=0.04)  # Gumbel-max draws follow softmax(alpha)
    hard.sum().backward()
    assert alpha.grad is not None


def test_gdas_temperature_decays_linearly_from_tau_max_to_tau_min():
    s = GDASSampler(tau_max=10, tau_min=0.1)
    s.attach(_net(), _batches(), steps=100, seed=0)
    assert s.tau(0) == 10 and s.tau(99) == pytest.approx(0.1) and s.tau(50) == pytest.approx(10 - 9.9 * 50 / 99)


# ---- every differentiable strategy ----------------------------------------------------------------------------

def _skip(stream, n):
    for _ in range(n):
        next(stream)
    return stream


def _run(name, steps, state=None):
    """Train a tiny supernet with ``name`` up to ``steps`` (continuing from ``state``); batches depend only on the
    step, so a resumed run sees what an uninterrupted one would."""
    net = _net()
    sampler = SAMPLERS.get(name)()
    cfg = TrainSection(lr=0.05, log_every=2)
    opt, sched = make_optimizer(net, cfg, 20)
    done = state["state"]["step"] if state else 0
    sampler.attach(net, _skip(_batches(seed=7), done), steps=20, seed=0)  # one search batch per step
    st, rng = TrainState(), random.Random(0)
    if state is not None:
        rng.setstate(state["rng"])
        net.load_state_dict(state["model"])
        opt.load_state_dict(state["opt"])
        sched.load_state_dict(state["sched"])
        sampler.load_state_dict(state["sampler"])
        st = TrainState(**state["state"])
    st = train(net, sampler, _skip(_batches(seed=3), done), cfg, steps, rng, opt, sched, st, progress=False)
    saved = copy.deepcopy({"model": net.state_dict(), "opt": opt.state_dict(), "sched": sched.state_dict(),
                           "sampler": sampler.state_dict(), "state": vars(st), "rng": rng.getstate()})
    return sampler, st, saved


@pytest.mark.parametrize("name", DIFFERENTIABLE)
def test_differentiable_conformance(name):
    sampler, st, _ = _run(name, 4)
    before = torch.zeros(NUM_EDGES, NUM_OPS)
    assert sampler.alpha.shape == (NUM_EDGES, NUM_OPS) and not torch.allclose(sampler.alpha.detach(), before)
    assert all(np.isfinite(r["loss"]) for r in st.log) and st.step == 4
    assert st.paths > 0 and st.paths <= 4 * sampler.paths_per_step + 1e-9
    # resuming from a state_dict continues exactly as an uninterrupted run would
    _, _, at2 = _run(name, 2)
    resumed, _, _ = _run(name, 4, state=at2)
    straight, _, _ = _run(name, 4)
    assert torch.equal(resumed.alpha.detach(), straight.alpha.detach())
    with pytest.raises(TypeError, match="differentiable"):
        sampler.plan(0, random.Random(0))
    if sampler.shrinkable:  # uniform-alpha: a shrunk space narrows both the paths and alpha's softmax
        sampler.restrict([[1, 2]] * NUM_EDGES)
        assert all(op in (1, 2) for op in sampler.derived())
    else:
        with pytest.raises(ValueError, match="shrinking"):
            sampler.restrict([[1, 2]] * NUM_EDGES)
    sampler.restrict([list(range(NUM_OPS))] * NUM_EDGES)  # the whole space is fine (a resumed run restricts to it)


def test_unattached_sampler_says_what_to_do():
    with pytest.raises(RuntimeError, match="attach"):
        DARTSSampler().state_dict()


def test_darts_alpha_step_follows_the_search_loss_gradient():
    """One first-order step: Adam's first update moves every alpha entry by -lr * sign(gradient), where the
    gradient is that of the search loss at the updated weights."""
    net = _net()
    s = DARTSSampler(arch_weight_decay=0.0, alpha_init_scale=0.0)
    search = _batches(seed=5)
    s.attach(net, search, steps=10, seed=0)
    probe = copy.deepcopy(next(_batches(seed=5)))  # what the sampler will draw
    opt, _ = make_optimizer(net, TrainSection(), 10)
    s.train_step(net, *next(_batches(seed=1)), 0, random.Random(0), opt, 5.0)
    a0 = torch.zeros(NUM_EDGES, NUM_OPS, requires_grad=True)
    (g,) = torch.autograd.grad(F.cross_entropy(net.forward_weighted(probe[0], a0.softmax(-1)), probe[1]), a0)
    moved = s.alpha.detach()
    assert torch.allclose(moved, -3e-4 * torch.sign(g), atol=1e-6)


def test_unrolled_darts_reduces_to_first_order_without_a_virtual_step():
    """With the virtual step's learning rate at 0, w' = w and the implicit term vanishes: the second-order
    gradient equals the first-order one."""
    net = _net()
    s = DARTSSampler(unrolled=True)
    s.attach(net, _batches(seed=2), steps=10, seed=0)
    opt, _ = make_optimizer(net, TrainSection(lr=0.0, lr_min=0.0, weight_decay=0.0), 10)
    x, y = next(_batches(seed=3))
    xs, ys = next(_batches(seed=4))
    g2 = s.unrolled_grad(net, x, y, xs, ys, opt)
    (g1,) = torch.autograd.grad(F.cross_entropy(net.forward_weighted(xs, s.alpha.softmax(-1)), ys), s.alpha)
    assert torch.allclose(g2, g1, atol=1e-6)
    opt, _ = make_optimizer(net, TrainSection(lr=0.5), 10)
    assert not torch.allclose(s.unrolled_grad(net, x, y, xs, ys, opt), g1, atol=1e-6)  # the lr matters


# ---- SD-DARTS voting teachers ---------------------------------------------------------------------------------

def test_vote_rules_give_probability_distributions():
    g = torch.Generator().manual_seed(0)
    probs = torch.randn(3, 7, 10, generator=g).softmax(-1)
    mean = vote(probs, "mean")
    assert torch.allclose(mean.sum(-1), torch.ones(7)) and (mean >= 0).all()
    assert torch.allclose(mean, (probs[0] + probs[1] + probs[2]) / 3)
    hard = vote(probs, "majority")
    assert torch.allclose(hard.sum(-1), torch.ones(7)) and (hard >= 0).all()
    for b in range(7):  # share of teachers whose argmax is each class
        votes = [int(probs[t, b].argmax()) for t in range(3)]
        assert hard[b].tolist() == pytest.approx([votes.count(c) / 3 for c in range(10)])
    with pytest.raises(ValueError, match="valid: mean, majority"):
        vote(probs, "median")


@pytest.mark.parametrize("select", ["recent", "best"])
def test_voting_teachers_are_the_chosen_snapshots(select):
    net = _net()
    s = SDDARTSSampler(teachers=2, select=select, pool=4, temperature=3.0)
    s.attach(net, _batches(seed=2), steps=10, seed=0)
    x = next(_batches(seed=9))[0]
    assert s.teacher_distribution(x) is None  # no snapshot yet: no distillation term
    losses = [0.9, 0.2, 0.7, 0.4, 0.8]
    states = []
    for step, loss in enumerate(losses, 1):
        with torch.no_grad():
            for p in net.parameters():
                p.add_(0.05 * torch.randn_like(p))
            s.alpha.add_(0.1)
        states.append((copy.deepcopy(net.state_dict()), s.alpha.detach().clone()))
        s.snapshot(net, step, loss)
    assert len(s.snapshots_) == (2 if select == "recent" else 4)  # the pool keeps the most recent
    chosen = [c["step"] for c in s.chosen()]
    assert chosen == ([4, 5] if select == "recent" else [2, 4])  # best: the lowest losses of steps 2..5: 0.2, 0.4
    with torch.no_grad():
        for p in net.parameters():  # the live model moves on; snapshots are copies
            p.add_(1.0)
    teacher = s.teacher_distribution(x)
    expected = []
    for step in chosen:
        ref = _net()
        ref.load_state_dict(states[step - 1][0])
        with torch.no_grad():
            expected.append((ref.forward_weighted(x, states[step - 1][1].softmax(-1)) / 3.0).softmax(-1))
    assert torch.allclose(teacher, torch.stack(expected).mean(0), atol=1e-6)
    assert torch.allclose(teacher.sum(-1), torch.ones(len(x))) and (teacher >= 0).all()


def test_sd_darts_adds_the_distillation_term():
    net = _net()
    s = SDDARTSSampler(teachers=1, beta=2.0, temperature=2.0)
    s.attach(net, _batches(seed=2), steps=10, seed=0)
    x, y = next(_batches(seed=3))
    plain = F.cross_entropy(net.forward_weighted(x, s.alpha.detach().softmax(-1)), y)
    assert torch.allclose(s.weight_loss(net, x, y), plain)
    s.snapshot(net, 1, 0.0)
    with torch.no_grad():
        for p in net.parameters():
            p.mul_(1.1)
    logits = net.forward_weighted(x, s.alpha.detach().softmax(-1))
    teacher = s.teacher_distribution(x)
    kl = (teacher * (teacher.log() - F.log_softmax(logits / 2.0, -1))).sum(-1).mean()
    assert torch.allclose(s.weight_loss(net, x, y), F.cross_entropy(logits, y) + 2.0 * 4.0 * kl, atol=1e-6)
    with pytest.raises(ValueError, match="pool"):
        SDDARTSSampler(teachers=3, select="best", pool=2)


# ---- alpha estimators and sharpness ---------------------------------------------------------------------------

def test_alpha_score_ranks_all_15625_architectures_deterministically():
    alpha = torch.randn(NUM_EDGES, NUM_OPS, generator=torch.Generator().manual_seed(0))
    frame = alpha_scores(alpha, lambda archs: np.full(len(archs), np.nan))
    assert len(frame) == NUM_ARCHS and sorted(frame["rank"]) == list(range(1, NUM_ARCHS + 1))
    assert frame.equals(alpha_scores(alpha.clone(), lambda archs: np.full(len(archs), np.nan)))
    logp = torch.log_softmax(alpha.double(), -1)
    for i in (0, 17, 4242, NUM_ARCHS - 1):  # the score is the log-probability of the ops
        arch = Arch.from_index(i)
        assert frame.loc[i, "alpha_score"] == pytest.approx(float(sum(logp[e, o] for e, o in enumerate(arch))))
    best = frame.loc[frame["rank"] == 1, "arch"].item()
    assert best == derived_arch(alpha).to_str()
    ordered = frame.sort_values("rank")
    assert (np.diff(ordered["alpha_score"].to_numpy()) <= 0).all()
    # ties (alpha at 0: every architecture equally likely) are broken by the base-5 index, the same every time
    tied = alpha_scores(torch.zeros(NUM_EDGES, NUM_OPS), lambda archs: np.full(len(archs), np.nan))
    assert (tied["rank"] == np.arange(1, NUM_ARCHS + 1)).all() and (tied["space_index"] == np.arange(NUM_ARCHS)).all()
    assert tied["nb201_index"].isna().all()  # no ground truth given: NB201's index is unknown, not made up
    assert (rank_by_score(np.array([1.0, 2.0, 2.0]), np.array([5, 9, 3])) == [3, 2, 1]).all()


def test_derived_architecture_and_its_parameter_free_share():
    alpha = np.zeros((NUM_EDGES, NUM_OPS))
    for e, op in enumerate([3, 1, 0, 4, 2, 1]):
        alpha[e, op] = 1.0
    arch = derived_arch(alpha)
    assert list(arch) == [3, 1, 0, 4, 2, 1]
    assert parameter_free_fraction(arch) == pytest.approx(4 / 6)  # skip, none, pool, skip
    assert alpha_score(alpha, np.asarray([arch])).item() == pytest.approx(6 * (1 - np.log(np.e + 4)))


def test_power_iteration_finds_the_dominant_hessian_eigenvalue():
    g = torch.Generator().manual_seed(0)
    q, _ = torch.linalg.qr(torch.randn(30, 30, generator=g, dtype=torch.float64))
    eig = torch.linspace(-1.0, 4.0, 30, dtype=torch.float64)
    h = q @ torch.diag(eig) @ q.T
    value, used = dominant_eigenvalue(lambda a: 0.5 * a.flatten() @ h @ a.flatten() + a.sum() ** 3 * 0,
                                      torch.zeros(NUM_EDGES, NUM_OPS, dtype=torch.float64), iters=500,
                                      generator=g, tol=1e-10)
    assert value == pytest.approx(4.0, rel=1e-4) and used < 500
    # the largest eigenvalue, not the largest in magnitude: with eigenvalues in [-5, 2] it is 2
    h2 = q @ torch.diag(torch.linspace(-5.0, 2.0, 30, dtype=torch.float64)) @ q.T
    value, _ = dominant_eigenvalue(lambda a: 0.5 * a.flatten() @ h2 @ a.flatten(),
                                   torch.zeros(NUM_EDGES, NUM_OPS, dtype=torch.float64), iters=2000, generator=g,
                                   tol=1e-12)
    assert value == pytest.approx(2.0, rel=1e-3)


# ---- config and end to end ------------------------------------------------------------------------------------

def test_config_rejects_what_does_not_apply():
    with pytest.raises(ConfigError, match="sharpness_every needs a differentiable sampler.*darts"):
        load_config(None, ["search.sharpness_every=1.0"])
    with pytest.raises(ConfigError, match="shrink"):
        load_config(None, ["sampler.name='darts'", "shrink.rule='angle'"])
    with pytest.raises(ConfigError, match="did you mean 'teachers'|Did you mean 'teachers'"):
        load_config(None, ["sampler.name='sd-darts'", "sampler.teacher=3"])
    with pytest.raises(ConfigError, match="search"):
        load_config(None, ["search.sharpness_iters=0"])


@pytest.fixture
def dconfig(config):
    config.data.valid_subset = 30  # the other 30 held-out images train alpha
    config.sampler = {"name": "darts"}
    config.search.alpha_every = 0.25
    config.search.sharpness_every = 2.0  # 5 steps per epoch: every 10 steps
    config.search.sharpness_iters = 3
    config.forgetting.probes = 0
    return config


@pytest.mark.slow  # whole runs or many parametrised cases; the fast tier stays within 5 minutes
def test_differentiable_run_writes_alpha_estimators_and_sharpness(tmp_path, dconfig):
    out = tmp_path / "run"
    metrics = run_experiment(dconfig, out, progress=False)
    spe = metrics["train"]["steps_per_epoch"]
    records = pd.read_csv(out / "alpha.csv")
    assert records["step"].iloc[0] == 0 and records["step"].iloc[-1] == 20
    assert records["parameter_free"].between(0, 1).all()
    probs = records[[c for c in records if c.startswith("p_e0_")]].to_numpy()
    assert np.allclose(probs.sum(1), 1.0)
    sharp = pd.read_csv(out / "sharpness.csv")
    assert sharp["step"].tolist() == [0, 2 * spe, 20] and np.isfinite(sharp["eigenvalue"]).all()
    scores = pd.read_csv(out / "alpha_scores.csv")
    assert len(scores) == NUM_ARCHS and scores["ground_truth"].notna().sum() == len(ARCHS)
    assert scores["nb201_index"].isna().all()  # the test table has no nb201_index column: unknown, not made up
    block = json.loads((out / "metrics.json").read_text())["alpha"]
    assert block["derived"]["arch"] == records["derived"].iloc[-1] == derived_arch(np.array(block["alpha"])).to_str()
    assert block["ranking"]["n_archs"] == len(ARCHS) and block["sharpness"]["n"] == len(sharp)
    est = pd.read_csv(out / "estimates.csv")  # the single paths with inherited weights, as for any strategy
    assert est["estimate"].between(0, 100).all() and len(est) == len(ARCHS)
    assert metrics["split"]["n_search_used"] == 30 and not metrics["split"]["search_overlaps_estimation"]
    # compare reads both estimators and draws the derived-architecture / sharpness figure
    record = load_run(out)
    row = runs_table([record]).iloc[0]
    assert row["alpha_tau"] == pytest.approx(block["ranking"]["kendall_tau"]["value"], nan_ok=True)
    assert row["parameter_free"] == block["derived"]["parameter_free_fraction"]
    assert row["sharpness_last"] == pytest.approx(sharp["eigenvalue"].iloc[-1])
    fig = figures([record])["alpha_search"]
    known = bool(records["ground_truth"].notna().any())  # a derived architecture the test table holds
    assert [len(ax.lines) for ax in fig.axes] == [int(known), 1, 1]
    if not known:  # an empty panel says why
        assert "ground-truth table" in " ".join(t.get_text() for t in fig.axes[0].texts)


def test_alpha_curves_average_seeds_and_reject_bad_input():
    alpha = [pd.DataFrame({"epoch": [0.0, 1.0], "ground_truth": [80.0, 90.0 + s], "parameter_free": [0.5, 0.5 + s / 10]})
             for s in range(3)]
    sharp = [pd.DataFrame({"epoch": [0.0, 1.0], "eigenvalue": [0.1, 0.2 + s]}) for s in range(3)]
    fig = alpha_curves({"darts": [{"alpha": a, "sharpness": h} for a, h in zip(alpha, sharp)],
                        "gdas": [{"alpha": alpha[0], "sharpness": None}]})
    acc, pf, eig = fig.axes
    assert len(acc.lines) == 2 and len(eig.lines) == 1  # gdas has no sharpness
    assert acc.lines[0].get_ydata().tolist() == pytest.approx([80.0, 91.0])  # mean over the 3 seeds
    assert eig.lines[0].get_ydata().tolist() == pytest.approx([0.1, 1.2])
    with pytest.raises(ValueError, match="empty"):
        alpha_curves({})
    with pytest.raises(ValueError, match="lacks columns"):
        alpha_curves({"x": [{"alpha": pd.DataFrame({"epoch": [0.0]}), "sharpness": None}]})


@pytest.mark.slow  # whole runs or many parametrised cases; the fast tier stays within 5 minutes
def test_differentiable_run_resumes_with_alpha_and_its_record(tmp_path, dconfig, monkeypatch):
    out = tmp_path / "run"
    interrupt_training_at(12, dconfig, out, monkeypatch, owner=DARTSSampler)
    saved = torch.load(out / "checkpoint.pt", weights_only=False)
    assert saved["state"]["step"] == 10 and saved["sampler"]["alpha"].abs().sum() > 0
    run_experiment(dconfig, out, progress=False)
    records = pd.read_csv(out / "alpha.csv")
    assert records["step"].is_monotonic_increasing and records["step"].iloc[0] == 0  # the record kept its start
    assert records["step"].iloc[-1] == 20


def test_alpha_scores_nb201_index_is_nb201s_own(gt_frame):
    """Oracle: the shared NB201 table's own index column (NB201's order is not base 5)."""
    from harness.groundtruth import TableGroundTruth

    gt = TableGroundTruth(gt_frame)
    index = {a: gt.nb201_index(a) for a in gt.archs()}
    frame = alpha_scores(torch.zeros(NUM_EDGES, NUM_OPS), lambda archs: np.full(len(archs), np.nan), index.get)
    truth = gt_frame.set_index("arch")["nb201_index"]
    assert (frame.set_index("arch")["nb201_index"] == truth.loc[frame["arch"]].to_numpy()).all()
    assert (frame["nb201_index"] == frame["space_index"]).sum() < 100  # the base-5 index is another numbering


# ---- uniform-alpha (ABS's magnitude baseline training) ----------------------------------------------------

def test_uniform_alpha_trains_the_weights_exactly_as_uniform_and_alpha_by_the_mixed_op():
    """dropnode_by_magnitude.py:39-59: the weights step on a uniform single path (the same draws, hence the same
    weights, as the uniform sampler with the same rng: the alpha pass adds no weight gradient), then one Adam step
    of alpha on the search batch through the mixed op; Adam's first step moves alpha by -lr * sign(gradient)."""
    from harness.train import train_step

    ref, net = _net(), _net()
    s = SAMPLERS.get("uniform-alpha")(arch_weight_decay=0.0, alpha_init_scale=0.0)
    s.attach(net, _batches(seed=5), steps=10, seed=0)
    opt_ref, _ = make_optimizer(ref, TrainSection(), 10)
    opt, _ = make_optimizer(net, TrainSection(), 10)
    uniform = SAMPLERS.get("uniform")()
    rng_ref, rng = random.Random(4), random.Random(4)
    data = _batches(seed=1)
    search = _batches(seed=5)
    for step in range(3):
        x, y = next(data)
        _, (trained_ref,) = train_step(ref, uniform, x, y, step, rng_ref, opt_ref, 5.0)
        before = s.alpha.detach().clone()
        _, (trained,) = s.train_step(net, x, y, step, rng, opt, 5.0)
        assert trained == trained_ref
        for (name, p), q in zip(net.named_parameters(), ref.parameters()):
            assert torch.equal(p, q), name
        xs, ys = next(search)
        if step == 0:  # the gradient at the weights just updated, alpha = 0
            a0 = torch.zeros(NUM_EDGES, NUM_OPS, requires_grad=True)
            with torch.no_grad():
                snapshot = copy.deepcopy(net)
            (g,) = torch.autograd.grad(F.cross_entropy(snapshot.forward_weighted(xs, a0.softmax(-1)), ys), a0)
            assert torch.allclose(s.alpha.detach() - before, -3e-4 * torch.sign(g), atol=1e-6)
    assert s.paths_per_step == 5


def test_uniform_alpha_after_a_round_draws_and_weighs_only_alive_ops():
    net = _net()
    s = SAMPLERS.get("uniform-alpha")()
    s.attach(net, _batches(seed=5), steps=10, seed=0)
    opt, _ = make_optimizer(net, TrainSection(), 10)
    allowed = [[1, 3], [0, 2], [3], [1, 2, 4], [0, 4], [2, 3]]
    s.restrict(allowed)
    rng = random.Random(0)
    for step in range(4):
        _, (arch,) = s.train_step(net, *next(_batches(seed=step)), step, rng, opt, 5.0)
        assert all(op in ops for op, ops in zip(arch, allowed))
    probs = s.logits().softmax(-1).detach()
    for e, ops in enumerate(allowed):
        dead = [o for o in range(NUM_OPS) if o not in ops]
        assert torch.all(probs[e, dead] == 0) and probs[e, ops].sum().item() == pytest.approx(1.0)
    assert all(op in ops for op, ops in zip(s.derived(), allowed))


def test_unrolled_darts_gradient_is_darts_eq_7_8_with_no_host_read(monkeypatch):
    """The second-order gradient against DARTS eq. 7-8 written out here with functional calls, in float64:
    d/d alpha L_val(w', alpha) - lr * (d/d alpha L_train(w+, alpha) - d/d alpha L_train(w-, alpha)) / (2 eps), with
    w' = w - lr * grad_w L_train(w, alpha), w+- = w +- eps * grad_w' L_val(w', alpha), eps = 0.01 / that gradient's
    norm. And it reads nothing back to the host on the way (each such read is a GPU sync, formerly one per
    parameter and step): float() and item() of a tensor fail the test. (The finite difference is no stand-in for
    the exact mixed derivative here: BN on tiny batches bends the loss within eps, as in the official code.)"""
    net = _net(seed=1).double()
    s = DARTSSampler(unrolled=True)
    s.attach(net, _batches(seed=2), steps=10, seed=0)
    s.alpha = torch.nn.Parameter(s.alpha.detach().double() + 0.3 * torch.randn(s.alpha.shape, dtype=torch.float64))
    lr = 0.2
    opt, _ = make_optimizer(net, TrainSection(lr=lr, lr_min=lr, weight_decay=0.0), 10)
    x, y = next(_batches(seed=3))
    xs, ys = next(_batches(seed=4))
    x, xs = x.double(), xs.double()

    class Weighted(torch.nn.Module):
        def __init__(self):
            super().__init__()
            self.net = net

        def forward(self, images, weights):
            return self.net.forward_weighted(images, weights)

    w = {n: p.detach().clone().requires_grad_() for n, p in net.named_parameters()}
    names = list(w)

    def loss(weights: dict, images, labels, alpha):
        logits = torch.func.functional_call(Weighted(), {f"net.{n}": v for n, v in weights.items()},
                                            (images, alpha.softmax(-1)))
        return F.cross_entropy(logits, labels)

    g_train = torch.autograd.grad(loss(w, x, y, s.alpha.detach()), list(w.values()), allow_unused=True)
    w = {n: v.detach() for n, v in w.items()}
    virtual = {n: (w[n] - lr * g if g is not None else w[n].clone()).requires_grad_() for n, g in zip(names, g_train)}
    grads = torch.autograd.grad(loss(virtual, xs, ys, s.alpha), [s.alpha, *virtual.values()], allow_unused=True)
    d_alpha = grads[0]
    d_w = {n: g if g is not None else torch.zeros_like(w[n]) for n, g in zip(names, grads[1:])}
    eps = 0.01 / torch.cat([g.flatten() for g in d_w.values()]).norm()
    plus, minus = ({n: w[n] + sign * eps * d_w[n] for n in names} for sign in (1, -1))
    (g_plus,) = torch.autograd.grad(loss(plus, x, y, s.alpha), s.alpha)
    (g_minus,) = torch.autograd.grad(loss(minus, x, y, s.alpha), s.alpha)
    want = d_alpha - lr * (g_plus - g_minus) / (2 * eps)
    for method in ("__float__", "item"):
        monkeypatch.setattr(torch.Tensor, method, lambda self, method=method: pytest.fail(f"a host read: {method}"))
    got = s.unrolled_grad(net, x, y, xs, ys, opt)
    monkeypatch.undo()
    assert torch.allclose(got, want, rtol=1e-8, atol=1e-10 * want.abs().max().item())
