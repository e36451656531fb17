"""Registered estimators, one file each; import a module here to register it (``[estimator] name``)."""
from . import (early_stop, epe_nas, fisher, flops, grad_norm, grasp, jacob_cov, l2_norm, nwot, params,  # noqa: F401
               plain, random_score, snip, supernet, synflow, vote, zen)
from .base import ESTIMATORS, Context, Estimator

__all__ = ["ESTIMATORS", "Context", "Estimator"]
