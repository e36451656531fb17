"""The architecture-batched engine (harness/batched.py) against the eager single path it replaces.

Every test runs on CPU, and again on CUDA when a GPU is present (``DEVICES``). The expected values are the eager
reference's, computed in the same test from ``Supernet.forward`` one path at a time; tolerances are 1e-5 relative
in float32. Where a float32 comparison is ill-conditioned (tiny BN batches), the same check runs in float64.
"""
from __future__ import annotations

import copy
import platform
import random
import sys
import threading

import pytest
import torch
import torch.nn.functional as F

from harness import batched
from harness.estimate import (estimate_archs, evaluate_arch, evaluate_paths, merge_batches, recalibrate_bn,
                              stack_calibration)
from harness.fewshot import FewShotSupernet
from harness.samplers import SAMPLERS
from harness.space import Arch, CellPath, random_arch
from harness.supernet import BN_POLICIES, Supernet
from harness.train import batched_plan_losses, _eager_plan_losses

DEVICES = ["cpu"] + (["cuda"] if torch.cuda.is_available() else [])
# the awkward cases: a cell that disconnects its input, ops on zero nodes, dead ends, all-none, skip-only
SPECIAL = ["|none~0|+|none~0|none~1|+|none~0|none~1|none~2|",
           "|none~0|+|none~0|avg_pool_3x3~1|+|none~0|nor_conv_3x3~1|skip_connect~2|",
           "|nor_conv_3x3~0|+|nor_conv_1x1~0|none~1|+|skip_connect~0|none~1|none~2|",
           "|skip_connect~0|+|skip_connect~0|skip_connect~1|+|skip_connect~0|skip_connect~1|skip_connect~2|",
           "|avg_pool_3x3~0|+|nor_conv_1x1~0|nor_conv_3x3~1|+|none~0|avg_pool_3x3~1|nor_conv_3x3~2|"]


def archs(n: int, seed: int = 0) -> list[Arch]:
    rng = random.Random(seed)
    return [Arch.from_str(s) for s in SPECIAL] + [random_arch(rng) for _ in range(n - len(SPECIAL))]


def model(policy: str, device: str, affine: bool = False, dtype=torch.float32, N: int = 1) -> Supernet:
    torch.manual_seed(0)
    m = Supernet(8, N, 10, bn_policy=policy, bn_affine=affine)
    for bn in m.modules():  # running statistics that matter (fresh ones are 0 and 1)
        if isinstance(bn, torch.nn.BatchNorm2d) and bn.running_mean is not None:
            bn.running_mean.uniform_(-0.2, 0.2)
            bn.running_var.uniform_(0.5, 1.5)
    return m.to(device=device, dtype=dtype)


def close(got: torch.Tensor, want: torch.Tensor, rtol: float = 1e-5, scale: float | None = None) -> None:
    """Within ``rtol`` of ``scale``, by default the reference's largest magnitude (elementwise relative error is
    meaningless near 0)."""
    scale = want.abs().max().clamp_min(1e-12) if scale is None else scale
    err = ((got - want).abs().max() / scale).item()
    assert err <= rtol, f"max error {err:.2e} of the reference's scale (allowed {rtol:.0e})"


@pytest.mark.parametrize("device", DEVICES)
@pytest.mark.parametrize("policy,affine", [("batch", False), ("batch", True), ("track", False)])
def test_eval_logits_equal_one_path_at_a_time(device, policy, affine):
    m = model(policy, device, affine).eval()
    paths = archs(12)
    x = torch.randn(64, 3, 16, 16, device=device)
    with torch.no_grad():
        want = torch.stack([m(x, a) for a in paths], 1)
        for k in (1, 3, 12):  # one, a few, all at once
            got = torch.cat([batched.forward_paths(m, x, paths[i:i + k], batched.Norm("eval", len(paths[i:i + k])))
                             for i in range(0, len(paths), k)], 1)
            close(got, want)


@pytest.mark.parametrize("device", DEVICES)
def test_recalibrated_logits_equal_one_path_at_a_time(device):
    m = model("recalibrate", device)
    paths = archs(8)
    calib = [(torch.randn(64, 3, 16, 16, device=device), None) for _ in range(3)]
    x = torch.randn(64, 3, 16, 16, device=device)
    want = []
    for a in paths:
        ref = copy.deepcopy(m)
        recalibrate_bn(ref, a, calib)
        with torch.no_grad():
            want.append(ref(x, a))
    norm = batched.Norm("calibrate", len(paths))
    with torch.no_grad():
        for c, _ in calib:
            batched.forward_paths(m, c, paths, norm)
        got = batched.forward_paths(m, x, paths, batched.Norm("table", len(paths), norm.table))
    close(got, torch.stack(want, 1))


