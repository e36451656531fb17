import random

import pytest
import torch

from harness.nets import NB201Network
from harness.space import EDGES, Arch, all_archs
from harness.supernet import SearchCell, Supernet

ZERO_FED = Arch.from_str("|none~0|+|nor_conv_3x3~0|nor_conv_3x3~1|+|none~0|nor_conv_1x1~1|nor_conv_3x3~2|")


def copy_path_into_network(supernet: Supernet, net: NB201Network, arch: Arch) -> None:
    """Load the supernet's weights for ``arch`` into the stand-alone network (names differ only in cells)."""
    target = net.state_dict()
    src = supernet.state_dict()
    for key in target:
        parts = key.split(".")
        if parts[0] == "cells" and parts[2] == "layers":
            live = [e for e, op in enumerate(arch) if op != 0]
            e = live[int(parts[3])]
            key_src = ".".join(["cells", parts[1], "edges", str(e), str(arch[e])] + parts[4:])
        else:
            key_src = key
        target[key] = src[key_src]
    net.load_state_dict(target)


@pytest.mark.parametrize("seed", range(4))
def test_single_path_equals_the_stand_alone_nb201_network(seed):
    torch.manual_seed(seed)
    arch = random.Random(seed).choice(all_archs()) if seed else ZERO_FED
    sn = Supernet(C=4, N=2, num_classes=5, bn_policy="recalibrate", bn_affine=True)
    for p in sn.parameters():  # non-trivial BN affine values so a mismatch cannot hide
        torch.nn.init.normal_(p, 0, 0.5)
    net = NB201Network(arch, C=4, N=2, num_classes=5)
    copy_path_into_network(sn, net, arch)
    x = torch.randn(6, 3, 16, 16)
    sn.train(), net.train()
    assert torch.allclose(sn(x, arch), net(x), atol=1e-5)


def test_zero_node_shortcut_is_exact_under_batch_statistics():
    torch.manual_seed(0)
    sn = Supernet(C=4, N=1, num_classes=3, bn_policy="batch")
    x = torch.randn(4, 3, 8, 8)
    fast = sn(x, ZERO_FED)
    for cell in sn.cells:
        if isinstance(cell, SearchCell):
            assert cell.zero_is_absorbing
            cell.zero_is_absorbing = False  # materialise the zero node and run the convs on it
    assert torch.allclose(fast, sn(x, ZERO_FED), atol=1e-6)


def test_recalibrate_policy_keeps_running_stats_and_runs_convs_on_zero_nodes():
    sn = Supernet(C=4, N=1, num_classes=3, bn_policy="recalibrate")
    cells = [c for c in sn.cells if isinstance(c, SearchCell)]
    assert cells and all(not c.zero_is_absorbing for c in cells)
    bn = cells[0].edges[0][3][2]
    assert bn.track_running_stats and not bn.affine
    bn_batch = Supernet(C=4, N=1, bn_policy="batch").cells[0].edges[0][3][2]
    assert not bn_batch.track_running_stats and not bn_batch.affine
    with pytest.raises(ValueError, match="bn_policy"):
        Supernet(bn_policy="frozen")


def test_only_the_chosen_path_gets_gradients_and_weights_are_shared():
    torch.manual_seed(0)
    sn = Supernet(C=4, N=1, num_classes=3)
    arch = Arch.from_str("|nor_conv_3x3~0|+|nor_conv_1x1~0|none~1|+|avg_pool_3x3~0|nor_conv_3x3~1|skip_connect~2|")
    sn(torch.randn(4, 3, 8, 8), arch).sum().backward()
    for e in range(len(EDGES)):
        for op in (2, 3):
            for module in sn.op_modules(e, op):
                grads = [p.grad for p in module.parameters()]
                if arch[e] == op:
                    assert all(g is not None and g.abs().sum() > 0 for g in grads)
                else:
                    assert all(g is None for g in grads)
    # one set of weights per (cell, edge, op): a module per search cell, shared by every architecture
    n_cells = sum(1 for c in sn.cells if isinstance(c, SearchCell))
    assert len({id(m) for m in sn.op_modules(0, 3)}) == n_cells == 3
    n_conv_modules = n_cells * len(EDGES) * 2
    assert len([m for m in sn.modules() if isinstance(m, torch.nn.Conv2d)]) == n_conv_modules + 1 + 2 * 3


