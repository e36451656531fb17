"""EPE-NAS (Lopes et al. 2021): per-class correlations of input Jacobians."""
from __future__ import annotations

import numpy as np

from ._proxy import Proxy
from .base import ESTIMATORS
from .jacob_cov import input_jacobian


def epe_score(jac: np.ndarray, labels: np.ndarray, n_classes: int) -> float:
    """For each class ``c`` in the batch, ``s_c = sum_ij log(|corr(J_c)_ij| + 1e-5)`` over its samples'
    Jacobian correlation matrix; with at most 100 classes the score is ``sum_c |s_c|``, otherwise every ``s_c``
    is divided by its number of samples (a class with one sample dropped) and the score is ``sum_c sum_c'
    |s_c - s_c'|`` over the number of classes seen (NASLib ``measures/epe_nas.py``)."""
    scores = []
    with np.errstate(all="ignore"):
        for c in range(n_classes):
            rows = jac[labels == c]
            if len(rows) == 0:
                continue
            if len(rows) == 1:
                if n_classes > 100:
                    continue  # the reference's len() of a 0-d correlation fails and it skips the class
                scores.append(float(np.log(1.0 + 1e-5)))
                continue
            s = float(np.sum(np.log(np.abs(np.corrcoef(rows)) + 1e-5)))
            scores.append(s / len(rows) if n_classes > 100 else s)
    if not scores:
        return float("nan")
    s = np.asarray(scores)
    if n_classes <= 100:
        return float(np.sum(np.abs(s)))
    return float(np.sum(np.abs(s[:, None] - s[None, :])) / len(s))


@ESTIMATORS.register("epe_nas")
class EpeNas(Proxy):
    """:func:`epe_score` of the input Jacobians of the summed logits (as ``jacob_cov``) on one batch, grouped by
    label. Ported from NASLib's version of EPE-NAS (the original repository was not read)."""

    def measure(self, net, x, y, ctx):
        return epe_score(input_jacobian(net, x), y.cpu().numpy(), ctx.num_classes)
