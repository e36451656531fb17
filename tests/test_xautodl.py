"""xautodl (NB201's reference code, ``pip install --no-deps xautodl==1.0.0``) as the oracle, with weights copied
across: the stand-alone network, the supernet's single path under each BN policy xautodl has, the isomorphism
keys, FLOPs and parameters, and the DARTS and GDAS forwards and gradients.

Known, harmless differences, handled here and documented in docs/methods.md:
* xautodl's search cells build ``ReLUConvBN`` with ``affine=False`` and therefore ``bias=True`` convolutions; the
  BN right after removes any bias (its batch or running mean includes it), so the biases are inert. They are set
  to 0 here, which makes the two computations identical.
* a parameter whose output never reaches the logits gets a ``None`` gradient here and an exact zero in xautodl
  (PyTorch 1.x); the gradient comparisons below treat the two alike.
"""
import random
import re

import pytest
import torch

xautodl = pytest.importorskip("xautodl")
from xautodl.models.cell_infers.tiny_network import TinyNetwork  # noqa: E402
from xautodl.models.cell_searchs import search_cells  # noqa: E402
from xautodl.models.cell_searchs.genotypes import Structure  # noqa: E402
from xautodl.models.cell_searchs.search_model_darts import TinyNetworkDarts  # noqa: E402
from xautodl.models.cell_searchs.search_model_random import TinyNetworkRANDOM  # noqa: E402
from xautodl.utils.flop_benchmark import get_model_infos  # noqa: E402

from harness.nets import NB201Network, arch_costs, count_parameters  # noqa: E402
from harness.space import NUM_EDGES, NUM_OPS, OPS, Arch, all_archs, random_arch  # noqa: E402
from harness.supernet import SearchCell, Supernet  # noqa: E402

SPACE = list(OPS)
C, N, CLASSES = 4, 1, 10


def archs(n=12, seed=0):
    rng = random.Random(seed)
    fixed = [Arch([0] * 6), Arch([1] * 6), Arch([3] * 6), Arch([0, 0, 0, 3, 3, 3]), Arch([3, 0, 0, 0, 0, 4])]
    return fixed + [random_arch(rng) for _ in range(n)]


def inert_biases(tensors: dict) -> list[str]:
    """xautodl's search-cell conv biases: ``edges.<edge>.<op>.op.1.bias`` next to a 4-d conv weight."""
    return [k for k in tensors if re.search(r"(^|\.)edges\.[^.]+\.\d+\.op\.1\.bias$", k)
            and tensors[k.replace(".bias", ".weight")].dim() == 4]


def copy_weights(ours: torch.nn.Module, theirs: torch.nn.Module) -> None:
    """Copy ``ours`` into ``theirs`` entry by entry (both list modules in NB201's order); xautodl's inert
    search-cell conv biases, which ours lack, are zeroed."""
    mine = list(ours.state_dict().items())
    target = theirs.state_dict()
    inert = inert_biases(target)
    rest = [k for k in target if k not in inert and not k.startswith("arch_parameters")]
    assert len(rest) == len(mine), (len(rest), len(mine))
    new = {}
    for (name, value), key in zip(mine, rest):
        assert target[key].shape == value.shape, (name, key)
        new[key] = value.clone()
    for key in inert:
        new[key] = torch.zeros_like(target[key])
    for key in target:
        new.setdefault(key, target[key])
    theirs.load_state_dict(new)


def batch(seed=0, n=6, size=16):
    g = torch.Generator().manual_seed(seed)
    return torch.randn(n, 3, size, size, generator=g), torch.randint(0, CLASSES, (n,), generator=g)


@pytest.mark.parametrize("arch", archs(), ids=str)
def test_stand_alone_network_equals_xautodls(arch):
    torch.manual_seed(0)
    ours = NB201Network(arch, C=C, N=N, num_classes=CLASSES)
    theirs = TinyNetwork(C, N, Structure.str2structure(arch.to_str()), CLASSES)
    copy_weights(ours, theirs)
    x, _ = batch()
    for mode in ("train", "eval"):
        getattr(ours, mode)(), getattr(theirs, mode)()
        assert torch.equal(ours(x), theirs(x)[1]), mode


