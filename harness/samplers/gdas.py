"""GDAS (Dong & Yang, "Searching for A Robust Neural Architecture in Four GPU Hours", CVPR 2019) and GDAS with
the NSAS loss (Zhang et al., TPAMI 2021, who applied their constraint to GDAS as well as to RandomNAS).

GDAS samples one op per edge from the Gumbel-softmax of alpha at temperature tau and runs only that path:
the forward uses straight-through weights ``one_hot - p.detach() + p`` (value one-hot, gradient of the soft
sample ``p``), so alpha learns from single-path losses. As in NB201's GDAS (xautodl ``algos/GDAS.py``), each
forward draws a fresh sample, a step updates the weights on the training batch and then alpha on a search
batch, and tau decays linearly from ``tau_max`` (10) to ``tau_min`` (0.1) over the run (per step here; per
epoch in xautodl).

``gdas-nsas``: the weight loss is ``(1 - lam) * L(sampled path) + lam * mean over the constraint of L(member)``;
alpha is updated as in GDAS. ``constraint`` chooses the constraint set:

* ``"archive"`` (ours): NSAS's diverse archive of previously sampled architectures
  (:class:`~harness.samplers.diversity.DiverseArchive`, M = ``archive_size``, offered each sampled path);
* ``"random-diverse"``: the official NB201 notebook ``exps/algos/GDAS_NSAS_0.2_seed0.ipynb``: a uniform random
  architecture and one that differs from it on every edge;
* ``"random-compensate"``: ``GDAS_NSAS_G_0.2_seed0.ipynb``: a uniform random architecture and, where it agrees
  with the sampled path, an op other than its own, elsewhere the sampled path's op.

``constraint_grad = false`` reproduces those notebooks as they run: the constraint losses are taken with
``.item()`` and the loss is rebuilt as ``L(current) + value - L(current).detach()``, so the value is the NSAS
loss but the gradient is plain GDAS's (the sampled path at weight 1).
"""
from __future__ import annotations

import torch
import torch.nn.functional as F

from ..space import Arch
from .base import SAMPLERS
from .differentiable import DifferentiableSampler
from .diversity import DiverseArchive


def gumbel_hard(alpha: torch.Tensor, tau: float, generator: torch.Generator) -> tuple[torch.Tensor, torch.Tensor]:
    """One Gumbel-softmax sample per edge: (straight-through weights (6, 5), chosen op per edge (6,)).

    Resamples in the (rare) event of a non-finite soft sample, as xautodl does."""
    while True:
        gumbels = -torch.empty_like(alpha).exponential_(generator=generator).log()
        probs = ((alpha.log_softmax(-1) + gumbels) / tau).softmax(-1)
        if torch.isfinite(probs).all():
            break
    index = probs.argmax(-1)
    hard = F.one_hot(index, alpha.shape[-1]).to(probs.dtype)
    return hard - probs.detach() + probs, index


@SAMPLERS.register("gdas")
class GDASSampler(DifferentiableSampler):
    name = "gdas"

    def __init__(self, tau_max: float = 10.0, tau_min: float = 0.1, arch_lr: float = 3e-4, arch_beta1: float = 0.5,
                 arch_beta2: float = 0.999, arch_weight_decay: float = 1e-3, alpha_init_scale: float = 1e-3):
        super().__init__(arch_lr, arch_beta1, arch_beta2, arch_weight_decay, alpha_init_scale)
        if not 0 < tau_min <= tau_max:
            raise ValueError(f"need 0 < tau_min <= tau_max, got tau_min={tau_min}, tau_max={tau_max}")
        self.tau_max, self.tau_min = tau_max, tau_min
        self.paths_per_step = 2  # one single path for the weights, one for alpha

    def tau(self, step: int) -> float:
        return self.tau_max - (self.tau_max - self.tau_min) * step / max(1, self.steps - 1)

    def sample(self, step: int, alpha: torch.Tensor) -> tuple[torch.Tensor, Arch]:
        """Straight-through weights and the sampled architecture (one host sync: the ops decide which modules run)."""
        hard, index = gumbel_hard(alpha, self.tau(step), self.noise)
        return hard, Arch(index.tolist())

    def path_loss(self, model, x, y, step: int, alpha: torch.Tensor) -> tuple[torch.Tensor, Arch]:
        hard, arch = self.sample(step, alpha)
        return F.cross_entropy(model.forward_weighted(x, hard, arch), y), arch

    def weight_loss(self, model, x, y, step: int) -> tuple[torch.Tensor, Arch]:
        return self.path_loss(model, x, y, step, self.alpha.detach())

    def train_step(self, model, x, y, step, rng, opt, grad_clip):
        self._check_attached()
        loss, arch = self.weight_loss(model, x, y, step)
        self.weight_update(model, loss, opt, grad_clip)
        xs, ys = next(self.search)
        search_loss, _ = self.path_loss(model, xs, ys, step, self.alpha)
        (grad,) = torch.autograd.grad(search_loss, self.alpha)
        self.arch_update(grad)
        self.observe(step, [arch], [loss])
        return loss.detach(), [arch]


