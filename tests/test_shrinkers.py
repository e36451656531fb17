"""Shrinking rules, the removal step, the alive space, and samplers restricted to a shrunk space."""
import itertools
import math
import random

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from harness.samplers import SAMPLERS
from harness.shrinkers import SHRINKERS, ScoreContext, Space, choose_removals
from harness.shrinkers.base import covering_sample, mean_by_op
from harness.shrinkers.quality import inside, op_importance, op_score_tau, space_quality
from harness.shrinkers.weights import PATHS, angles, op_terms
from harness.space import NUM_EDGES, NUM_OPS, OPS, Arch, all_archs
from harness.supernet import SearchCell, Supernet

NONE, SKIP, C1, C3, POOL = range(5)


def random_space(rng: random.Random) -> Space:
    return Space([rng.sample(range(NUM_OPS), rng.randint(1, NUM_OPS)) for _ in range(NUM_EDGES)])


# ------------------------------------------------------------------ samplers on a shrunk space

@pytest.mark.parametrize("name", [n for n in SAMPLERS.names() if not SAMPLERS.get(n).differentiable])
def test_sampler_never_draws_a_removed_op_after_restriction(name):
    sampler, rng = SAMPLERS.get(name)(), random.Random(0)
    for step in range(40):  # fill archives and histories with architectures of the whole space
        archs = [a for a, _ in sampler.plan(step, rng)]
        sampler.observe(step, archs, [1.0] * len(archs))
    space = Space([[SKIP, C3], [C1], [NONE, C3, POOL], [SKIP], [C1, C3], [POOL, C3]])
    sampler.restrict(space.alive)
    for step in range(40, 240):
        plan = sampler.plan(step, rng)
        for arch, _ in plan:
            assert arch in space, f"{name} trained {arch.to_str()} after its ops were removed"
        archs = [a for a, _ in plan]
        sampler.observe(step, archs, [1.0] * len(archs))
    restored = SAMPLERS.get(name)()
    restored.restrict(space.alive)
    restored.load_state_dict(sampler.state_dict())
    assert all(a in space for a, _ in restored.plan(0, random.Random(1)))


def test_fairnas_paths_per_step_follows_the_widest_alive_edge():
    sampler = SAMPLERS.get("fairnas")()
    assert sampler.paths_per_step == 5
    sampler.restrict([[1, 2, 3]] + [[0, 1]] * 5)
    assert sampler.paths_per_step == 3
    group = sampler.group(random.Random(0))
    assert sorted(a[0] for a in group) == [1, 2, 3]


# ------------------------------------------------------------------ removal

def test_space_size_membership_and_refusing_the_last_op():
    space = Space([[0, 1], [2], [0, 3, 4], [1], [2, 3], [4]])
    assert space.size == 12 == len(space.archs())
    assert all(a in space for a in space.archs())
    assert Arch((0, 3, 0, 1, 2, 4)) not in space
    with pytest.raises(ValueError, match="last op"):
        space.remove(1, 2)
    with pytest.raises(ValueError, match="not alive"):
        space.remove(0, 4)
    with pytest.raises(ValueError, match="at least one alive op"):
        Space([[0]] * 5 + [[]])


def test_per_edge_round_removes_each_edges_lowest_scored_ops():
    scores = np.tile(np.arange(NUM_OPS, dtype=float), (NUM_EDGES, 1))  # op 0 lowest everywhere
    scores[2] = [5, 4, 3, 2, 1]  # edge 2: op 4 lowest
    removed = choose_removals(scores, Space(), "per_edge", drop=2, min_ops=2)
    assert sorted(removed) == sorted([(e, o) for e in range(NUM_EDGES) if e != 2 for o in (0, 1)] + [(2, 4), (2, 3)])


def test_global_round_removes_the_lowest_over_all_edges_and_stops_at_target_size():
    scores = np.full((NUM_EDGES, NUM_OPS), 10.0)
    scores[0, 1], scores[3, 4], scores[5, 2], scores[1, 0] = 1, 2, 3, 4
    assert choose_removals(scores, Space(), "global", drop=3, min_ops=1) == [(0, 1), (3, 4), (5, 2)]
    # 5^6 = 15625 -> one removal gives 4 * 5^5 = 12500 <= 13000: stop there
    assert choose_removals(scores, Space(), "global", drop=3, min_ops=1, target_size=13000) == [(0, 1)]


def test_ties_go_to_the_lower_op_index_and_unscored_ops_are_kept():
    scores = np.zeros((NUM_EDGES, NUM_OPS))
    scores[:, 0] = np.nan  # no score for 'none': never removed for lack of data
    removed = choose_removals(scores, Space(), "per_edge", drop=1, min_ops=1)
    assert removed == [(e, 1) for e in range(NUM_EDGES)]


