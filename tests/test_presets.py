"""Preset configs per paper regime (configs/presets/): each states the official hyper-parameters it follows, in
"# official: KEY = VALUE" lines, and each runs when shrunk to CPU size with overrides.

The table below is transcribed by hand from the official files (xautodl's configs/nas-benchmark/algos/*.config and
scripts-search/NAS-Bench-201-algos/*.sh; NSAS_FOR_CVPR's NB201 notebooks; AngleNAS's NAS-Bench-201/exps/angle
scripts and SPOS.config), independently of the presets: a preset
whose comment or values drift from the official code fails here.
"""
import json
import re
import tomllib
from pathlib import Path

import pytest

from harness.config import load_config
from harness.runner import run_experiment

from .conftest import require_shared
from .test_runner import ARCHS

PRESETS = Path(__file__).resolve().parents[1] / "configs" / "presets"

NB201_SGD = {"supernet.C": 16, "supernet.N": 5, "train.batch_size": 64, "train.lr": 0.025, "train.lr_min": 0.001,
             "train.momentum": 0.9, "train.nesterov": True, "train.weight_decay": 0.0005, "train.grad_clip": 5.0,
             "train.unsampled_ops": "zero"}
ARCH_ADAM = {"sampler.arch_lr": 0.0003, "sampler.arch_weight_decay": 0.001}
BETAS = {"sampler.arch_beta1": 0.5, "sampler.arch_beta2": 0.999}
TAU = {"sampler.tau_max": 10.0, "sampler.tau_min": 0.1}
SPOS_CONFIG = {**NB201_SGD, "supernet.bn_policy": "track", "train.epochs": 250, "train.grad_clip": 0.0}
ABS_ROUND = {"shrink.mode": "global", "shrink.drop": 20, "shrink.min_ops": 1, "shrink.at_end": True,
             "shrink.max_rounds": 1}
OFFICIAL = {
    "abs-nb201-angle": {**SPOS_CONFIG, **ABS_ROUND, "sampler.name": "per-cell", "sampler.reject_empty_nodes": True,
                        "shrink.rule": "angle"},
    "abs-nb201-magnitude": {**SPOS_CONFIG, **ABS_ROUND, **ARCH_ADAM, **BETAS, "sampler.name": "uniform-alpha",
                            "shrink.rule": "magnitude"},
    "fewshot-nb201": {**NB201_SGD, "supernet.bn_policy": "batch", "train.epochs": 2100, "train.batch_size": 48,
                      "train.weight_decay": 0.0001, "train.grad_clip": 0.0, "sampler.name": "per-cell",
                      "sampler.reject_empty_nodes": False, "split.edges": [0], "split.at_epochs": 600.0,
                      "split.schedule": "fresh"},
    "nb201-rsps": {**NB201_SGD, "train.epochs": 250, "sampler.name": "uniform"},
    "nb201-darts-v1": {**NB201_SGD, **ARCH_ADAM, **BETAS, "train.epochs": 50, "sampler.name": "darts",
                       "sampler.unrolled": False},
    "nb201-darts-v2": {**NB201_SGD, **ARCH_ADAM, **BETAS, "train.epochs": 50, "sampler.name": "darts",
                       "sampler.unrolled": True},
    "nb201-gdas": {**NB201_SGD, **ARCH_ADAM, **BETAS, **TAU, "train.epochs": 250, "sampler.name": "gdas"},
    "nsas-nb201-rsps": {**NB201_SGD, "supernet.bn_policy": "track", "train.epochs": 250, "sampler.name": "nsas-g",
                        "sampler.diverse": "avoid-random", "sampler.w_current": 0.2, "sampler.w_random": 0.4,
                        "sampler.w_diverse": 0.4},
    "nsas-nb201-gdas": {**NB201_SGD, **ARCH_ADAM, **TAU, "supernet.bn_policy": "track", "train.epochs": 250,
                        "sampler.name": "gdas-nsas", "sampler.constraint": "random-diverse", "sampler.lam": 0.2,
                        "sampler.constraint_grad": False},
}


# overrides a preset needs beyond the shared CPU-size ones: the tiny image folder has 5 steps per epoch, so the
# few-shot split at 600 epochs becomes a split after one of the 3 steps
CPU_EXTRA = {"fewshot-nb201": ["split.at_epochs=0.2"]}


def stated(path: Path) -> dict:
    """The preset's "# official: KEY = VALUE" lines, values read as TOML."""
    out = {}
    for line in path.read_text().splitlines():
        m = re.match(r"#\s*official:\s*([\w.]+)\s*=\s*(\S+)", line)
        if m:
            out[m.group(1)] = tomllib.loads(f"v = {m.group(2)}")["v"]
    return out


def resolved(cfg, key: str):
    section, name = key.split(".")
    return cfg.sampler.get(name) if section == "sampler" else getattr(getattr(cfg, section), name)


def test_every_preset_is_in_the_table():
    assert sorted(p.stem for p in PRESETS.glob("*.toml")) == sorted(OFFICIAL)


@pytest.mark.parametrize("name", sorted(OFFICIAL))
def test_preset_states_and_resolves_to_the_official_hyper_parameters(name):
    path = PRESETS / f"{name}.toml"
    said = stated(path)
    assert sorted(said) == sorted(OFFICIAL[name])
    for key, value in OFFICIAL[name].items():
        assert said[key] == (value if isinstance(value, (list, str)) else pytest.approx(value)), key
    require_shared()  # resolving needs the data and table the preset names
    cfg = load_config(path)
    for key, value in OFFICIAL[name].items():
        assert resolved(cfg, key) == pytest.approx(value), key


@pytest.mark.parametrize("name", sorted(OFFICIAL))
def test_preset_runs_at_cpu_size(name, tmp_path, image_folder):
    gt = tmp_path / "gt.csv"
    gt.write_text("arch,cifar10valid_valid_200\n" + "".join(f"{a},{50 + 5 * i}\n" for i, a in enumerate(ARCHS)))
    cfg = load_config(PRESETS / f"{name}.toml", [
        f"data.train_path='{image_folder}'", "data.resolution=8", "data.valid_subset=0", "supernet.C=4",
        "supernet.N=1", "train.max_steps=3", "train.batch_size=12", "train.log_every=1", "run.device='cpu'",
        "estimate.archs='list'", f"estimate.arch_list={json.dumps(ARCHS)}", "estimate.batch_size=30",
        f"groundtruth.source='{gt}'", "metrics.bootstrap=20", f"data.cache_dir='{tmp_path / 'cache'}'",
        *CPU_EXTRA.get(name, [])])
    metrics = run_experiment(cfg, tmp_path / "run", progress=False)
    assert metrics["train"]["steps"] == 3 and metrics["ranking"]["n_archs"] == len(ARCHS)
    written = tomllib.loads((tmp_path / "run" / "config.toml").read_text())
    for key, value in OFFICIAL[name].items():  # what was not shrunk is still the official value
        section, field = key.split(".")
        if key not in ("supernet.C", "supernet.N", "train.batch_size") and not any(
                o.startswith(key + "=") for o in CPU_EXTRA.get(name, [])):
            assert written[section][field] == pytest.approx(value), key