def prefix_sharing_archs() -> list[Arch]:
    """Architectures that agree on the first cell's first edges (so batched estimation shares those nodes), with a
    duplicate, a pair that differs only on a dead edge, and a disconnected one."""
    rng = random.Random(3)
    out = [Arch((3, 2, 1) + tuple(rng.randrange(5) for _ in range(3))) for _ in range(5)]
    out += [Arch((3, 3, 4) + tuple(rng.randrange(5) for _ in range(3))) for _ in range(3)]
    out += [out[0], Arch.from_str(SPECIAL[2]), Arch((3, 1, 0, 0, 0, 0)), Arch((3, 2, 0, 0, 0, 0)), Arch((0,) * 6)]
    return out


def conv_rows(monkeypatch) -> list[int]:
    """Counts the image rows every batched convolution runs on."""
    rows, real = [], batched._conv
    monkeypatch.setattr(batched, "_conv", lambda conv, x, *args: rows.append(x.shape[0]) or real(conv, x, *args))
    return rows


@pytest.mark.parametrize("device", DEVICES)
@pytest.mark.parametrize("policy,affine", [("batch", False), ("batch", True), ("track", False), ("recalibrate", False)])
@pytest.mark.parametrize("split", [False, True])
@pytest.mark.slow  # whole runs or many parametrised cases; the fast tier stays within 5 minutes
def test_shared_prefixes_run_once_and_equal_one_path_at_a_time(device, policy, affine, split, monkeypatch):
    """Paths that agree on the first cell's first edges share those nodes' values (an op runs once per distinct
    input), per-cell paths included, for every BN mode; the logits equal the single paths', and fewer image rows
    go through convolutions than running the paths one by one."""
    m = model(policy, device, affine, N=2)
    plain = prefix_sharing_archs()
    paths = plain + [CellPath(tuple(plain[i] if j == 0 else plain[-1 - i] for j in range(6))) for i in range(3)]
    calib = [(torch.randn(48, 3, 16, 16, device=device), None) for _ in range(2)]
    x = torch.randn(48, 3, 16, 16, device=device)
    want = []
    for a in paths:
        ref = copy.deepcopy(m)
        if policy == "recalibrate":
            recalibrate_bn(ref, a, calib)
        with torch.no_grad():
            want.append(ref.eval()(x, a))
    m.eval()

    def run(group):
        with torch.no_grad():
            if policy != "recalibrate":
                return batched.forward_paths(m, x, group, batched.Norm("eval", len(group)), split=split)
            norm = batched.Norm("calibrate", len(group))
            for c, _ in calib:
                batched.forward_paths(m, c, group, norm, split=split)
            return batched.forward_paths(m, x, group, batched.Norm("table", len(group), norm.table), split=split)

    rows = conv_rows(monkeypatch)
    got = run(paths)
    together = sum(rows)
    rows.clear()
    for a in paths:
        run([a])
    assert together < 0.9 * sum(rows)  # only the first of the six cells has shared inputs (81% here)
    close(got, torch.stack(want, 1))


@pytest.mark.parametrize("device", DEVICES)
@pytest.mark.parametrize("policy", BN_POLICIES)
def test_estimation_engines_agree(device, policy):
    """estimate_archs: batched (several architecture-batch sizes) against eager, for every BN policy."""
    m = model(policy, device, N=2)
    paths = archs(10, seed=1)
    gen = torch.Generator().manual_seed(0)
    batches = [(torch.randn(64, 3, 16, 16, generator=gen).to(device), torch.randint(0, 10, (64,), generator=gen).to(device))
               for _ in range(2)]
    calib = batches if policy == "recalibrate" else []
    want = estimate_archs(copy.deepcopy(m), paths, batches, calib, progress=False, engine="eager")
    for k in (1, 4):
        got = estimate_archs(m, paths, batches, calib, progress=False, engine="batched", arch_batch=k)
        assert [r["arch"] for r in got] == [r["arch"] for r in want]
        for g, w in zip(got, want):
            assert g["loss"] == pytest.approx(w["loss"], rel=1e-5)
            # an argmax can only flip on a near-tie; allow one image in 128
            assert abs(g["estimate"] - w["estimate"]) <= 100 / 128 + 1e-9


