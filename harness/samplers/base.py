"""Sampling strategies: what the supernet trains on at each step.

A strategy turns a step into a *plan*: a list of (architecture, loss weight). The training loop
runs every planned path on the same batch, sums ``weight * loss`` (gradients accumulate), and
takes one optimizer step. Uniform sampling plans one path of weight 1; FairNAS plans 5 paths;
the NSAS losses plan the current path plus weighted constraint paths. After the step the loop
reports the per-path losses through :meth:`Sampler.observe` so strategies with memory
(novelty archives, constraint sets) can update.

To add a strategy: write one file in this package with a ``@SAMPLERS.register("name")`` class
whose constructor takes keyword options (each with a default: these are the config keys), and
import it in ``__init__.py``. The conformance test in ``tests/test_samplers.py`` covers it.
"""
from __future__ import annotations

import random
from typing import Sequence

from ..registry import Registry
from ..space import Arch

SAMPLERS: Registry[type["Sampler"]] = Registry("sampler")


class Sampler:
    """Base class. Subclasses implement :meth:`plan`; the runner passes in the ``rng``."""

    name = "base"

    def plan(self, step: int, rng: random.Random) -> list[tuple[Arch, float]]:
        raise NotImplementedError

    def observe(self, step: int, archs: Sequence[Arch], losses: Sequence[float]) -> None:
        """Feedback after the step (losses are Python floats only when the loop synchronises)."""

    def state_dict(self) -> dict:
        return {}

    def load_state_dict(self, state: dict) -> None:
        pass
