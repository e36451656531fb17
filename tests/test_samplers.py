"""Conformance: every registered sampler is tested the moment it exists."""
import random
from collections import Counter

import numpy as np
import pytest

from harness.samplers import SAMPLERS
from harness.samplers.diversity import DiverseArchive, GreedyNoveltyArchive, knn_novelty, total_novelty
from harness.samplers.nsas import as_built, chain_edges
from harness.space import EDGES, NUM_EDGES, NUM_OPS, OPS, Arch, CellPath, all_archs, depth, hamming, random_arch


PLANNED = [n for n in SAMPLERS.names() if not SAMPLERS.get(n).differentiable]  # differentiable: test_differentiable.py


@pytest.mark.parametrize("name", PLANNED)
def test_sampler_conformance(name):
    sampler = SAMPLERS.get(name)()
    plans = [sampler.plan(step, random.Random(step)) for step in range(50)]
    for plan in plans:
        assert plan, "a plan trains at least one path"
        for arch, weight in plan:
            # one NB201 architecture, or one per search cell (per-cell); either way inside the space
            assert isinstance(arch, Arch) or isinstance(arch, CellPath) and all(isinstance(a, Arch) for a in arch)
            assert weight > 0  # by default every planned path trains (weight 0 = evaluated only, an option)
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
    sampler, rng = SAMPLERS.get("novelty")(rule="candidates", k=3, candidates=8), random.Random(0)
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
    sampler = SAMPLERS.get("novelty")(rule="candidates", candidates=10, mutation_fraction=0.5, recent=2,
                                      archive_size=5)
    seen = [Arch([3] * 6), Arch([2] * 6)]
    sampler.observe(0, seen, [0.0, 0.0])
    cands = sampler.propose(random.Random(0))
    assert all(min(hamming(c, s) for s in seen) == 1 for c in cands[:5])  # one-edge mutations of recent ones
    for i in range(10):
        sampler.observe(i, [Arch.from_index(i)], [0.0])
    assert sampler.counts_.sum() == 5 and len(sampler.history_) == 5
    state = sampler.state_dict()
    other = SAMPLERS.get("novelty")(rule="candidates", archive_size=5)
    other.load_state_dict(state)
    assert (other.counts_ == sampler.counts_).all()


def test_novelty_es_fills_its_store_then_moves_a_member_by_the_official_update():
    """Oracle: ENNAS's sample_arch/get_arch by hand. Filling: uniform draws, one slot per step. Then: a uniform
    slot; n Gaussian perturbations of its op vector, each weighted by the novelty of its rounded value (mean of the
    k smallest Hamming distances to the store, over 6 edges); member + es_lr / (n sigma) * sum; round, clip."""
    sampler = SAMPLERS.get("novelty")(store=4, k=2, n=3, es_lr=2.0, sigma=1.0)
    rng, mirror = random.Random(5), random.Random(5)
    filled = [sampler.plan(step, rng)[0][0] for step in range(4)]
    assert filled == [Arch(mirror.choice(range(NUM_OPS)) for _ in range(NUM_EDGES)) for _ in range(4)]
    assert sampler.store_ == filled
    for step in range(4, 30):
        store = list(sampler.store_)
        (arch, w), = sampler.plan(step, rng)
        index = mirror.randrange(4)
        member = list(store[index])
        noise = [[mirror.gauss(0.0, 1.0) for _ in range(NUM_EDGES)] for _ in range(3)]
        move = [0.0] * NUM_EDGES
        for eta in noise:
            gene = [round(m + e) for m, e in zip(member, eta)]  # Python's round: half to even, as np.round
            dist = sorted(sum(g != o for g, o in zip(gene, other)) / NUM_EDGES for other in store)
            fit = (dist[0] + dist[1]) / 2
            move = [mv + fit * e for mv, e in zip(move, eta)]
        expected = Arch(min(max(round(m + 2.0 / 3 * mv), 0), NUM_OPS - 1) for m, mv in zip(member, move))
        assert arch == expected and w == 1.0
        assert sampler.store_ == store[:index] + [expected] + store[index + 1:]  # written back


