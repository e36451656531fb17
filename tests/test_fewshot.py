"""Few-shot sub-supernets: separate storage, routing by architecture, and training that continues exactly."""
import copy
import random

import pytest
import torch
import torch.nn.functional as F

from harness.config import TrainSection
from harness.fewshot import FewShotSupernet, continue_training
from harness.space import NUM_OPS, Arch, CellPath
from harness.supernet import Supernet
from harness.train import make_optimizer

CFG = TrainSection(max_steps=100)


def _batch(seed: int):
    g = torch.Generator().manual_seed(seed)
    return torch.randn(8, 3, 8, 8, generator=g), torch.randint(0, 10, (8,), generator=g)


def _step(model, opt, sched, arch, seed):
    x, y = _batch(seed)
    opt.zero_grad(set_to_none=True)
    F.cross_entropy(model(x, arch), y).backward()
    opt.step()
    sched.step()


@pytest.fixture
def model():
    torch.manual_seed(0)
    return FewShotSupernet(Supernet(4, 1, 10), edges=[3])


def test_sub_supernets_share_no_parameter_storage(model):
    parent = {n: p.detach().clone() for n, p in model.nets[0].named_parameters()}
    model.split(step=0)
    assert len(model.nets) == NUM_OPS and model.is_split
    storages = [{p.untyped_storage().data_ptr() for p in net.parameters()} for net in model.nets]
    for i in range(len(storages)):
        for j in range(i + 1, len(storages)):
            assert not storages[i] & storages[j], f"sub-supernets {i} and {j} share parameter storage"
    for net in model.nets:  # each starts as a copy of the parent
        for n, p in net.named_parameters():
            assert torch.equal(p, parent[n])


def test_an_architecture_trains_and_is_estimated_by_its_owner_only(model):
    model.split(step=0)
    opt, sched = make_optimizer(model, CFG, 100)
    before = [copy.deepcopy(net.state_dict()) for net in model.nets]
    arch = Arch((3, 3, 1, 2, 3, 4))  # nor_conv_1x1 on the split edge 0->3
    assert model.partition(arch) == model.keys.index((2,))
    _step(model, opt, sched, arch, 0)
    for k, net in enumerate(model.nets):
        changed = any(not torch.equal(v, before[k][n]) for n, v in net.state_dict().items())
        assert changed == (k == model.partition(arch))
    x, _ = _batch(1)
    with torch.no_grad():
        assert torch.equal(model(x, arch), model.owner(arch)(x, arch))


def test_before_the_split_everything_is_one_supernet(model):
    arch = Arch((1, 2, 3, 4, 0, 1))
    assert model.partition(arch) == 0 and model.subnets() == [model.nets[0]] and not model.is_split


def test_training_continues_exactly_across_the_split(model):
    """A sub-supernet after the split steps exactly as the unsplit supernet would have on its architectures:
    the optimizer moves over with the learning rate, schedule position and momentum of the original."""
    opt, sched = make_optimizer(model, CFG, 100)
    rng = random.Random(0)
    for s in range(5):
        _step(model, opt, sched, Arch(rng.randrange(NUM_OPS) for _ in range(6)), s)
    reference = copy.deepcopy(model.nets[0])  # the unsplit supernet, with its optimizer state
    ref_opt, ref_sched = make_optimizer(reference, CFG, 100)
    ref_opt.load_state_dict(opt.state_dict())
    ref_sched.load_state_dict(sched.state_dict())
    parent = dict(model.nets[0].named_parameters())
    model.split(step=5)
    opt, sched = continue_training(model, parent, opt, sched, lambda m: make_optimizer(m, CFG, 100))
    assert opt.param_groups[0]["lr"] == ref_opt.param_groups[0]["lr"]
    arch = Arch((3, 1, 3, 4, 2, 3))
    for s in range(5, 8):
        _step(model, opt, sched, arch, s)
        _step(reference, ref_opt, ref_sched, arch, s)
        assert opt.param_groups[0]["lr"] == pytest.approx(ref_opt.param_groups[0]["lr"])
    owner = model.owner(arch).state_dict()
    for n, v in reference.state_dict().items():
        assert torch.allclose(owner[n], v, atol=1e-6), n


def test_split_edges_are_validated():
    with pytest.raises(ValueError, match="distinct edge indices"):
        FewShotSupernet(Supernet(4, 1, 10), edges=[0, 0])
    with pytest.raises(ValueError, match="distinct edge indices"):
        FewShotSupernet(Supernet(4, 1, 10), edges=[6])


def test_two_split_edges_give_25_sub_supernets(model):
    m = FewShotSupernet(Supernet(4, 1, 10), edges=[0, 5])
    m.split(step=3)
    assert len(m.nets) == 25 and m.describe()["few_shot"]["split_step"] == 3
    assert m.partition(Arch((2, 0, 0, 0, 0, 4))) == m.keys.index((2, 4))


def test_a_per_cell_path_belongs_to_a_sub_supernet_only_if_its_cells_agree(model):
    model.split(step=0)  # split on edge 3 (0->3)
    agree = CellPath([Arch((2, 1, 3, 4, 0, 1)), Arch((1, 4, 0, 4, 1, 3)), Arch((0, 0, 0, 4, 1, 1))])
    assert model.partition(agree) == model.partition(Arch((0, 0, 0, 4, 0, 0))) == 4
    with pytest.raises(ValueError, match="differ on the split edges"):
        model.partition(CellPath([Arch((2, 1, 3, 4, 0, 1)), Arch((2, 1, 3, 2, 0, 1)), Arch((2, 1, 3, 4, 0, 1))]))
