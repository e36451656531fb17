"""Shared test helpers."""
import pytest

import harness.train as train_mod
from harness.runner import run_experiment


def interrupt_training_at(step: int, config, out, monkeypatch) -> None:
    """Run ``config`` into ``out`` with training killed (KeyboardInterrupt) when it reaches ``step``, leaving
    an unfinished run directory; the real training step is restored afterwards."""
    real = train_mod.train_step

    def crash(model, sampler, x, y, at, *args):
        if at == step:
            raise KeyboardInterrupt
        return real(model, sampler, x, y, at, *args)

    monkeypatch.setattr(train_mod, "train_step", crash)
    with pytest.raises(KeyboardInterrupt):
        run_experiment(config, out, progress=False)
    monkeypatch.setattr(train_mod, "train_step", real)
    assert (out / "checkpoint.pt").exists() and not (out / "metrics.json").exists()
