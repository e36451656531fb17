"""The majority vote of synflow, jacob_cov and snip (Abdelfattah et al. 2021)."""
from __future__ import annotations

import numpy as np

from ._proxy import Proxy
from .base import ESTIMATORS
from .jacob_cov import JacobCov
from .snip import Snip
from .synflow import SynFlow

VOTERS = ("synflow", "jacob_cov", "snip")


def copeland(scores: np.ndarray) -> np.ndarray:
    """``scores: (n, 3)`` -> for each architecture, the number of others it beats by a majority of the three
    (at least two of ``score_i - score_j > 0``; a NaN difference is no vote for i)."""
    n = len(scores)
    out = np.zeros(n)
    with np.errstate(invalid="ignore"):
        for start in range(0, n, 512):
            block = scores[start:start + 512]
            votes = (block[:, None, :] > scores[None, :, :]).sum(2)  # (b, n)
            out[start:start + 512] = (votes >= 2).sum(1)
    return out


@ESTIMATORS.register("vote")
class Vote(Proxy):
    """Each architecture's synflow, jacob_cov and snip (columns of estimates.csv), and as its estimate the
    number of the run's other architectures it beats by majority vote (:func:`copeland`). The reference
    (zero-cost-nas, ``notebooks/nasbench201_correlations.ipynb``) votes on every pair and reports the share of
    pairs ordered right; ranking by pairwise wins gives one score per architecture for the harness's rank
    metrics. The estimate depends on which architectures the run scores: the components do not."""

    columns = VOTERS

    def __init__(self, batch_size: int = 64):
        super().__init__(batch_size)
        self.voters = {"synflow": SynFlow(), "jacob_cov": JacobCov(batch_size), "snip": Snip(batch_size)}

    def score(self, archs, ctx):
        parts = {name: v.score(archs, ctx) for name, v in self.voters.items()}
        return [{name: parts[name][i] for name in VOTERS} for i in range(len(archs))]

    def combine(self, frame) -> np.ndarray:
        return copeland(frame[list(VOTERS)].to_numpy(dtype=float))
