"""Conformance: every registered sampler is tested the moment it exists."""
import random
from collections import Counter

import numpy as np
import pytest

from harness.samplers import SAMPLERS
from harness.samplers.diversity import DiverseArchive, knn_novelty, total_novelty
from harness.space import NUM_EDGES, NUM_OPS, Arch, all_archs, depth, hamming, random_arch


PLANNED = [n for n in SAMPLERS.names() if not SAMPLERS.get(n).differentiable]  # differentiable: test_differentiable.py


@pytest.mark.parametrize("name", PLANNED)
def test_sampler_conformance(name):
    sampler = SAMPLERS.get(name)()
    plans = [sampler.plan(step, random.Random(step)) for step in range(50)]
    for plan in plans:
        assert plan, "a plan trains at least one path"
        for arch, weight in plan:
            assert isinstance(arch, Arch)
            assert weight > 0
    again = SAMPLERS.get(name)()
    assert [again.plan(s, random.Random(s)) for s in range(50)] == plans  # determined by the passed rng
    sampler.observe(0, [a for a, _ in plans[0]], [1.0] * len(plans[0]))
    sampler.load_state_dict(sampler.state_dict())


def test_unknown_sampler_lists_valid_names():
    with pytest.raises(KeyError, match="valid: .*uniform.*Did you mean 'uniform'"):
        SAMPLERS.get("uniformm")


def test_uniform_draws_every_op_on_every_edge_evenly():
    sampler, rng = SAMPLERS.get("uniform")(), random.Random(0)
    counts = [Counter() for _ in range(NUM_EDGES)]
    n = 5000
    for step in range(n):
        (arch, w), = sampler.plan(step, rng)
        assert w == 1.0
        for e, op in enumerate(arch):
            counts[e][op] += 1
    for c in counts:
        assert set(c) == set(range(NUM_OPS))
        assert all(abs(v / n - 0.2) < 0.025 for v in c.values())


def test_uniform_respects_allowed_ops():
    allowed = [[3], [0, 1], [2, 3, 4], [4], [1], [0, 3]]
    sampler, rng = SAMPLERS.get("uniform")(allowed=allowed), random.Random(1)
    for step in range(300):
        (arch, _), = sampler.plan(step, rng)
        assert all(op in allowed[e] for e, op in enumerate(arch))
    with pytest.raises(ValueError):
        SAMPLERS.get("uniform")(allowed=[[1]] * 5 + [[]])


# ---- the rules of each strategy -------------------------------------------------------------------

def test_fairnas_trains_each_op_on_each_edge_exactly_once_per_step():
    sampler, rng = SAMPLERS.get("fairnas")(), random.Random(0)
    assert sampler.paths_per_step == NUM_OPS
    firsts = Counter()
    for step in range(200):
        plan = sampler.plan(step, rng)
        assert len(plan) == NUM_OPS and all(w == 1.0 for _, w in plan)
        for e in range(NUM_EDGES):
            assert sorted(a[e] for a, _ in plan) == list(range(NUM_OPS))
        firsts[plan[0][0][0]] += 1
    assert set(firsts) == set(range(NUM_OPS))  # the permutations are random, not a fixed order


def test_fairnas_on_a_shrunk_space_is_as_fair_as_possible():
    allowed = [[0, 1, 2, 3, 4], [1, 3], [2], [0, 1, 2], [3, 4], [1, 2, 3, 4]]
    sampler, rng = SAMPLERS.get("fairnas")(allowed=allowed), random.Random(3)
    for step in range(50):
        plan = sampler.plan(step, rng)
        assert len(plan) == 5
        for e, ops in enumerate(allowed):
            counts = Counter(a[e] for a, _ in plan)
            assert set(counts) == set(ops)
            assert max(counts.values()) - min(counts.values()) <= 1


