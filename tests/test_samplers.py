"""Conformance: every registered sampler is tested the moment it exists."""
import random
from collections import Counter

import pytest

from harness.samplers import SAMPLERS
from harness.space import NUM_EDGES, NUM_OPS, Arch


@pytest.mark.parametrize("name", SAMPLERS.names())
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