@pytest.fixture
def two_threads():
    """torch at two intra-op threads (what a 2-core machine runs outside pytest-xdist), restored afterwards."""
    before = torch.get_num_threads()
    torch.set_num_threads(2)
    yield
    torch.set_num_threads(before)


@pytest.mark.parametrize("policy", BN_POLICIES)
def test_chunks_side_by_side_equal_eager_and_use_a_thread_each(policy, two_threads, monkeypatch):
    """On CPU with two torch threads, estimate_archs scores two chunks at once (harness.estimate.side_by_side),
    each in a pool thread of one intra-op thread (a barrier fails the test unless both are in flight together);
    the rows still equal the eager path's, in the given order, and the caller's thread count is left as it was,
    for the caller and for threads started later."""
    import harness.estimate as est
    m = model(policy, "cpu", N=2)
    paths = archs(10, seed=3)  # chunks of 2: waves of 2, 2 and a lone last chunk
    gen = torch.Generator().manual_seed(1)
    batches = [(torch.randn(64, 3, 16, 16, generator=gen), torch.randint(0, 10, (64,), generator=gen))
               for _ in range(2)]
    calib = batches if policy == "recalibrate" else []
    want = estimate_archs(copy.deepcopy(m), paths, batches, calib, progress=False, engine="eager")
    seen, real = [], est.evaluate_paths
    together = threading.Barrier(2, timeout=60)  # a wave's two chunks must be in flight at the same time

    def spy(net, chunk, *args):
        home = threading.current_thread() is threading.main_thread()
        seen.append((home, torch.get_num_threads(), len(chunk)))
        if not home:
            together.wait()
        return real(net, chunk, *args)

    monkeypatch.setattr(est, "evaluate_paths", spy)
    got = estimate_archs(m, paths, batches, calib, progress=False, engine="batched", arch_batch=2)
    assert torch.get_num_threads() == 2
    later = []  # and a thread started afterwards gets the caller's count again, not a pool thread's share
    fresh = threading.Thread(target=lambda: later.append(torch.get_num_threads()))
    fresh.start(), fresh.join()
    assert later == [2]
    assert [r["arch"] for r in got] == [r["arch"] for r in want]
    for g, w in zip(got, want):
        assert g["loss"] == pytest.approx(w["loss"], rel=1e-5)
        assert abs(g["estimate"] - w["estimate"]) <= 100 / 128 + 1e-9
    assert sorted(seen) == [(False, 1, 2)] * 4 + [(True, 2, 2)]  # 4 chunks in pool threads, the lone one at home


def test_a_resumed_estimation_forms_the_same_waves(two_threads):
    """Rows are flushed at whole waves of side-by-side chunks only, so an estimation interrupted after a flush and
    resumed on the rest (in the same order) scores each architecture with the same chunk and thread share: the
    numbers are the same to the last bit as an uninterrupted call's."""
    m = model("recalibrate", "cpu", N=2)
    paths = archs(14, seed=4)
    gen = torch.Generator().manual_seed(2)
    batches = [(torch.randn(48, 3, 16, 16, generator=gen), torch.randint(0, 10, (48,), generator=gen))]
    flushed = []
    whole = estimate_archs(m, paths, batches, batches, progress=False, arch_batch=3, flush_every=2,
                           on_flush=flushed.append)
    assert [len(c) for c in flushed] == [6, 6, 2]  # waves of two chunks of 3, then a lone chunk of 2
    done = {r["arch"] for r in flushed[0]}
    rest = [a for a in paths if a.to_str() not in done]
    resumed = estimate_archs(m, rest, batches, batches, progress=False, arch_batch=3, flush_every=2)
    by_arch = {r["arch"]: r for r in whole}

    def same(rows):
        return [(r["estimate"], r["loss"]) for r in rows] == \
            [(by_arch[r["arch"]]["estimate"], by_arch[r["arch"]]["loss"]) for r in rows]

    assert same(resumed)
    # the control: a resume from the first chunk alone (flushed mid-wave) regroups the rest into other chunks
    first = sorted(paths, key=tuple)[:3]
    regrouped = estimate_archs(m, [a for a in paths if a not in first], batches, batches, progress=False,
                               arch_batch=3, flush_every=2)
    if same(regrouped):
        pytest.skip("other chunks give the same bits on this machine: the equality above shows nothing here")