def test_depth_counts_convolutions_on_the_deepest_path():
    def d(text):
        return depth(Arch.from_str(text))

    assert d("|nor_conv_3x3~0|+|none~0|nor_conv_1x1~1|+|none~0|none~1|nor_conv_3x3~2|") == 3
    assert d("|nor_conv_3x3~0|+|none~0|nor_conv_3x3~1|+|nor_conv_3x3~0|none~1|skip_connect~2|") == 2
    assert d("|nor_conv_3x3~0|+|nor_conv_3x3~0|none~1|+|nor_conv_3x3~0|none~1|skip_connect~2|") == 1
    assert d("|avg_pool_3x3~0|+|skip_connect~0|skip_connect~1|+|none~0|none~1|avg_pool_3x3~2|") == 0
    assert d("|nor_conv_3x3~0|+|nor_conv_3x3~0|nor_conv_3x3~1|+|none~0|none~1|none~2|") == 0  # output unreachable
    # the deepest path need not be the longest one: 0->3 conv beats 0->1->2->3 all skips
    assert d("|skip_connect~0|+|none~0|skip_connect~1|+|nor_conv_1x1~0|none~1|skip_connect~2|") == 1
    assert {depth(a) for a in all_archs()} == {0, 1, 2, 3}


def test_knn_novelty_counts_multiset_members():
    members = np.array([[0] * 6, [1] * 6], dtype=np.int8)
    a = Arch([0, 0, 0, 1, 1, 1])  # distance 3 to both
    b = Arch([0] * 6)  # distance 0 to the first, 6 to the second
    assert knn_novelty([a, b], members, k=2).tolist() == [3.0, 3.0]
    # the first member held 3 times: b's 2 nearest are both at distance 0
    assert knn_novelty([a, b], members, k=2, counts=[3, 1]).tolist() == [3.0, 0.0]
    assert knn_novelty([a], members[:0], k=10).tolist() == [6.0]  # empty archive: maximal novelty
    brute = sorted(hamming(b, m) for m in [members[0]] * 3 + [members[1]])[:3]
    assert knn_novelty([b], members, k=3, counts=[3, 1])[0] == pytest.approx(np.mean(brute))


def test_novelty_trains_the_most_novel_candidate():
    sampler, rng = SAMPLERS.get("novelty")(k=3, candidates=8), random.Random(0)
    trained = []
    for step in range(60):
        cand_rng = random.Random(step)
        candidates = sampler.propose(random.Random(step))
        (arch, w), = sampler.plan(step, cand_rng)
        scores = [np.mean(sorted(hamming(c, t) for t in trained)[:3]) if trained else 6.0 for c in candidates]
        assert arch in candidates and w == 1.0
        assert scores[candidates.index(arch)] == max(scores)  # brute force agrees
        sampler.observe(step, [arch], [0.0])
        trained.append(arch)
    assert len(set(trained)) == len(trained)  # a trained architecture (novelty 0 for k>=1 duplicates) is avoided


def test_novelty_mutates_recent_architectures_and_bounds_its_archive():
    sampler = SAMPLERS.get("novelty")(candidates=10, mutation_fraction=0.5, recent=2, archive_size=5)
    seen = [Arch([3] * 6), Arch([2] * 6)]
    sampler.observe(0, seen, [0.0, 0.0])
    cands = sampler.propose(random.Random(0))
    assert all(min(hamming(c, s) for s in seen) == 1 for c in cands[:5])  # one-edge mutations of recent ones
    for i in range(10):
        sampler.observe(i, [Arch.from_index(i)], [0.0])
    assert sampler.counts_.sum() == 5 and len(sampler.history_) == 5
    state = sampler.state_dict()
    other = SAMPLERS.get("novelty")(archive_size=5)
    other.load_state_dict(state)
    assert (other.counts_ == sampler.counts_).all()


