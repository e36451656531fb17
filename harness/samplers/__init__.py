"""Registered sampling strategies; import a module here to register it."""
from . import differentiable, fairnas, gdas, joint, novelty, nsas, percell, uniform  # noqa: F401  (each registers its strategies)
from .base import SAMPLERS, Sampler

__all__ = ["SAMPLERS", "Sampler"]