def test_evaluate_paths_counts_equal_evaluate_arch():
    m = model("batch", "cpu").eval()
    paths = archs(6)
    batches = [(torch.randn(32, 3, 16, 16), torch.randint(0, 10, (32,))) for _ in range(2)]
    got = evaluate_paths(m, paths, batches)
    want = torch.stack([evaluate_arch(m, a, batches) for a in paths])
    assert torch.equal(got[:, 2], want[:, 2]) and torch.equal(got[:, 0], want[:, 0])
    close(got[:, 1], want[:, 1])


def test_estimation_routes_few_shot_sub_supernets():
    parent = model("batch", "cpu")
    few = FewShotSupernet(parent, [0])
    few.split(0)
    for i, net in enumerate(few.nets):  # make the sub-supernets differ
        with torch.no_grad():
            for p in net.parameters():
                p.mul_(1 + 0.1 * i)
    paths = archs(10, seed=2)
    batches = [(torch.randn(32, 3, 16, 16), torch.randint(0, 10, (32,)))]
    want = estimate_archs(few, paths, batches, progress=False, engine="eager")
    got = estimate_archs(few, paths, batches, progress=False, engine="batched", arch_batch=10)
    for g, w in zip(got, want):
        assert g["loss"] == pytest.approx(w["loss"], rel=1e-5)


def _grads(m: torch.nn.Module) -> list:
    return [None if p.grad is None else p.grad.detach().clone() for p in m.parameters()]


def _compare_models(a: torch.nn.Module, b: torch.nn.Module, rtol: float) -> None:
    """Gradients within ``rtol`` of the largest gradient entry of the model (some gradients are exactly zero in
    exact arithmetic, e.g. a BN bias followed by shift-invariant layers, and float32 noise is all they hold),
    parameters and buffers within ``rtol`` of their own scale."""
    grad_scale = max(p.grad.abs().max().item() for p in a.parameters() if p.grad is not None)
    for (name, p), q in zip(a.named_parameters(), b.parameters()):
        assert (p.grad is None) == (q.grad is None), f"{name}: gradient None in one engine only"
        if p.grad is not None:
            close(q.grad, p.grad, rtol, grad_scale)
        close(q.detach(), p.detach(), rtol)
    for (name, t), u in zip(a.named_buffers(), b.buffers()):
        if t.dtype.is_floating_point:
            close(u, t, rtol)
        else:
            assert torch.equal(t, u), name


def _plan_and_batch(device, dtype):
    paths = archs(9, seed=3)
    plan = [(a, w) for a, w in zip(paths, [1.0, 1.0, 0.5, 1.0, 0.0, 2.0, 1.0, 0.0, 1.0])]
    gen = torch.Generator().manual_seed(1)
    x = torch.randn(64, 3, 16, 16, generator=gen).to(device=device, dtype=dtype)
    y = torch.randint(0, 10, (64,), generator=gen).to(device)
    return plan, x, y


@pytest.mark.parametrize("device", DEVICES)
@pytest.mark.parametrize("policy", BN_POLICIES)
def test_multi_path_step_equals_sequential_paths(device, policy, monkeypatch):
    """FairNAS/NSAS-style plans (weights, weight-0 evaluated-only paths) on the same batch: gradients, which
    parameters have one, BN buffers and per-path losses, in one pass and in passes of one path. In float64, so
    only a different computation could differ (float32's own rounding: the next test)."""
    plan, x, y = _plan_and_batch(device, torch.float64)
    for per_pass in (1, len(plan)):
        a, b = model(policy, device, dtype=torch.float64).train(), model(policy, device, dtype=torch.float64).train()
        monkeypatch.setattr("harness.train.paths_per_pass", lambda device: per_pass)
        want = _eager_plan_losses(a, plan, x, y)
        got = batched_plan_losses(b, plan, x, y)
        close(torch.stack(got), torch.stack(want), 1e-10)
        _compare_models(a, b, 1e-10)


