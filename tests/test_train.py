import random

import pytest
import torch

from harness.config import TrainSection
from harness.estimate import estimate_archs, evaluate_arch, recalibrate_bn
from harness.samplers import SAMPLERS
from harness.space import Arch
from harness.supernet import Supernet
from harness.train import TrainingDiverged, TrainState, make_optimizer, total_steps, train


def toy_batches(n_batches=4, bs=16, seed=0, nan=False):
    g = torch.Generator().manual_seed(seed)
    y = torch.randint(0, 3, (n_batches, bs), generator=g)
    x = torch.randn(n_batches, bs, 3, 8, 8, generator=g) * 0.3 + y[..., None, None, None].float()
    if nan:
        x[:] = float("nan")
    return [(x[i], y[i]) for i in range(n_batches)]


def cycle(batches):
    while True:
        yield from batches


def run_train(steps=40, nan=False, lr=0.05, seed=0):
    torch.manual_seed(seed)
    model = Supernet(C=4, N=1, num_classes=3)
    cfg = TrainSection(max_steps=steps, lr=lr, log_every=10, checkpoint_every=0)
    opt, sched = make_optimizer(model, cfg, steps)
    state = train(model, SAMPLERS.get("uniform")(), cycle(toy_batches(nan=nan)), cfg, steps, random.Random(seed),
                  opt, sched, TrainState(), progress=False)
    return model, state


def test_training_reduces_the_loss_and_follows_the_cosine_schedule():
    _, state = run_train()
    assert [r["step"] for r in state.log] == [10, 20, 30, 40]
    assert state.log[-1]["loss"] < 0.7 * state.log[0]["loss"]
    assert state.log[-1]["lr"] == pytest.approx(0.001)
    assert state.log[0]["lr"] < 0.05


def test_training_is_repeatable_on_cpu():
    a, _ = run_train(steps=10)
    b, _ = run_train(steps=10)
    for pa, pb in zip(a.state_dict().values(), b.state_dict().values()):
        assert torch.equal(pa, pb)


def test_nan_loss_stops_with_a_clear_error():
    with pytest.raises(TrainingDiverged, match="loss became nan.*checkpoint"):
        run_train(steps=20, nan=True)


def test_a_diverged_model_is_never_checkpointed():
    torch.manual_seed(0)
    model = Supernet(C=4, N=1, num_classes=3)
    cfg = TrainSection(max_steps=20, log_every=10, checkpoint_every=3)  # checkpoint between log steps
    opt, sched = make_optimizer(model, cfg, 20)
    saved = []
    with pytest.raises(TrainingDiverged):
        train(model, SAMPLERS.get("uniform")(), cycle(toy_batches(nan=True)), cfg, 20, random.Random(0), opt, sched,
              TrainState(), checkpoint=lambda st: saved.append(st.step), progress=False)
    assert saved == []


def test_total_steps_from_epochs_or_budget():
    assert total_steps(TrainSection(epochs=2.5, max_steps=0), 10) == 25
    assert total_steps(TrainSection(epochs=2.5, max_steps=7), 10) == 7
    # a compute budget in paths: FairNAS (5 paths a step) gets a fifth of uniform's steps
    assert total_steps(TrainSection(max_paths=1000), 10, paths_per_step=1) == 1000
    assert total_steps(TrainSection(max_paths=1000), 10, paths_per_step=5) == 200
    assert total_steps(TrainSection(max_paths=3), 10, paths_per_step=11) == 1


def test_loop_counts_paths_and_calls_the_monitor_with_each_steps_archs():
    class Recorder:
        def __init__(self):
            self.calls = []

        def after_step(self, step, archs):
            self.calls.append((step, list(archs)))
            return step % 5 == 0

    torch.manual_seed(0)
    model = Supernet(C=4, N=1, num_classes=3)
    cfg = TrainSection(max_steps=12, lr=0.05, log_every=4, checkpoint_every=0)
    opt, sched = make_optimizer(model, cfg, 12)
    rec = Recorder()
    state = train(model, SAMPLERS.get("fairnas")(), cycle(toy_batches()), cfg, 12, random.Random(0), opt, sched,
                  TrainState(), progress=False, monitor=rec)
    assert state.paths == 60 and [r["paths"] for r in state.log] == [20, 40, 60]
    assert [s for s, _ in rec.calls] == list(range(1, 13))
    assert all(len(a) == 5 for _, a in rec.calls)
    assert model.training  # restored after a monitor that used the model