@pytest.mark.parametrize("mode", ["per_edge", "global"])
def test_shrinking_never_empties_an_edge(mode):
    rng = random.Random(0)
    for trial in range(200):
        space, min_ops = random_space(rng), rng.randint(1, 5)
        drop, target = rng.randint(1, 12), rng.choice([0, 0, 1, 50])
        start = [len(ops) for ops in space.alive]
        for _ in range(40):
            scores = np.array([[rng.random() for _ in range(NUM_OPS)] for _ in range(NUM_EDGES)])
            removed = choose_removals(scores, space, mode, drop, min_ops, target)
            for e, o in removed:
                space.remove(e, o)
            assert all(len(ops) >= 1 for ops in space.alive)
            if not removed:
                break
        if not (target and space.size <= target):  # converged: every edge went down to min_ops, no further
            assert [len(ops) for ops in space.alive] == [min(n, min_ops) for n in start]


def test_covering_sample_uses_every_alive_op_of_every_edge():
    space = Space([[0, 1, 2], [3], [0, 4], [1, 2, 3, 4], [2], [0, 1]])
    archs = covering_sample(space, 10, random.Random(0))
    assert len(archs) >= 10 and all(a in space for a in archs)
    for e, ops in enumerate(space.alive):
        counts = {o: sum(a[e] == o for a in archs) for o in ops}
        assert min(counts.values()) >= 10 // 4


def test_mean_by_op_averages_over_the_architectures_using_each_op():
    space = Space([[0, 1]] * NUM_EDGES)
    archs = [Arch((0,) * 6), Arch((1,) * 6), Arch((1, 0, 0, 0, 0, 0))]
    out = mean_by_op(archs, np.array([1.0, 3.0, 5.0]), space.mask())
    assert out[0, 0] == 1.0 and out[0, 1] == 4.0 and out[1, 0] == 3.0 and out[1, 1] == 3.0
    assert np.isnan(out[:, 2:]).all()


# ------------------------------------------------------------------ the rules

def _explicit_vector(net: Supernet, arch: Arch, params: dict) -> torch.Tensor:
    """ABS's child weight vector built literally (the reference the per-module decomposition must equal)."""
    search = [i for i, cell in enumerate(net.cells) if isinstance(cell, SearchCell)]
    parts = [p.reshape(-1) for n, p in params.items()
             if not (n.startswith("cells.") and int(n.split(".")[1]) in search)]
    for i in search:
        for path in PATHS:
            if any(arch[e] == NONE for e in path):
                continue
            for e in path:
                op = arch[e]
                if op in (C1, C3):
                    prefix = f"cells.{i}.edges.{e}.{op}."
                    parts += [p.reshape(-1) for n, p in params.items() if n.startswith(prefix)]
                elif op == POOL:
                    parts.append(torch.full((net.cells[i].channels * 9,), 1 / 9, dtype=torch.float64))
    return torch.cat([p.double() for p in parts])


def _train(net: Supernet, steps: int, seed: int = 0) -> None:
    g = torch.Generator().manual_seed(seed)
    opt = torch.optim.SGD(net.parameters(), lr=0.1, momentum=0.9)
    rng = random.Random(seed)
    for _ in range(steps):
        x, y = torch.randn(16, 3, 8, 8, generator=g), torch.randint(0, 10, (16,), generator=g)
        arch = Arch(rng.randrange(NUM_OPS) for _ in range(NUM_EDGES))
        opt.zero_grad()
        F.cross_entropy(net(x, arch), y).backward()
        opt.step()


@pytest.fixture
def net():
    torch.manual_seed(0)
    return Supernet(4, 1, 10)


def test_angle_of_an_untrained_child_is_zero_and_grows_with_training(net):
    init = {n: p.detach().clone() for n, p in net.named_parameters()}
    sample = random.Random(0).sample(all_archs(), 300)
    assert np.abs(angles(sample, *op_terms(net, init))).max() < 1e-6
    _train(net, 5)
    early = angles(sample, *op_terms(net, init))
    _train(net, 60, seed=1)
    late = angles(sample, *op_terms(net, init))
    assert (early > 1e-3).all() and late.mean() > early.mean()
    assert (late >= 0).all() and (late <= math.pi).all()


def test_angle_decomposition_equals_the_explicit_child_vector(net):
    init = {n: p.detach().clone() for n, p in net.named_parameters()}
    _train(net, 30)
    now = dict(net.named_parameters())
    archs = random.Random(1).sample(all_archs(), 25) + [Arch((NONE,) * 6), Arch((SKIP,) * 6), Arch((POOL,) * 6)]
    fast = angles(archs, *op_terms(net, init))
    for arch, got in zip(archs, fast):
        v0, vt = _explicit_vector(net, arch, init), _explicit_vector(net, arch, now)
        want = torch.arccos(torch.clamp(v0 @ vt / (v0.norm() * vt.norm()), -1, 1)).item()
        assert got == pytest.approx(want, abs=1e-9), arch.to_str()