@pytest.mark.parametrize("device", DEVICES)
@pytest.mark.parametrize("policy", BN_POLICIES)
def test_multi_path_step_float32_error_is_the_eager_steps_own(device, policy, monkeypatch):
    """In float32 the batched step's gradients are within 1e-5 of the float64 result (relative to the largest
    gradient entry), or no further from it than twice the eager float32 step's own error: at this tiny size BN over
    4x4 maps is ill-conditioned and the eager step itself is off by up to ~1e-3."""
    plan, x, y = _plan_and_batch(device, torch.float32)
    exact = model(policy, device, dtype=torch.float64).train()
    _eager_plan_losses(exact, plan, x.double(), y)
    ref = [p.grad for p in exact.parameters()]
    scale = max(g.abs().max().item() for g in ref if g is not None)

    def error(m):
        return max(((p.grad.double() - g).abs().max() / scale).item() for p, g in zip(m.parameters(), ref)
                   if g is not None)

    eager = model(policy, device).train()
    _eager_plan_losses(eager, plan, x, y)
    for per_pass in (1, len(plan)):
        b = model(policy, device).train()
        monkeypatch.setattr("harness.train.paths_per_pass", lambda device: per_pass)
        batched_plan_losses(b, plan, x, y)
        assert [p.grad is None for p in b.parameters()] == [g is None for g in ref]
        assert error(b) <= max(1e-5, 2 * error(eager)), (error(b), error(eager))


@pytest.mark.parametrize("name", ["fairnas", "nsas", "uniform", "per-cell"])
def test_training_steps_equal_after_several_optimizer_steps(name):
    """Whole train_step calls (sampler plan, clipping, SGD with momentum and weight decay): parameters and BN
    buffers of the two engines after 4 steps, in float64 so that only a different computation could differ."""
    from harness.config import TrainSection
    from harness.train import make_optimizer, train_step

    cls = SAMPLERS.get(name)
    models = []
    for engine in ("eager", "batched"):
        m = model("track", "cpu", dtype=torch.float64, N=1).train()
        opt, _ = make_optimizer(m, TrainSection(), 100)
        sampler = cls(cells=m.num_search_cells) if getattr(cls, "needs_cells", False) else cls()
        rng, gen = random.Random(0), torch.Generator().manual_seed(0)
        for step in range(4):
            x = torch.randn(32, 3, 16, 16, generator=gen, dtype=torch.float64)
            y = torch.randint(0, 10, (32,), generator=gen)
            train_step(m, sampler, x, y, step, rng, opt, 5.0, engine=engine)
        models.append(m)
    _compare_models(*models, rtol=1e-9)


def test_cell_paths_run_per_cell():
    m = model("batch", "cpu", N=1).eval()
    rng = random.Random(4)
    paths = [CellPath([random_arch(rng) for _ in range(m.num_search_cells)]) for _ in range(4)]
    x = torch.randn(32, 3, 16, 16)
    with torch.no_grad():
        close(batched.forward_paths(m, x, paths, batched.Norm("eval", 4)), torch.stack([m(x, p) for p in paths], 1))


def test_live_parameters_are_exactly_those_with_eager_gradients():
    """One path at a time, the eager step's gradient-or-None per parameter is the oracle."""
    m = model("track", "cpu").train()
    x, y = torch.randn(16, 3, 16, 16), torch.randint(0, 10, (16,))
    for arch in archs(40, seed=5):
        m.zero_grad(set_to_none=True)
        F.cross_entropy(m(x, arch), y).backward()
        want = {id(p) for p in m.parameters() if p.grad is not None}
        assert batched.live_parameters(m, [arch]) == want, arch.to_str()


def test_unit_cell_keeps_few_activations_alive_and_frees_them_all(monkeypatch):
    """On CPU the cell runs lazily: among 40 architectures sorted as estimation sorts them, the values it holds at
    once stay a small fraction of all it computes, and everything it computed is released once its outputs are
    consumed (the logits still equal the single paths')."""
    m = model("track", "cpu").eval()
    paths = sorted(archs(40, seed=6), key=tuple)
    alive, computed, cells = [], [0], []
    real_compute, real_init = batched._UnitCell._compute, batched._UnitCell.__init__

    def compute(self, name):
        computed[0] += 1
        alive.append(sum(1 for key in self.memo if key[1] != 0 or key[0] != "v"))
        return real_compute(self, name)

    def init(self, *args, **kwargs):
        real_init(self, *args, **kwargs)
        cells.append(self)

    monkeypatch.setattr(batched._UnitCell, "_compute", compute)
    monkeypatch.setattr(batched._UnitCell, "__init__", init)
    x = torch.randn(16, 3, 16, 16)
    with torch.no_grad():
        got = batched.forward_paths(m, x, paths, batched.Norm("eval", len(paths)), split=True)
        want = torch.stack([m(x, a) for a in paths], 1)
    close(got, want)
    first = cells[0]
    assert computed[0] > 200 and max(alive) <= computed[0] / 10
    assert all(key[0] == "v" and key[1] == 0 for c in cells for key in c.memo)  # only unused inputs remain
    assert all(n == 0 for c in cells for n in c.uses.values())
    assert len(first.keys[1]) <= 4  # node 1 of the first cell: one value per op on edge 1<-0 (none excluded)