@pytest.mark.parametrize("bn_policy, track", [("batch", False), ("track", True)])
def test_supernet_single_path_equals_xautodls_random_search_model(bn_policy, track):
    torch.manual_seed(0)
    ours = Supernet(C=C, N=N, num_classes=CLASSES, bn_policy=bn_policy)
    theirs = TinyNetworkRANDOM(C, N, 4, CLASSES, SPACE, False, track)
    copy_weights(ours, theirs)
    x, _ = batch()
    for arch in archs():
        theirs.arch_cache = Structure.str2structure(arch.to_str())
        ours.train(), theirs.train()
        assert torch.equal(ours(x, arch), theirs(x)[1]), arch  # also moves both sets of running statistics
        ours.eval(), theirs.eval()
        assert torch.equal(ours(x, arch), theirs(x)[1]), arch


def test_isomorphism_keys_equal_xautodls_on_every_architecture():
    keys = {}
    for arch in all_archs():
        key = Structure.str2structure(arch.to_str()).to_unique_str(consider_zero=True)
        assert arch.canonical() == key, arch
        keys.setdefault(key, arch)
    assert len(keys) == 6466


@pytest.mark.parametrize("arch", archs(20, seed=1), ids=str)
def test_flops_and_parameters_equal_xautodls(arch):
    net = TinyNetwork(16, 5, Structure.str2structure(arch.to_str()), 10)
    flops, params = get_model_infos(net, (1, 3, 32, 32))
    costs = arch_costs(arch, C=16, N=5, num_classes=10, resolution=32)
    assert costs.flops / 1e6 == pytest.approx(flops, rel=1e-12)
    assert costs.params / 1e6 == pytest.approx(params, rel=1e-12)
    assert count_parameters(NB201Network(arch, C=16, N=5, num_classes=10)) == costs.params


def test_darts_mixed_forward_and_gradients_equal_xautodls():
    torch.manual_seed(0)
    ours = Supernet(C=C, N=N, num_classes=CLASSES)
    theirs = TinyNetworkDarts(C, N, 4, CLASSES, SPACE, False, False)
    copy_weights(ours, theirs)
    x, y = batch()
    alpha = (1e-1 * torch.randn(NUM_EDGES, NUM_OPS)).requires_grad_()
    with torch.no_grad():
        theirs.arch_parameters.copy_(alpha)
    loss = torch.nn.functional.cross_entropy(ours.forward_weighted(x, alpha.softmax(-1)), y)
    ref = torch.nn.functional.cross_entropy(theirs(x)[1], y)
    assert loss.item() == pytest.approx(ref.item(), rel=1e-6)
    loss.backward()
    ref.backward()
    assert torch.allclose(alpha.grad, theirs.arch_parameters.grad, rtol=1e-4, atol=1e-7)
    ours_named = dict(ours.named_parameters())
    skip = set(inert_biases(dict(theirs.named_parameters()))) | {"arch_parameters"}
    theirs_weights = [p for n, p in theirs.named_parameters() if n not in skip]
    assert len(ours_named) == len(theirs_weights)
    for (name, p), q in zip(ours_named.items(), theirs_weights):
        g = torch.zeros_like(p) if p.grad is None else p.grad
        h = torch.zeros_like(q) if q.grad is None else q.grad
        assert torch.allclose(g, h, rtol=1e-4, atol=1e-6), name


def test_gdas_cell_forward_and_gradients_equal_xautodls():
    """At the cell: our forward_weighted with the hard sample's index runs what xautodl's forward_gdas runs."""
    torch.manual_seed(0)
    ours = SearchCell(C, affine=False, track_running_stats=False)
    theirs = search_cells.NAS201SearchCell(C, C, 1, 4, SPACE, False, False)
    copy_weights(ours, theirs)
    x = torch.randn(4, C, 8, 8)
    g = torch.Generator().manual_seed(1)
    for _ in range(10):
        logits = torch.randn(NUM_EDGES, NUM_OPS, generator=g)
        index = torch.randint(0, NUM_OPS, (NUM_EDGES,), generator=g)
        probs = logits.softmax(-1)
        a = probs.clone().requires_grad_()
        b = probs.clone().requires_grad_()
        hard_a = torch.nn.functional.one_hot(index, NUM_OPS).float() - a.detach() + a
        hard_b = torch.nn.functional.one_hot(index, NUM_OPS).float() - b.detach() + b
        out = ours.forward_weighted(x, hard_a, index.tolist())
        ref = theirs.forward_gdas(x, hard_b, index.view(-1, 1))
        assert torch.allclose(out, ref, rtol=1e-5, atol=1e-6)
        out.square().sum().backward()
        ref.square().sum().backward()
        assert torch.allclose(a.grad, b.grad, rtol=1e-4, atol=1e-6)