def test_evaluate_counts_correct_predictions():
    torch.manual_seed(0)
    model = Supernet(C=4, N=1, num_classes=3)
    arch = Arch((3, 1, 2, 4, 0, 1))
    batches = toy_batches(3)
    out = evaluate_arch(model, arch, batches)
    model.eval()
    with torch.no_grad():
        correct = sum((model(x, arch).argmax(1) == y).sum().item() for x, y in batches)
    assert out[0].item() == correct and out[2].item() == 48
    rows = estimate_archs(model, [arch, Arch((0,) * 6)], batches, progress=False, flush_every=1)
    assert rows[0]["estimate"] == pytest.approx(100 * correct / 48)
    assert [r["arch"] for r in rows] == [arch.to_str(), Arch((0,) * 6).to_str()]


def test_recalibration_sets_running_stats_to_the_path_statistics():
    torch.manual_seed(0)
    model = Supernet(C=4, N=1, num_classes=3, bn_policy="recalibrate")
    arch = Arch((3, 0, 0, 0, 0, 1))
    batches = toy_batches(2)
    recalibrate_bn(model, arch, batches)
    assert not model.training
    stem_bn = model.stem[1]
    with torch.no_grad():
        feats = [model.stem[0](x) for x, _ in batches]
    expected = torch.stack([f.mean((0, 2, 3)) for f in feats]).mean(0)  # cumulative average of batch means
    assert torch.allclose(stem_bn.running_mean, expected, atol=1e-5)
    assert stem_bn.momentum == 0.1  # restored
    with pytest.raises(ValueError, match="calibration batches"):
        estimate_archs(model, [arch], batches, calib_batches=(), progress=False)


def test_track_policy_normalises_with_the_statistics_tracked_in_training():
    """BN=1 (xautodl --track_running_stats 1): cell BNs track running statistics while training and estimation
    uses them as they are. Oracle by hand: after one training forward, a cell BN's running mean is
    0.9 * 0 + 0.1 * (the batch mean of its input); estimation leaves every buffer as it was, and it equals an
    eval-mode forward, while a ``batch`` supernet with the same weights normalises each batch with its own
    statistics (and gives another result)."""
    torch.manual_seed(0)
    model = Supernet(C=4, N=1, num_classes=3, bn_policy="track")
    arch = Arch((3, 0, 0, 0, 1, 0))  # nor_conv_3x3 on 0->1, skip 1->3: the BN output reaches the logits
    bn = model.cells[0].edges[0][3][2]
    assert isinstance(bn, torch.nn.BatchNorm2d) and bn.track_running_stats
    batches = toy_batches(2)
    model.train()
    seen = {}
    hook = model.cells[0].edges[0][3][1].register_forward_hook(lambda m, i, o: seen.setdefault("x", o.detach()))
    model(batches[0][0], arch)
    hook.remove()
    assert torch.allclose(bn.running_mean, 0.1 * seen["x"].mean((0, 2, 3)), atol=1e-6)
    buffers = {k: v.clone() for k, v in model.state_dict().items()}
    rows = estimate_archs(model, [arch], batches, progress=False)
    assert all(torch.equal(buffers[k], v) for k, v in model.state_dict().items())  # nothing recalibrated
    model.eval()
    with torch.no_grad():
        correct = sum((model(x, arch).argmax(1) == y).sum().item() for x, y in batches)
    assert rows[0]["estimate"] == pytest.approx(100 * correct / 32)
    batch_model = Supernet(C=4, N=1, num_classes=3, bn_policy="batch")
    batch_model.load_state_dict({k: v for k, v in model.state_dict().items() if k in batch_model.state_dict()})
    other = estimate_archs(batch_model, [arch], batches, progress=False)
    assert other[0]["loss"] != pytest.approx(rows[0]["loss"])