def test_estimation_merges_batches_only_where_bn_is_per_image():
    """On CPU, evaluation batches are concatenated for running statistics (track) and calibrated tables
    (recalibrate): an image's logits do not depend on its batch there. Batch statistics (NB201's BN=0) keep the
    batches as they are. The merged forward stays within glibc's heap allocation limit."""
    x, y = torch.randn(6, 32, 3, 16, 16), torch.randint(0, 10, (6, 32))
    batches = [(x[i], y[i]) for i in range(6)]
    assert len(merge_batches(model("track", "cpu"), batches)) == 1
    assert len(merge_batches(model("recalibrate", "cpu"), batches)) == 1
    assert merge_batches(model("batch", "cpu"), batches) == batches
    per_image = 8 * 16 * 16 * 4
    big = [(torch.zeros(1024, 3, 16, 16), torch.zeros(1024, dtype=torch.long))] * 8
    merged = merge_batches(model("track", "cpu"), big)
    assert max(len(b[0]) for b in merged) * per_image <= batched.HEAP_ALLOCATION_LIMIT // 2
    assert sum(len(b[0]) for b in merged) == 8 * 1024 and len(merged) == 4
    m = model("track", "cpu")
    paths = archs(6)
    got = estimate_archs(m, paths, batches, progress=False)
    want = estimate_archs(m, paths, batches, progress=False, engine="eager")
    for g, w in zip(got, want):
        assert g["loss"] == pytest.approx(w["loss"], rel=1e-5)


def test_keeping_freed_memory_takes_on_glibc_and_is_a_no_op_elsewhere(monkeypatch):
    if sys.platform.startswith("linux") and platform.libc_ver()[0] == "glibc":
        assert batched.keep_freed_memory()  # glibc accepted both settings
    monkeypatch.setattr(batched, "_KEEPS_FREED_MEMORY", False)
    monkeypatch.setattr(batched.sys, "platform", "darwin")
    monkeypatch.setattr(batched.ctypes, "CDLL", lambda *a: pytest.fail("libc touched off Linux"))
    assert batched.keep_freed_memory() is False


def test_stacked_calibration_is_refused_where_bn_keeps_no_statistics():
    """With bn_policy 'batch' every batch is normalised on its own, so calibration batches are never stacked; a
    stacked forward forced through anyway is refused rather than normalised across batches."""
    m = model("batch", "cpu")
    calib = [(torch.randn(16, 3, 16, 16), None) for _ in range(3)]
    assert [g for _, g in stack_calibration(m, calib)] == [1, 1, 1]
    norm = batched.Norm("calibrate", 2)
    norm.groups = 3
    with pytest.raises(ValueError, match="running statistics"), torch.no_grad():
        batched.forward_paths(m, torch.cat([x for x, _ in calib]), archs(2), norm)


def test_stacked_calibration_batches_each_keep_their_own_statistics(monkeypatch):
    """On CPU, calibration batches of one size go through one forward, each still normalised with its own batch
    statistics and counted as one batch in the table: the same scores as one forward per batch (and as eager)."""
    m = model("recalibrate", "cpu")
    gen = torch.Generator().manual_seed(1)
    calib = [(torch.randn(n, 3, 16, 16, generator=gen), None) for n in (32, 32, 32, 16)]
    assert [g for _, g in stack_calibration(m, calib)] == [3, 1]  # a batch of another size goes alone
    batches = [(torch.randn(64, 3, 16, 16, generator=gen), torch.randint(0, 10, (64,), generator=gen))]
    paths = archs(6, seed=3)
    stacked = evaluate_paths(m, paths, batches, calib)
    monkeypatch.setattr("harness.estimate.stack_calibration", lambda model, bs: [(x, 1) for x, _ in bs])
    one_by_one = evaluate_paths(m, paths, batches, calib)
    close(stacked[:, 1], one_by_one[:, 1], rtol=1e-6)
    want = []
    for a in paths:
        ref = copy.deepcopy(m)
        recalibrate_bn(ref, a, calib)
        want.append(evaluate_arch(ref, a, batches))
    close(stacked[:, 1], torch.stack(want)[:, 1])
