"""Registered search-space shrinking rules; import a module here to register it."""
from . import accuracy, angle, magnitude, weight_norm  # noqa: F401  (each registers its rule)
from .base import SHRINKERS, ScoreContext, Shrinker, Space, choose_removals, edge_name

__all__ = ["SHRINKERS", "ScoreContext", "Shrinker", "Space", "choose_removals", "edge_name"]