def test_angle_scores_are_mean_child_angles_and_nan_for_dead_ops(net):
    init = {n: p.detach().clone() for n, p in net.named_parameters()}
    _train(net, 20)
    space = Space([[1, 3], [0, 1, 2, 3, 4], [3], [1, 3, 4], [2, 3], [4]])
    scores = SHRINKERS.get("angle")().scores(net, space, ScoreContext(random.Random(0), init_state=init))
    archs = space.archs()
    child = angles(archs, *op_terms(net, init))
    assert scores[0, 3] == pytest.approx(child[[a[0] == 3 for a in archs]].mean())
    assert np.isnan(scores[~space.mask()]).all() and np.isfinite(scores[space.mask()]).all()


def test_weight_norm_is_the_norm_of_op_weights_with_surrogates_for_parameter_free_ops(net):
    scores = SHRINKERS.get("weight-norm")().scores(net, Space(), ScoreContext(random.Random(0)))
    cells = [c for c in net.cells if isinstance(c, SearchCell)]  # one per stage at N=1, widths 4, 8, 16
    assert len(cells) == 3
    for e in range(NUM_EDGES):
        for op in (C1, C3):
            weights = torch.cat([c.edges[e][op][1].weight.detach().double().reshape(-1) for c in cells])
            assert scores[e, op] == pytest.approx(weights.norm().item())  # over every cell
        assert scores[e, NONE] == 0 and scores[e, SKIP] == 0
        assert scores[e, POOL] == pytest.approx(math.sqrt(sum(c.channels for c in cells) / 9))


def test_accuracy_scores_ops_by_the_accuracy_of_sampled_children():
    evaluated = []

    def evaluate(archs):  # a fake supernet: accuracy grows with 3x3 convolutions
        evaluated.extend(archs)
        return [(1.0, 10.0 * sum(o == C3 for o in a)) for a in archs]

    space = Space([[0, 1, 2, 3], [3, 4]] + [list(range(NUM_OPS))] * 4)
    scores = SHRINKERS.get("accuracy")(samples=40).scores(None, space, ScoreContext(random.Random(0), evaluate))
    assert all(a in space for a in evaluated) and len(evaluated) >= 40
    for e, ops in enumerate(space.alive):
        assert int(np.nanargmax(scores[e])) == C3
    loss = SHRINKERS.get("accuracy")(samples=40, measure="neg_loss").scores(
        None, space, ScoreContext(random.Random(0), evaluate))
    assert np.allclose(loss[space.mask()], -1.0)


@pytest.mark.parametrize("rule", [n for n in SHRINKERS.names() if n != "none"])
def test_rule_conformance(rule, net):
    """Every rule: a (6, 5) score array, finite on alive ops, NaN on dead ones, repeatable with the same rng."""
    init = {n: p.detach().clone() for n, p in net.named_parameters()}
    _train(net, 10)
    space = Space([[0, 1, 3], [1, 2, 3, 4], [3], [0, 1, 2, 3, 4], [2, 3], [3, 4]])
    x, y = torch.randn(32, 3, 8, 8, generator=torch.Generator().manual_seed(0)), torch.arange(32) % 10

    def evaluate(archs):
        out = []
        with torch.no_grad():
            for a in archs:
                logits = net(x, a)
                out.append((F.cross_entropy(logits, y).item(), 100.0 * (logits.argmax(1) == y).float().mean().item()))
        return out

    cls = SHRINKERS.get(rule)
    alpha = torch.randn(NUM_EDGES, NUM_OPS, generator=torch.Generator().manual_seed(1))
    one = cls().scores(net, space, ScoreContext(random.Random(3), evaluate, init, alpha))
    two = cls().scores(net, space, ScoreContext(random.Random(3), evaluate, init, alpha))
    assert one.shape == (NUM_EDGES, NUM_OPS)
    assert np.isfinite(one[space.mask()]).all() and np.isnan(one[~space.mask()]).all()
    np.testing.assert_array_equal(one, two)


def test_unknown_rule_lists_valid_names():
    with pytest.raises(KeyError, match="valid: accuracy, angle, magnitude, none, weight-norm"):
        SHRINKERS.get("angel")


# ------------------------------------------------------------------ quality against ground truth

