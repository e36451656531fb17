"""The supernet as an estimator: inherited-weight accuracy after weight-sharing training."""
from __future__ import annotations

from .base import ESTIMATORS, Estimator


@ESTIMATORS.register("supernet")
class SupernetEstimator(Estimator):
    """Accuracy of each architecture's single path with the weights of a supernet trained by the run's
    ``[sampler]`` (and ``[shrink]``, ``[split]``) on the training split, scored on the held-out split
    (``harness/estimate.py``). The runner trains and estimates it through its own path; it has no options
    here (the supernet's are the other sections of the config)."""

    trains = True