def test_training_one_architecture_moves_weights_another_one_uses():
    torch.manual_seed(0)
    sn = Supernet(C=4, N=1, num_classes=3)
    a = Arch.from_str("|nor_conv_3x3~0|+|none~0|none~1|+|none~0|none~1|skip_connect~2|")
    b = Arch.from_str("|nor_conv_3x3~0|+|avg_pool_3x3~0|none~1|+|none~0|skip_connect~1|none~2|")
    x = torch.randn(8, 3, 8, 8)
    before = sn(x, b).detach()
    opt = torch.optim.SGD(sn.parameters(), lr=0.5)
    torch.nn.functional.cross_entropy(sn(x, a), torch.zeros(8, dtype=torch.long)).backward()
    opt.step()
    assert not torch.allclose(before, sn(x, b).detach())


def test_forward_shapes_for_configurable_sizes():
    for C, N, k in [(8, 1, 10), (4, 3, 100)]:
        sn = Supernet(C=C, N=N, num_classes=k)
        assert sn(torch.randn(2, 3, 16, 16), all_archs()[123]).shape == (2, k)
        assert sn.describe()["num_classes"] == k


def test_per_cell_path_runs_each_cell_with_its_own_architecture():
    from harness.space import CellPath, random_arch

    torch.manual_seed(0)
    net = Supernet(C=4, N=1, num_classes=10).eval()
    rng = random.Random(1)
    archs = [random_arch(rng) for _ in range(3)]
    x = torch.randn(2, 3, 8, 8)
    with torch.no_grad():
        h = net.stem(x)
        k = 0
        for cell in net.cells:  # by hand: search cell k gets archs[k]
            if isinstance(cell, SearchCell):
                h, k = cell(h, archs[k]), k + 1
            else:
                h = cell(h)
        assert torch.equal(net(x, CellPath(archs)), net.head(h))
        assert torch.equal(net(x, CellPath([archs[0]] * 3)), net(x, archs[0]))  # the same cell everywhere = Arch
    with pytest.raises(ValueError, match="needs 3 architectures"):
        net(x, CellPath(archs[:2]))


def _bns(model: torch.nn.Module) -> list[tuple[int, bool, bool]]:
    return [(m.num_features, m.affine, m.track_running_stats) for m in model.modules()
            if isinstance(m, torch.nn.BatchNorm2d)]


@pytest.mark.parametrize("scope, reference", [("cells", "search_model_random"), ("cells+lastact", "generic_model")])
def test_bn_scope_matches_nb201s_and_nats_benchs_search_models(scope, reference):
    """Outside the cells (whose BNs both follow the flags): the stem, reduction and last BNs as xautodl builds them,
    NB201's TinyNetworkRANDOM (``cells``) and NATS-Bench's GenericNAS201Model (``cells+lastact``), at BN=0."""
    cells = pytest.importorskip("xautodl.models.cell_searchs")
    from harness.space import OPS

    if reference == "generic_model":
        theirs = cells.generic_model.GenericNAS201Model(8, 1, 4, 10, list(OPS), False, False)
        outside = [theirs._stem, *[c for c in theirs._cells if not hasattr(c, "edges")], theirs.lastact]
    else:
        theirs = cells.search_model_random.TinyNetworkRANDOM(8, 1, 4, 10, list(OPS), False, False)
        outside = [theirs.stem, *[c for c in theirs.cells if not hasattr(c, "edges")], theirs.lastact]
    ours = Supernet(8, 1, 10, "batch", bn_affine=False, bn_scope=scope)
    mine = [ours.stem, *[c for c in ours.cells if not isinstance(c, SearchCell)], ours.lastact]
    assert [b for m in mine for b in _bns(m)] == [b for m in outside for b in _bns(m)]
    assert _bns(ours.lastact) == ([(32, False, False)] if scope == "cells+lastact" else [(32, True, True)])


def test_nats_bn_scope_estimates_the_same_with_both_engines():
    from harness.estimate import estimate_archs

    torch.manual_seed(0)
    model = Supernet(4, 1, 10, "batch", bn_scope="cells+lastact").eval()
    x, y = torch.randn(24, 3, 8, 8), torch.randint(0, 10, (24,))
    archs = random.Random(0).sample(all_archs(), 6)
    eager = estimate_archs(model, archs, [(x, y)], progress=False, engine="eager")
    fast = estimate_archs(model, archs, [(x, y)], progress=False, engine="batched")
    assert [r["estimate"] for r in eager] == [r["estimate"] for r in fast]
    assert [r["loss"] for r in eager] == pytest.approx([r["loss"] for r in fast], rel=1e-5)