class _Fixed:
    """A sampler that plans the given architectures, one per step."""

    differentiable = False

    def __init__(self, archs):
        self.archs = archs

    def plan(self, step, rng):
        return [(self.archs[step], 1.0)]

    def observe(self, step, archs, losses):
        pass


@pytest.mark.parametrize("mode", ["skip", "zero"])
def test_unsampled_ops_skip_or_get_momentum_and_weight_decay(mode):
    """Oracle by hand (torch.optim.SGD's documented update, Nesterov): an op trained at step 0 and off the path
    at step 1 keeps its weights under "skip"; under "zero" (PyTorch 1.x's zero_grad, NB201's era) its gradient
    is 0, so d = wd * w, buf = momentum * buf + d, w -= lr * (d + momentum * buf)."""
    from harness.train import train_step

    torch.manual_seed(0)
    model = Supernet(C=4, N=1, num_classes=3)
    cfg = TrainSection(lr=0.1, lr_min=0.1, momentum=0.9, weight_decay=5e-4, unsampled_ops=mode)
    opt, _ = make_optimizer(model, cfg, steps=2)
    conv = model.cells[0].edges[0][3][1].weight  # nor_conv_3x3 on 0->1 of the first cell
    sampler = _Fixed([Arch((3, 0, 0, 0, 1, 0)), Arch((2, 0, 0, 0, 1, 0))])  # step 1 trains nor_conv_1x1 instead
    (x, y), rng = toy_batches(1)[0], random.Random(0)
    train_step(model, sampler, x, y, 0, rng, opt, grad_clip=0)
    w0, buf0 = conv.detach().clone(), opt.state[conv]["momentum_buffer"].clone()
    train_step(model, sampler, x, y, 1, rng, opt, grad_clip=0)
    if mode == "skip":
        assert conv.grad is None and torch.equal(conv, w0)
    else:
        d = 5e-4 * w0
        buf = 0.9 * buf0 + d
        assert torch.equal(conv.grad, torch.zeros_like(conv))
        assert torch.allclose(conv.detach(), w0 - 0.1 * (d + 0.9 * buf), rtol=0, atol=1e-7)  # float32 rounding
        assert not torch.equal(conv, w0)


def test_a_path_of_weight_zero_is_evaluated_without_gradient():
    """NSAS's detached constraint (constraint_grad = false): the gradient is that of the weighted current path
    alone, and an op only the weight-0 path uses gets no gradient at all."""
    import copy

    from harness.train import train_step

    torch.manual_seed(0)
    model = Supernet(C=4, N=1, num_classes=3)
    reference = copy.deepcopy(model)
    cfg = TrainSection(lr=0.1, lr_min=0.1)
    current, member = Arch((3, 0, 0, 0, 1, 0)), Arch((2, 0, 0, 0, 1, 0))  # member alone uses nor_conv_1x1 on 0->1

    class Plan(_Fixed):
        def plan(self, step, rng):
            return self.archs

    (x, y), rng = toy_batches(1)[0], random.Random(0)
    opt, _ = make_optimizer(model, cfg, steps=1)
    loss, archs = train_step(model, Plan([(current, 0.5), (member, 0.0)]), x, y, 0, rng, opt, grad_clip=0)
    ref_opt, _ = make_optimizer(reference, cfg, steps=1)
    train_step(reference, Plan([(current, 0.5)]), x, y, 0, rng, ref_opt, grad_clip=0)
    assert archs == [current, member]
    assert model.cells[0].edges[0][2][1].weight.grad is None
    for (name, p), q in zip(model.named_parameters(), reference.parameters()):
        assert (p.grad is None) == (q.grad is None), name
        if p.grad is not None:
            assert torch.equal(p.grad, q.grad), name
