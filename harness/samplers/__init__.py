"""Registered sampling strategies; import a module here to register it."""
from . import uniform  # noqa: F401  (registers "uniform")
from .base import SAMPLERS, Sampler

__all__ = ["SAMPLERS", "Sampler"]