def test_novelty_es_at_the_official_step_size_trains_store_members():
    """At es_lr = 0.01, n = 10 the move is 0.001 times a sum of 10 novelty-weighted Gaussians per edge, far below the
    0.5 that would change the rounded architecture:
    after its store fills, the official rule trains members of its first `store` random draws."""
    sampler, rng = SAMPLERS.get("novelty")(store=50), random.Random(0)
    first = [sampler.plan(step, rng)[0][0] for step in range(50)]
    later = [sampler.plan(step, rng)[0][0] for step in range(50, 400)]
    assert set(later) <= set(first) and len(set(later)) > 30
    restored = SAMPLERS.get("novelty")(store=50)
    restored.load_state_dict(sampler.state_dict())
    assert restored.store_ == sampler.store_
    with pytest.raises(ValueError, match="rule"):
        SAMPLERS.get("novelty")(rule="evolution")


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


A0, A1, A4 = Arch([0] * 6), Arch([0] * 5 + [1]), Arch([4] * 6)


def test_official_archive_fill_adds_the_most_novel_candidate():
    """Oracle: the official diver_arch_generate, by hand. Novelty = mean of the k = 10 smallest Hamming
    distances to the members; only a score above 0 counts, the first maximum wins, else the fallback."""
    archive = GreedyNoveltyArchive(size=8, k=10)
    fallback = A4
    assert archive.fill([A1], fallback) == fallback  # empty archive: the official score is nan, never > 0
    archive.members = [A0]
    c1, c2, c3 = Arch([1, 0, 0, 0, 0, 0]), Arch([1, 1, 1, 0, 0, 0]), Arch([2, 2, 2, 0, 0, 0])  # novelty 1, 3, 3
    assert archive.fill([c1, c2, c3], fallback) == c2 and archive.members == [A0, c2]
    archive.members = [A0]
    assert archive.fill([A0, A0], fallback) == fallback  # no candidate above 0
    # update(): the fallback is drawn first, then the candidates; the current architecture joins `recent`
    archive = GreedyNoveltyArchive(size=2, k=10, candidates=2)
    draws = iter([A4, A0, A1, A0, Arch([0, 0, 0, 4, 4, 4]), A1])
    archive.update(A1, draws.__next__)  # empty: the fallback A4
    assert archive.members == [A4] and archive.recent == [A1]
    archive.update(A0, draws.__next__)  # fallback A0; candidates 0,0,0,4,4,4 (novelty 3) and A1 (novelty 6)
    assert archive.members == [A4, A1] and archive.recent == [A1, A0]


def test_official_archive_replaces_the_member_most_similar_to_the_current_one():
    """Oracle: the official find_similar_arch + diver_arch_replace, by hand."""
    m0, m1, m2 = A0, A1, A4
    current = Arch([0, 0, 0, 0, 1, 1])  # distances to the members: 2, 1, 6 -> m1 is compared
    # m1's novelty against the rest (m0, m2): (1 + 6) / 2 = 3.5
    r1 = Arch([0, 0, 0, 0, 0, 2])  # (1 + 6) / 2 = 3.5: not strictly more novel
    r2 = Arch([2, 2, 2, 0, 0, 0])  # (3 + 6) / 2 = 4.5
    r3 = Arch([3, 3, 3, 3, 0, 0])  # (4 + 6) / 2 = 5.0, the most novel
    r4 = Arch([3, 3, 3, 0, 3, 0])  # 5.0 as well, later: loses the tie
    archive = GreedyNoveltyArchive(size=3, k=10)
    archive.members, archive.recent = [m0, m1, m2], [r1, r2, r3, r4]
    assert archive.replace(current) == 1 and archive.members == [m0, r3, m2]
    archive.members, archive.recent = [m0, m1, m2], [r1]
    assert archive.replace(current) == 1 and archive.members == [m0, m1, m2]  # kept: nothing more novel
    archive.members, archive.recent = [m0, m1, m2], [r3]
    assert archive.replace(Arch([0, 0, 0, 0, 0, 3])) == 0  # equidistant from m0 and m1: the earliest
    assert archive.members == [r3, m1, m2]
    # a full archive replaces instead of filling, and keeps only the last `recent` architectures
    archive = GreedyNoveltyArchive(size=3, k=10, recent=2)
    archive.members = [m0, m1, m2]
    for arch in (r1, r2, current):
        archive.update(arch, lambda: pytest.fail("a full archive draws nothing"))
    assert archive.recent == [r2, current] and len(archive) == 3


