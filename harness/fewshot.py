"""Reduced weight sharing by adding parameters: few-shot sub-supernets (Zhao, Wang, Tian, Fonseca & Guo,
"Few-shot Neural Architecture Search", ICML 2021; the "more parameters" half of PWSNAS).

The supernet is split on one or more edges: one sub-supernet per combination of ops on those edges
(5 for one edge), each owning a full copy of the weights, initialised from the supernet at the moment of
the split. An architecture belongs to the sub-supernet of its ops on the split edges: only that one trains
on it and estimates it. Sub-supernets are deep copies, so they share no parameter storage.

The split happens in place (:meth:`FewShotSupernet.split`), so everything holding the model keeps
working; before it, the model is the one shared supernet. :func:`continue_training` moves the optimizer
and learning-rate schedule over to the new parameters so training continues exactly where it was (each
copy inherits its original's momentum). With ``[split] schedule = "fresh"`` (the official few-shot
protocol) harness/phases.py instead starts a new optimizer and schedule at the split.
"""
from __future__ import annotations

import copy
import itertools
from typing import Sequence

import torch
from torch import nn

from .space import NUM_EDGES, NUM_OPS, OPS, Arch, CellPath
from .supernet import Supernet


class FewShotSupernet(nn.Module):
    """``forward(x: (B, 3, H, W), arch) -> logits`` through the sub-supernet owning ``arch``."""

    def __init__(self, parent: Supernet, edges: Sequence[int]):
        super().__init__()
        edges = tuple(int(e) for e in edges)
        if not edges or len(set(edges)) != len(edges) or not all(0 <= e < NUM_EDGES for e in edges):
            raise ValueError(f"split edges must be distinct edge indices in 0..{NUM_EDGES - 1}, got {list(edges)}")
        self.edges = edges
        self.keys: list[tuple[int, ...]] = [()]  # ops on the split edges of each sub-supernet; () = not split yet
        self.nets = nn.ModuleList([parent])
        self.bn_policy = parent.bn_policy
        self.split_step_: int | None = None

    @property
    def is_split(self) -> bool:
        return self.split_step_ is not None

    def split(self, step: int) -> None:
        """Replace the one supernet by one deep copy per combination of ops on the split edges (every op, so
        that architectures a shrinker removed can still be estimated; their copies are simply never trained)."""
        if self.is_split:
            raise RuntimeError("the supernet is already split")
        parent = self.nets[0]
        self.keys = list(itertools.product(range(NUM_OPS), repeat=len(self.edges)))
        self.nets = nn.ModuleList(copy.deepcopy(parent) for _ in self.keys)
        self.split_step_ = int(step)

    def partition(self, arch: Arch | CellPath) -> int:
        """The sub-supernet owning ``arch``; a per-cell path belongs to one only if all its cells agree on the
        split edges (the per-cell sampler draws them so once split)."""
        if not self.is_split:
            return 0
        if isinstance(arch, CellPath):
            keys = {tuple(cell[e] for e in self.edges) for cell in arch}
            if len(keys) != 1:
                raise ValueError(f"the cells of this per-cell path differ on the split edges {list(self.edges)}, "
                                 f"so no sub-supernet owns it: {arch!r}")
            return self.keys.index(keys.pop())
        return self.keys.index(tuple(arch[e] for e in self.edges))

    def owner(self, arch: Arch) -> Supernet:
        return self.nets[self.partition(arch)]

    def subnets(self) -> list[Supernet]:
        return list(self.nets)

    def forward(self, x: torch.Tensor, arch: Arch) -> torch.Tensor:
        return self.owner(arch)(x, arch)

    def describe(self) -> dict:
        out = self.nets[0].describe()
        out["parameters"] = sum(p.numel() for p in self.parameters())
        out["few_shot"] = {"edges": list(self.edges), "sub_supernets": len(self.nets), "split_step": self.split_step_,
                           "keys": [[OPS[o] for o in key] for key in self.keys]}
        return out


def continue_training(model: FewShotSupernet, parent_params: dict[str, nn.Parameter], opt: torch.optim.Optimizer,
                      sched, make):
    """After :meth:`FewShotSupernet.split`: a new optimizer over the sub-supernets' parameters (``make(model)``
    returns ``(opt, sched)``) with the old schedule position and learning rate, and each copy's momentum
    taken from its original (``parent_params``: the parent's ``named_parameters()`` from before the split)."""
    new_opt, new_sched = make(model)
    new_sched.load_state_dict(sched.state_dict())
    for new_group, old_group in zip(new_opt.param_groups, opt.param_groups):
        new_group["lr"] = old_group["lr"]
    for net in model.subnets():
        for name, p in net.named_parameters():
            buf = opt.state.get(parent_params[name], {}).get("momentum_buffer")
            if buf is not None:
                new_opt.state[p]["momentum_buffer"] = buf.clone()
    return new_opt, new_sched
