"""Uniform single paths for the weights, alpha trained jointly: the training of ABS's magnitude baseline on NB201
(megvii-model/AngleNAS ``NAS-Bench-201/exps/angle/dropnode_by_magnitude.py``).

Each step (``search_func``, lines 39-59):

1. **weights**: one architecture drawn uniformly (``dync_genotype(True)``: ``random.choice`` of an op per edge,
   the same architecture in every cell), a forward/backward through that single path and one SGD step (the
   loop's optimizer; ABS clips nothing, so its preset sets ``grad_clip = 0``);
2. **alpha**: a forward through the mixed op (``set_cal_mode('joint')``: every op weighted by softmax(alpha),
   ``search_cells.py:65-76``) on a batch of the search half and one Adam step of alpha alone (lr 3e-4, betas
   (0.5, 0.999), weight decay 1e-3: ``dropnode_by_magnitude.py:235`` and the ``dropnode_by_magnitude.sh``
   arguments). The weights get no update from this pass: only alpha's optimizer steps (the official code
   accumulates weight gradients here too, but zeroes them before the next weight step).

The ``magnitude`` shrinking rule then scores each op by softmax(alpha) (:mod:`harness.shrinkers.magnitude`).
Unlike DARTS and GDAS this strategy can be shrunk: after a round, paths are drawn from the alive ops and the
mixed op and alpha's softmax run over them only (the official NB201 run has one round, after training, so it
never trains a shrunk space).

A step costs 1 + :data:`~harness.samplers.differentiable.MIXED_PASS` single-path equivalents.
"""
from __future__ import annotations

import torch
import torch.nn.functional as F

from ..space import Arch
from .base import SAMPLERS, check_allowed, draw
from .differentiable import MIXED_PASS, DifferentiableSampler


@SAMPLERS.register("uniform-alpha")
class UniformAlphaSampler(DifferentiableSampler):
    name = "uniform-alpha"
    shrinkable = True  # the weights train on sampled single paths, so a shrunk space is well defined
    paths_per_step = 1 + MIXED_PASS

    def restrict(self, allowed) -> None:
        self.allowed = check_allowed(allowed)
        self._mask = None

    def _alive(self) -> torch.Tensor:
        if getattr(self, "_mask", None) is None:
            from ..shrinkers.base import Space  # here: shrinkers import the samplers' base module

            self._mask = torch.from_numpy(Space(self.allowed).mask()).to(self.alpha.device)
        return self._mask

    def logits(self) -> torch.Tensor:
        """alpha with removed ops at -inf (all of alpha while nothing is removed)."""
        return self.alpha.masked_fill(~self._alive(), float("-inf"))

    def derived(self) -> Arch:
        return Arch(self.logits().detach().argmax(-1).tolist())

    def train_step(self, model, x, y, step, rng, opt, grad_clip):
        self._check_attached()
        arch = draw(self.allowed, rng)  # UniformSampler's draw, from the same rng
        loss = F.cross_entropy(model(x, arch), y)
        self.weight_update(model, loss, opt, grad_clip)
        xs, ys = next(self.search)
        search_loss = F.cross_entropy(model.forward_weighted(xs, self.logits().softmax(-1)), ys)
        (grad,) = torch.autograd.grad(search_loss, self.alpha)
        self.arch_update(grad)
        return loss.detach(), [arch]