def test_nsas_constrains_with_the_archive_updated_before_the_loss():
    sampler, rng = SAMPLERS.get("nsas")(), random.Random(0)
    assert (sampler.archive_size, sampler.k, sampler.lam) == (8, 10, 0.5)  # the official M, k and weight
    recent = []
    before = []
    for step in range(40):
        plan = sampler.plan(step, rng)
        current, members = plan[0][0], sampler.archive(plan[0][0]).members
        recent = (recent + [current])[-50:]
        assert len(members) == min(step + 1, 8)  # filled one per step, from the first step on
        assert plan[0][1] == 0.5 and [a for a, _ in plan[1:]] == members
        assert all(w == pytest.approx(0.5 / len(members)) for _, w in plan[1:])
        if step >= 8:  # full: at most one member changed, and only to a recently sampled architecture
            changed = [(b, a) for b, a in zip(before, members) if b != a]
            assert len(changed) <= 1 and all(a in recent for _, a in changed)
        before = list(members)
        sampler.observe(step, [a for a, _ in plan], [0.0] * len(plan))
    restored = SAMPLERS.get("nsas")()
    restored.load_state_dict(sampler.state_dict())
    assert restored.archives_[0].members == members and restored.archives_[0].recent == recent
    with pytest.raises(ValueError, match="lam"):
        SAMPLERS.get("nsas")(lam=1.0)
    with pytest.raises(ValueError, match="archive_rule"):
        SAMPLERS.get("nsas")(archive_rule="greedy")


def test_nsas_detached_constraint_plans_weight_zero():
    sampler, rng = SAMPLERS.get("nsas")(constraint_grad=False), random.Random(0)
    for step in range(5):
        plan = sampler.plan(step, rng)
        assert plan[0][1] == 0.5 and len(plan) == step + 2 and all(w == 0.0 for _, w in plan[1:])


def test_nsas_offered_rule_is_the_earlier_one():
    sampler, rng = SAMPLERS.get("nsas")(archive_size=4, archive_rule="offered"), random.Random(0)
    (first, w), = sampler.plan(0, rng)
    assert w == 1.0  # nothing trained yet
    sampler.observe(0, [first], [0.0])
    for step in range(1, 30):
        plan = sampler.plan(step, rng)
        members = sampler.archive(plan[0][0]).members
        assert plan[0][1] == 0.5 and [a for a, _ in plan[1:]] == members
        sampler.observe(step, [a for a, _ in plan], [0.0] * len(plan))
        assert plan[0][0] in members or len(members) == 4  # offered after the step
    assert len(sampler.archive(first).members) == 4


@pytest.mark.parametrize("chain, cut", [(2, {3}), (1, {1, 3, 4})])
def test_nsas_c_samples_only_chain_cells(chain, cut):
    """Official NSAS-C: node i takes only its most recent predecessors; in NB201's edge order
    (1<-0, 2<-0, 2<-1, 3<-0, 3<-1, 3<-2) chain 2 cuts 3<-0, chain 1 also 2<-0 and 3<-1."""
    assert set(range(NUM_EDGES)) - set(chain_edges(chain)) == cut
    sampler, rng = SAMPLERS.get("nsas-c")(chain=chain), random.Random(1)
    seen = [set() for _ in range(NUM_EDGES)]
    for step in range(200):
        plan = sampler.plan(step, rng)
        assert len(plan) == 1 + min(step + 1, 8)
        for arch, _ in plan:  # the current architecture and every archive member
            for e in range(NUM_EDGES):
                seen[e].add(arch[e])
        sampler.observe(step, [a for a, _ in plan], [0.0] * len(plan))
    assert all(seen[e] == ({0} if e in cut else set(range(NUM_OPS))) for e in range(NUM_EDGES))
    with pytest.raises(ValueError, match="chain"):
        SAMPLERS.get("nsas-c")(chain=3)


