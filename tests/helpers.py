"""Shared test helpers."""
import pytest

import harness.train as train_mod
from harness.runner import run_experiment


def interrupt_training_at(step: int, config, out, monkeypatch, owner=train_mod, name: str = "train_step") -> None:
    """Run ``config`` into ``out`` with training killed (KeyboardInterrupt) when it reaches ``step``, leaving
    an unfinished run directory; the real training step is restored afterwards. ``owner.name`` is the step that
    is interrupted: the plan-based ``train_step(model, sampler, x, y, step, ...)`` by default, or a differentiable
    sampler class's ``train_step(self, model, x, y, step, ...)`` (the step is the fifth argument of both)."""
    real = getattr(owner, name)

    def crash(*args):
        if args[4] == step:
            raise KeyboardInterrupt
        return real(*args)

    monkeypatch.setattr(owner, name, crash)
    with pytest.raises(KeyboardInterrupt):
        run_experiment(config, out, progress=False)
    monkeypatch.setattr(owner, name, real)
    assert (out / "checkpoint.pt").exists() and not (out / "metrics.json").exists()