def test_diverse_archive_stays_maximally_diverse_under_replacement():
    rng = random.Random(0)
    archive = DiverseArchive(size=6, k=3)
    before = 0.0
    for i in range(300):
        arch = random_arch(rng)
        members = list(archive.members)
        changed = archive.offer(arch)
        after = archive.diversity()
        if len(members) == 6:
            # greedy optimality: no single replacement of a member by the offered arch beats the result
            best = max([total_novelty(members[:j] + [arch] + members[j + 1:], 3) for j in range(6)] + [before])
            assert after == pytest.approx(best)
            assert after >= before - 1e-12 and changed == (after > before + 1e-12)
        before = after
    assert len(archive) == 6 and len(set(archive.members)) == 6
    archive.offer(archive.members[0])
    assert len(set(archive.members)) == 6  # a member offered again changes nothing
    # a full archive of identical-but-one members gives way to a far architecture
    crowd = DiverseArchive(size=3, k=2)
    for a in ([0] * 6, [0] * 5 + [1], [0] * 4 + [1, 1]):
        crowd.offer(Arch(a))
    assert crowd.offer(Arch([4] * 6)) and Arch([4] * 6) in crowd.members


def test_nsas_loss_is_current_plus_mean_of_the_archive():
    sampler, rng = SAMPLERS.get("nsas")(archive_size=4, lam=0.5), random.Random(0)
    (first, w), = sampler.plan(0, rng)
    assert w == 1.0  # nothing trained yet
    sampler.observe(0, [first], [0.0])
    for step in range(1, 30):
        plan = sampler.plan(step, rng)
        members = sampler.archive(plan[0][0]).members
        assert plan[0][1] == 0.5 and [a for a, _ in plan[1:]] == members
        assert all(w == pytest.approx(0.5 / len(members)) for _, w in plan[1:])
        assert sum(w for _, w in plan) == pytest.approx(1.0)
        sampler.observe(step, [a for a, _ in plan], [0.0] * len(plan))
    assert len(sampler.archive(first).members) == 4
    restored = SAMPLERS.get("nsas")(archive_size=4)
    restored.load_state_dict(sampler.state_dict())
    assert restored.archive(first).members == sampler.archive(first).members
    with pytest.raises(ValueError, match="lam"):
        SAMPLERS.get("nsas")(lam=1.0)


def test_nsas_c_constrains_with_architectures_of_the_same_depth():
    sampler, rng = SAMPLERS.get("nsas-c")(archive_size=3), random.Random(1)
    for step in range(200):
        plan = sampler.plan(step, rng)
        current = plan[0][0]
        assert all(depth(a) == depth(current) for a, _ in plan[1:])
        sampler.observe(step, [a for a, _ in plan], [0.0] * len(plan))
    assert set(sampler.archives_) == {0, 1, 2, 3}
    assert all(len(a) == 3 for a in sampler.archives_.values())


def test_nsas_g_diverse_architecture_avoids_the_other_two_on_every_edge():
    sampler, rng = SAMPLERS.get("nsas-g")(), random.Random(0)
    seen = Counter()
    for step in range(300):
        (cur, wc), (rnd, wr), (div, wd) = sampler.plan(step, rng)
        assert (wc, wr, wd) == (0.2, 0.4, 0.4)
        for e in range(NUM_EDGES):
            assert div[e] not in (cur[e], rnd[e])
            seen[div[e]] += 1
    assert set(seen) == set(range(NUM_OPS))


def test_nsas_lg_draws_the_diverse_architecture_from_its_archive():
    sampler, rng = SAMPLERS.get("nsas-lg")(archive_size=5, w_current=0.5, w_random=0.25, w_diverse=0.25), random.Random(0)
    plan = sampler.plan(0, rng)
    assert [w for _, w in plan] == [0.5, 0.25, 0.25]
    for step in range(1, 100):
        sampler.observe(step, [a for a, _ in plan], [0.0] * 3)
        plan = sampler.plan(step, rng)
        (cur, _), (rnd, _), (div, _) = plan
        members = sampler.archive_.members
        assert div in members
        far = max(hamming(m, cur) + hamming(m, rnd) for m in members)
        assert hamming(div, cur) + hamming(div, rnd) == far
    assert len(sampler.archive_) == 5