def test_nsas_archive_per_depth_constrains_with_architectures_of_the_same_depth():
    sampler = SAMPLERS.get("nsas")(archive_size=3, archive_rule="offered", archive_per_depth=True)
    rng = random.Random(1)
    for step in range(200):
        plan = sampler.plan(step, rng)
        current = plan[0][0]
        assert all(depth(a) == depth(current) for a, _ in plan[1:])
        sampler.observe(step, [a for a, _ in plan], [0.0] * len(plan))
    assert set(sampler.archives_) == {0, 1, 2, 3}
    assert all(len(a) == 3 for a in sampler.archives_.values())
    with pytest.raises(ValueError, match="archive_per_depth"):
        SAMPLERS.get("nsas")(archive_per_depth=True)


@pytest.mark.parametrize("rule", ["compensate", "avoid-random", "avoid-both"])
def test_nsas_g_diverse_rules(rule):
    """Oracles, by hand from the notebooks: compensate (arch_compensate(random, current)) differs from random
    exactly where random and current agree and is current elsewhere; avoid-random (arch_diver(random)) differs
    from random everywhere; avoid-both (ours) from both."""
    sampler, rng = SAMPLERS.get("nsas-g")(diverse=rule), random.Random(0)
    seen = Counter()
    for step in range(300):
        (cur, wc), (rnd, wr), (div, wd) = sampler.plan(step, rng)
        assert (wc, wr, wd) == (0.2, 0.4, 0.4)
        for e in range(NUM_EDGES):
            if rule == "compensate":
                assert div[e] != rnd[e] if cur[e] == rnd[e] else div[e] == cur[e]
            elif rule == "avoid-random":
                assert div[e] != rnd[e]
            else:
                assert div[e] not in (cur[e], rnd[e])
            seen[div[e]] += 1
    assert set(seen) == set(range(NUM_OPS))


def test_cell_bug_builds_the_cell_the_official_code_builds():
    """Oracle: the official loops append node i's input list inside the loop over its inputs j, and the search
    cell reads node i's inputs from entry i-1 of that list. Rebuild that list here and read it back."""
    ops = Arch([1, 2, 3, 4, 2, 3])  # the intended ops of 1<-0, 2<-0, 2<-1, 3<-0, 3<-1, 3<-2
    entries, e = [], 0
    for i in (1, 2, 3):
        inputs = []
        for j in range(i):
            inputs.append((ops[e], j))
            e += 1
            entries.append(tuple(inputs))  # the misplaced append
    built = [0] * NUM_EDGES  # none unless some entry feeds the edge
    for i in (1, 2, 3):
        for op, j in entries[i - 1]:
            built[EDGES.index((j, i))] = op
    assert as_built(ops) == Arch(built) == Arch([1, 2, 0, 2, 3, 0])
    sampler, rng = SAMPLERS.get("nsas-g")(diverse="avoid-random", cell_bug=True), random.Random(0)
    for step in range(50):
        _, _, (div, _) = sampler.plan(step, rng)
        assert div[2] == div[5] == 0 and div[3] == div[1]
    with pytest.raises(ValueError, match="cell_bug"):
        SAMPLERS.get("nsas-g")(diverse="random", cell_bug=True)


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


# ---- per-cell sampling (ABS's NB201 supernet) ---------------------------------------------------------------

def official_forward_dropnode_draws(operations: dict, rng: random.Random) -> dict:
    """AngleNAS search_cells.py:98-116 (forward_dropnode), its sampling written out by hand for one cell: for
    node i = 1..3, random.choice over operations[(i, j)] for j < i, repeated while every chosen op is 'none'."""
    chosen = {}
    for i in range(1, 4):
        while True:
            ops = [rng.choice(operations[(i, j)]) for j in range(i)]
            if any(op != "none" for op in ops):
                break
        chosen.update({(i, j): op for j, op in enumerate(ops)})
    return chosen