CONSTRAINTS = ("archive", "random-diverse", "random-compensate")


@SAMPLERS.register("gdas-nsas")
class GDASNSASSampler(GDASSampler):
    name = "gdas-nsas"

    def __init__(self, archive_size: int = 10, k: int = 10, lam: float = 0.5, constraint: str = "archive",
                 constraint_grad: bool = True, tau_max: float = 10.0,
                 tau_min: float = 0.1, arch_lr: float = 3e-4, arch_beta1: float = 0.5, arch_beta2: float = 0.999,
                 arch_weight_decay: float = 1e-3, alpha_init_scale: float = 1e-3):
        super().__init__(tau_max, tau_min, arch_lr, arch_beta1, arch_beta2, arch_weight_decay, alpha_init_scale)
        if not 0 <= lam < 1:
            raise ValueError(f"lam must be in [0, 1) (lam = 1 would not train the sampled path), got {lam}")
        if archive_size < 1:
            raise ValueError(f"archive_size must be >= 1, got {archive_size}")
        if constraint not in CONSTRAINTS:
            raise ValueError(f"constraint must be one of {', '.join(map(repr, CONSTRAINTS))}, got {constraint!r}")
        if not isinstance(constraint_grad, bool):
            raise ValueError(f"constraint_grad must be true or false, got {constraint_grad!r}")
        self.lam, self.archive_size, self.k = float(lam), archive_size, k
        self.constraint, self.constraint_grad = constraint, constraint_grad
        self.paths_per_step = 2 + (archive_size if constraint == "archive" else 2)
        self.archive_ = DiverseArchive(archive_size, k)
        self.used_ = 0  # constraint members in the last step's loss

    def _ops(self, n: int, low: int, high: int) -> torch.Tensor:
        return torch.randint(low, high, (n,), generator=self.noise, device=self.noise.device)

    def members(self, current: Arch) -> list[Arch]:
        if self.lam == 0:
            return []
        if self.constraint == "archive":
            return list(self.archive_.members)
        n, num_ops = len(current), self.alpha.shape[-1]
        rand = self._ops(n, 0, num_ops)
        other = (rand + self._ops(n, 1, num_ops)) % num_ops  # uniform over the ops other than random's
        if self.constraint == "random-compensate":
            cur = torch.tensor(list(current), device=rand.device)
            other = torch.where(rand == cur, other, cur)
        return [Arch(rand.tolist()), Arch(other.tolist())]

    def weight_loss(self, model, x, y, step):
        loss, arch = super().weight_loss(model, x, y, step)
        members = self.members(arch)
        self.used_ = len(members)
        if not members:
            return loss, arch
        with torch.set_grad_enabled(self.constraint_grad):
            constraint = sum(F.cross_entropy(model(x, m), y) for m in members) / len(members)
        combined = (1 - self.lam) * loss + self.lam * constraint
        if self.constraint_grad:
            return combined, arch
        return loss + (combined.detach() - loss.detach()), arch  # value NSAS's, gradient plain GDAS's

    def passes(self, archs) -> float:
        return 2 + self.used_

    def observe(self, step, archs, losses) -> None:
        if archs and self.constraint == "archive":
            self.archive_.offer(archs[0])

    def state_dict(self) -> dict:
        return dict(super().state_dict(), archive=self.archive_.state_dict())

    def load_state_dict(self, state: dict) -> None:
        super().load_state_dict(state)
        self.archive_.load_state_dict(state["archive"])