def test_space_quality_counts_top_architectures_inside_and_space_regret():
    ops = np.array(list(itertools.product([0, 1], repeat=6)))  # 64 architectures over ops 0/1
    acc = ops.sum(1) * 10.0 + np.arange(64) * 0.01  # more 1s = better; the all-1 cell is best
    mask = np.zeros((NUM_EDGES, NUM_OPS), dtype=bool)
    mask[:, 0] = True
    mask[:3, 1] = True  # edges 3-5 lost op 1
    q = space_quality(mask, ops, acc, tops=(5,))
    assert q["space_size"] == 8 and q["known_in_space"] == 8 and q["known"] == 64
    top = np.argsort(-acc)[:4]  # ceil(5% of 64) = 4
    assert q["top5pct_retained"] == pytest.approx(inside(ops[top], mask).mean()) == 0
    assert q["best_overall"] == acc.max() and q["best_in_space"] == pytest.approx(30.0 + 0.01 * 56)
    assert q["space_regret"] == pytest.approx(acc.max() - q["best_in_space"])


def test_op_importance_is_mean_accuracy_of_architectures_using_the_op():
    ops = np.array([[0] * 6, [1] * 6, [1, 0, 0, 0, 0, 0]])
    acc = np.array([10.0, 30.0, 50.0])
    mask = np.zeros((NUM_EDGES, NUM_OPS), dtype=bool)
    mask[:, :2] = True
    imp = op_importance(ops, acc, mask)
    assert imp[0, 0] == 10.0 and imp[0, 1] == 40.0 and imp[1, 0] == 30.0 and np.isnan(imp[:, 2:]).all()
    assert op_score_tau(imp, imp) == pytest.approx(1.0)
    assert op_score_tau(-imp, imp) == pytest.approx(-1.0)
    assert math.isnan(op_score_tau(np.full_like(imp, np.nan), imp))


def test_op_names_are_nb201s():
    assert OPS == ("none", "skip_connect", "nor_conv_1x1", "nor_conv_3x3", "avg_pool_3x3")


# ------------------------------------------------------------------ ABS's magnitude rule and drop rule

def official_abs_drop(scores: np.ndarray, alive: list[list[int]], drop: int) -> set[tuple[int, int]]:
    """AngleNAS dropnode_by_magnitude.py:159-188 (drop_operators), written out by hand: the alive ops of edges
    with more than one op, sorted by score ascending (stable: edge order, then op order); an op is dropped when a
    later op of the list is on the same edge; stop after ``drop`` drops."""
    ops = [(e, o) for e in range(NUM_EDGES) if len(alive[e]) > 1 for o in alive[e]]
    ops.sort(key=lambda eo: scores[eo])
    out = set()
    for i, (e, o) in enumerate(ops):
        if any(e2 == e for e2, _ in ops[i + 1:]):
            out.add((e, o))
            if len(out) >= drop:
                break
    return out


def test_global_round_with_min_ops_1_is_abs_drop_rule():
    rng = np.random.default_rng(0)
    for trial in range(200):
        scores = rng.random((NUM_EDGES, NUM_OPS))
        alive = [sorted(rng.choice(NUM_OPS, size=rng.integers(1, NUM_OPS + 1), replace=False).tolist())
                 for _ in range(NUM_EDGES)]
        drop = int(rng.integers(1, 25))
        ours = choose_removals(scores, Space(alive), "global", drop, 1)
        assert set(ours) == official_abs_drop(scores, alive, drop)
    # NB201's round: 30 ops, drop 20, one op left on each edge: the largest-scored one
    scores = rng.random((NUM_EDGES, NUM_OPS))
    left = Space()
    for e, o in choose_removals(scores, left, "global", 20, 1):
        left.remove(e, o)
    assert sum(len(a) for a in left.alive) == 10 and all(scores[e].argmax() in left.alive[e] for e in range(NUM_EDGES))


def test_magnitude_is_softmax_of_alpha_per_edge(net):
    alpha = torch.tensor([[0.0, 1.0, 2.0, 3.0, 4.0]] * NUM_EDGES)
    scores = SHRINKERS.get("magnitude")().scores(net, Space(), ScoreContext(random.Random(0), alpha=alpha))
    by_hand = np.exp(np.arange(5.0)) / np.exp(np.arange(5.0)).sum()  # softmax(0, 1, 2, 3, 4)
    for e in range(NUM_EDGES):
        np.testing.assert_allclose(scores[e], by_hand)
    space = Space([[1, 3], *[list(range(NUM_OPS))] * 5])  # over the alive ops only after a round
    scores = SHRINKERS.get("magnitude")().scores(net, space, ScoreContext(random.Random(0), alpha=alpha))
    np.testing.assert_allclose(scores[0, [1, 3]], [1 / (1 + math.e ** 2), math.e ** 2 / (1 + math.e ** 2)])
    assert np.isnan(scores[0, [0, 2, 4]]).all()
    with pytest.raises(ValueError, match="uniform-alpha.*weight-norm"):
        SHRINKERS.get("magnitude")().scores(net, Space(), ScoreContext(random.Random(0)))