def test_per_cell_draws_are_abs_forward_dropnode_cell_by_cell():
    alive = [[0, 1, 3], [0, 2], [0, 4], [0, 1, 2, 3, 4], [0, 3], [0, 1]]
    operations = {EDGES[e][::-1]: [OPS[o] for o in ops] for e, ops in enumerate(alive)}  # (dst, src) keys
    sampler = SAMPLERS.get("per-cell")(cells=6, allowed=alive)
    for seed in range(300):
        (path, w), = sampler.plan(seed, random.Random(seed))
        oracle_rng = random.Random(seed)
        expected = []
        for _ in range(6):  # each cell's forward draws in turn (search_model_spos.py:137-148)
            drawn = official_forward_dropnode_draws(operations, oracle_rng)
            expected.append(Arch(OPS.index(drawn[(dst, src)]) for src, dst in EDGES))
        assert w == 1.0 and isinstance(path, CellPath) and list(path) == expected


def test_per_cell_never_gives_a_node_only_none_inputs_and_cells_differ():
    sampler, rng = SAMPLERS.get("per-cell")(cells=15), random.Random(0)
    paths = [sampler.plan(step, rng)[0][0] for step in range(300)]
    cells = [a for p in paths for a in p]
    assert all(a[0] != 0 for a in cells)  # node 1's only input, edge 0->1, is never none
    assert all(a[1] != 0 or a[2] != 0 for a in cells) and all(a[3] or a[4] or a[5] for a in cells)
    assert sum(len(set(p)) > 1 for p in paths) == len(paths)  # 15 independent cells: never all the same
    # without rejection every edge is uniform over its ops, none included
    plain = SAMPLERS.get("per-cell")(reject_empty_nodes=False, cells=15)
    edge0 = Counter(p[k][0] for p in (plain.plan(s, rng)[0][0] for s in range(400)) for k in range(15))
    assert set(edge0) == set(range(NUM_OPS)) and min(edge0.values()) > 0.15 * 6000


def test_per_cell_keeps_an_all_none_node_when_nothing_else_is_alive():
    alive = [[0], [0, 3], [0, 1], [0, 2], [0, 1], [0, 4]]  # node 1 can only be none: no endless redraw
    (path, _), = SAMPLERS.get("per-cell")(cells=3, allowed=alive).plan(0, random.Random(0))
    assert all(a[0] == 0 for a in path)


def test_per_cell_after_a_split_draws_each_cell_from_one_sub_supernets_pool():
    """The official few-shot supernet (few-shot-nas-lib/models/cell_searchs/rank_model.py:97-111): every search
    cell takes random.choice from the pool of the 3,125 architectures with the sub-supernet's op on edge 1<-0, i.e.
    edge 0 is shared by all cells and every other edge is uniform and independent from cell to cell. Frequencies
    over 2,000 steps x 3 cells stay within 5 binomial sd of those probabilities."""
    sampler, rng, n = SAMPLERS.get("per-cell")(reject_empty_nodes=False, cells=3), random.Random(1), 2000
    sampler.split([0])
    paths = [sampler.plan(s, rng)[0][0] for s in range(n)]
    assert all(len({cell[0] for cell in p}) == 1 for p in paths)  # one owner per path
    bound = 5 * (n * 0.2 * 0.8) ** 0.5
    shared = Counter(p[0][0] for p in paths)
    assert all(abs(shared[o] - n / 5) < bound for o in range(NUM_OPS))  # a uniform sub-supernet per step
    for e in range(1, 6):
        for k in range(3):
            counts = Counter(p[k][e] for p in paths)
            assert all(abs(counts[o] - n / 5) < bound for o in range(NUM_OPS)), (e, k)
        agree = sum(p[0][e] == p[1][e] for p in paths)  # independent cells agree with probability 1/5
        assert abs(agree - n / 5) < bound, e


def test_per_cell_split_with_rejection_redraws_only_the_free_edges():
    sampler, rng = SAMPLERS.get("per-cell")(cells=4), random.Random(2)
    sampler.split([0])
    paths = [sampler.plan(s, rng)[0][0] for s in range(500)]
    # edge 0->1 is node 1's only input: a shared none there is kept (nothing free to redraw) ...
    assert any(p[0][0] == 0 for p in paths) and all(len({c[0] for c in p}) == 1 for p in paths)
    # ... and nodes 2 and 3 still never have only none inputs
    assert all((c[1] or c[2]) and (c[3] or c[4] or c[5]) for p in paths for c in p)
