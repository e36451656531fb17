"""NB201's own 12-epoch training (its ``hp = 12`` results) as an estimator: the standard early-stopping reference."""
from __future__ import annotations

from ..groundtruth.base import GTQuery
from .base import ESTIMATORS, Estimator


@ESTIMATORS.register("nb201-12ep")
class TwelveEpochs(Estimator):
    """The ground-truth table's 12-epoch value of the run's query (same dataset, metric and seed policy; e.g.
    ``cifar10valid_valid_12`` for ``cifar10valid_valid_200``), read from ``[groundtruth] source``. Its cost is
    NB201's 12 epochs of stand-alone training per architecture, which the table saves: the seconds recorded are
    the lookup's."""

    def score(self, archs, ctx):
        q = ctx.query
        return [float(v) for v in ctx.gt.query_many(archs, GTQuery(q.dataset, q.metric, 12, q.seeds))]
