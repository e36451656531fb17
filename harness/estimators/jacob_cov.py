"""Jacobian covariance (Mellor et al. 2020, v1 of "NAS without training"; a proxy in Abdelfattah et al. 2021)."""
from __future__ import annotations

import numpy as np
import torch

from ._proxy import Proxy
from .base import ESTIMATORS


def input_jacobian(net, x: torch.Tensor) -> np.ndarray:
    """Per sample, the gradient of the sum of its logits with respect to its input, flattened: ``(N, C*H*W)``."""
    x = x.clone().requires_grad_(True)
    out = net(x)
    if not out.requires_grad:  # the output does not depend on the input (e.g. every cell all-'none')
        return np.zeros((len(x), x[0].numel()))
    (grad,) = torch.autograd.grad(out, x, torch.ones_like(out), allow_unused=True)
    if grad is None:
        return np.zeros((len(x), x[0].numel()))
    return grad.reshape(len(x), -1).detach().double().cpu().numpy()


def correlation_score(jac: np.ndarray, k: float = 1e-5) -> float:
    """``-sum_i [log(l_i + k) + 1 / (l_i + k)]`` over the eigenvalues ``l_i`` of the samples' correlation matrix."""
    with np.errstate(all="ignore"):
        corr = np.corrcoef(jac)
        if not np.isfinite(corr).all():
            return float("nan")
        eig = np.linalg.eigvalsh(corr)
        return float(-np.sum(np.log(eig + k) + 1.0 / (eig + k)))


@ESTIMATORS.register("jacob_cov")
class JacobCov(Proxy):
    """The correlation of input Jacobians across one batch (``jacov`` in NASLib ``measures/jacov.py``): the
    Jacobian of the summed logits with respect to each image, their correlation matrix, and
    :func:`correlation_score` with ``k = 1e-5``. Eigenvalues by ``eigvalsh`` (the matrix is symmetric; NASLib's
    ``eig`` returns the same values up to rounding). A network whose output ignores its input has a zero
    Jacobian and no correlation: NaN."""

    def measure(self, net, x, y, ctx):
        return correlation_score(input_jacobian(net, x))
