"""Typed experiment configuration: TOML in, validated dataclasses, resolved TOML out.

Every key has a default here; unknown sections or keys are errors that list the valid ones.
``[sampler]`` holds ``name`` plus that strategy's own keyword options (checked against its
constructor). Override any key from the CLI with ``--set section.key=value`` (TOML value syntax).
"""
from __future__ import annotations

import dataclasses
import difflib
import inspect
import math
import sys
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import tomli_w

if sys.version_info >= (3, 11):
    import tomllib
else:  # pragma: no cover
    import tomli as tomllib


class ConfigError(ValueError):
    """A config file, key or value the harness cannot use."""


@dataclass
class RunSection:
    name: str = "run"
    seed: int = 0
    device: str = "auto"  # "auto" (CUDA when present), "cpu", "cuda", "cuda:1", ...
    trust_pickle: bool = False  # load pickled files unrestricted (harness/safeload.py); only for files you trust
    # CPU threads for torch in this run; 0 = as the caller set them (all cores for `run`, cores // workers for the
    # worker processes of `demo` and `regress`), so workers x threads never exceeds the cores
    threads: int = 0


@dataclass
class DataSection:
    train_path: str = ""  # zip/folder of class subfolders, or "cifar10:ROOT" (official python format)
    # where the held-out (validation) images come from: "train" = a split of the training set (NB201's cifar10-valid
    # protocol; split_file = cifar-split.txt); "test" = train on the whole training set, hold out the x-valid half
    # of the test set (NB201's cifar100 / ImageNet16-120 protocol; split_file = cifar100-test-split.txt or
    # imagenet-16-120-test-split.txt)
    holdout: str = "train"
    test_path: str = ""  # the test set with holdout = "test"; "" = train_path's test split (official formats only)
    split_file: str = ""  # NB201's split file (see holdout); only valid when the images keep the official order
    original_order: bool = False  # set true for the official CIFAR files
    split_seed: int = 0  # seed of the class-stratified 25k/25k fallback split
    resolution: int = 0  # 0 = native (32); smaller values downsample once (CPU-sized runs)
    train_subset: int = 0  # 0 = the whole training half; K = the first K of a seeded shuffle of it
    valid_subset: int = 0  # 0 = the whole held-out half for estimation; K = a seeded subset of K
    augment: bool = True  # NB201's random crop (padding 4) + horizontal flip; false for digits (a flip changes them)
    cache_dir: str = ""  # decoded-image cache; "" = $NB201_HARNESS_CACHE or ~/.cache/nb201-harness


@dataclass
class SupernetSection:
    C: int = 16
    N: int = 5
    num_classes: int = 10
    bn_policy: str = "batch"  # "batch" (NB201's BN=0) | "recalibrate" (SPOS) | "track" (NB201's BN=1)
    bn_affine: bool = False
    # which BN layers follow bn_policy and bn_affine: "cells" (NB201's search models, xautodl's
    # search_model_random.py: the cell ops; stem, reductions and the last BN keep running statistics and affine
    # parameters) or "cells+lastact" (NATS-Bench's GenericNAS201Model, generic_model.py: the last BN as well)
    bn_scope: str = "cells"


@dataclass
class TrainSection:
    epochs: float = 250.0  # NB201 RANDOM.config (xautodl configs/nas-benchmark/algos)
    max_steps: int = 0  # 0 = epochs * steps-per-epoch; otherwise an explicit step budget
    max_paths: int = 0  # > 0: a compute budget in forward/backward passes; steps = max_paths // the strategy's paths per step
    batch_size: int = 64
    lr: float = 0.025
    lr_min: float = 0.001
    momentum: float = 0.9
    nesterov: bool = True
    weight_decay: float = 5e-4
    grad_clip: float = 5.0
    log_every: int = 50
    checkpoint_every: int = 1000
    # ops off the sampled path: "skip" = gradients set to None, so SGD leaves them alone (PyTorch >= 2.0's
    # zero_grad); "zero" = gradients zeroed in place (PyTorch 1.x's, NB201's era), so once an op has had a
    # gradient, momentum and weight decay move it every step
    unsampled_ops: str = "skip"
    # how a step executes (not part of a run's identity): "eager" runs the plan's paths one by one through
    # Supernet.forward; "batched" through harness/batched.py (several paths per pass on CUDA), the same math
    engine: str = "eager"


@dataclass
class EstimateSection:
    archs: str = "all"  # "all" (15,625) | "unique" (6,466 non-isomorphic) | "sample" | "list" | "groundtruth" (all it holds)
    sample_size: int = 150
    sample_pool: str = "unique"  # where "sample" draws from: "unique" | "all"
    sample_seed: int = 0
    arch_list: list = field(default_factory=list)  # NB201 strings when archs = "list"
    batch_size: int = 256  # with bn_policy = "batch" the cell BNs normalise over each evaluation batch
    recalib_batches: int = 10  # training batches per architecture for bn_policy = "recalibrate"
    track_every: int = 0  # > 0: every this many training steps, score a probe set (tau vs training progress)
    track_archs: int = 50  # probe set: the first K of the estimated architectures
    # how estimation executes (not part of a run's identity): "batched" scores arch_batch architectures per forward
    # (harness/batched.py; 0 = 32 on CPU, 16 on CUDA; on CPU as many chunks at once as torch has threads, one thread
    # each: harness/estimate.py side_by_side), "eager" one at a time; the same numbers to float rounding
    engine: str = "batched"
    arch_batch: int = 0


@dataclass
class ForgettingSection:
    """Forgetting probes and decay tracers (harness/forgetting.py); 0 turns a part off."""

    probes: int = 16  # probe architectures, one per equal-count stratum of ground-truth accuracy (0 = no probes)
    probe_every: int = 0  # steps between probe measurements; 0 = spread probe_points evenly over the run
    probe_points: int = 20
    probe_images: int = 512  # held-out images the probes and tracers are scored on (the first, in stored order)
    probe_seed: int = 0  # which architecture of each stratum is the probe
    decay_tracers: int = 10  # decay tracers per run (0 = none)
    decay_every: int = 0  # steps between tracers; 0 = spread decay_tracers over the steps that can finish every lag
    decay_lags: list = field(default_factory=lambda: [1, 2, 5, 10, 20, 50, 100])  # steps after training


@dataclass
class ShrinkSection:
    """Search-space shrinking (harness/shrinkers, harness/phases.py); times are in epochs of the training split."""

    rule: str = "none"  # none | angle | accuracy | magnitude | weight-norm
    warmup_epochs: float = 50.0  # training on the whole space before the first round
    shrink_every: float = 25.0  # epochs between rounds
    mode: str = "per_edge"  # per_edge: each edge loses its `drop` lowest-scored ops a round; global: the `drop` lowest overall
    drop: int = 1
    min_ops: int = 2  # stop once every edge is down to this many ops (>= 1: an edge is never emptied)
    target_size: int = 0  # > 0: also stop once the space holds at most this many architectures
    score_images: int = 500  # held-out images (the first, in stored order) the accuracy rule scores child models on
    estimate_space: int = 1000  # after training also estimate up to this many non-isomorphic architectures of the final space
    options: dict = field(default_factory=dict)  # the rule's own keys ([shrink.options]), e.g. samples
    at_end: bool = False  # also a round right after the last training step (ABS: one global round after training)
    max_rounds: int = 0  # > 0: at most this many rounds


@dataclass
class SplitSection:
    """Reduced weight sharing: few-shot sub-supernets (harness/fewshot.py)."""

    edges: list = field(default_factory=list)  # edge indices 0..5 = 0->1, 0->2, 1->2, 0->3, 1->3, 2->3; [] = no split
    at_epochs: float = 0.0  # when to split (0 = before training)
    after_shrink: bool = False  # split right after the last shrink round instead
    # the optimizer across the split: "continue" = the schedule and momentum carry on (harness/fewshot.py);
    # "fresh" = the official few-shot protocol: one cosine schedule up to the split, then a new optimizer and a
    # new cosine schedule over the rest of the run
    schedule: str = "continue"


@dataclass
class SearchSection:
    """Differentiable strategies (darts, sd-darts, gdas, gdas-nsas; harness/samplers/differentiable.py): the
    search batches alpha is trained on, alpha's record during training and the sharpness measurements."""

    search_subset: int = 0  # alpha trains on the held-out images not kept for estimation; K > 0 = a seeded K of them
    batch_size: int = 0  # search batch size; 0 = [train] batch_size
    alpha_every: float = 1.0  # epochs between records of alpha (derived architecture, its true accuracy, parameter-free share)
    sharpness_every: float = 0.0  # epochs between measurements of the Hessian's top eigenvalue w.r.t. alpha; 0 = off
    sharpness_iters: int = 20  # power iterations at most (stops earlier at a relative change below 1e-3)
    sharpness_images: int = 256  # search images (the first, in stored order) the search loss is measured on


@dataclass
class GroundTruthSection:
    source: str = ""  # compact CSV table or official NAS-Bench-201-v1_*.pth
    dataset: str = "cifar10-valid"
    metric: str = "valid"
    epochs: int = 200
    seeds: str = "mean"


@dataclass
class MetricsSection:
    bootstrap: int = 1000
    confidence: float = 0.95


SECTIONS: dict[str, type] = {
    "run": RunSection, "data": DataSection, "supernet": SupernetSection, "train": TrainSection,
    "estimate": EstimateSection, "forgetting": ForgettingSection, "shrink": ShrinkSection, "split": SplitSection,
    "search": SearchSection, "groundtruth": GroundTruthSection, "metrics": MetricsSection,
}
ARCH_SETS = ("all", "unique", "sample", "list", "groundtruth")
UNSAMPLED_OPS = ("skip", "zero")


@dataclass
class Config:
    run: RunSection = field(default_factory=RunSection)
    data: DataSection = field(default_factory=DataSection)
    supernet: SupernetSection = field(default_factory=SupernetSection)
    train: TrainSection = field(default_factory=TrainSection)
    estimate: EstimateSection = field(default_factory=EstimateSection)
    forgetting: ForgettingSection = field(default_factory=ForgettingSection)
    shrink: ShrinkSection = field(default_factory=ShrinkSection)
    split: SplitSection = field(default_factory=SplitSection)
    search: SearchSection = field(default_factory=SearchSection)
    groundtruth: GroundTruthSection = field(default_factory=GroundTruthSection)
    metrics: MetricsSection = field(default_factory=MetricsSection)
    sampler: dict = field(default_factory=lambda: {"name": "uniform"})
    # what scores the architectures (harness/estimators): "supernet" trains one; any other skips training
    estimator: dict = field(default_factory=lambda: {"name": "supernet"})

    def to_dict(self) -> dict:
        return dataclasses.asdict(self)

    def to_toml(self) -> str:
        return tomli_w.dumps(self.to_dict())

    def identity(self, root: Path | None = None, digest: bool = False) -> dict:
        """What the experiment is: every key but :data:`EXECUTION_KEYS`. With ``root`` (a checkout), paths below it
        or beside it (``../shared/data``) are written relative to it, so the identity does not depend on where the
        checkout and its data live; with ``digest`` too, :data:`ADDED_KEYS` at their behaviour-preserving value
        are left out (a baseline's digest stays that of the runs it was recorded from)."""
        data = self.to_dict()
        for section, key in EXECUTION_KEYS:
            data[section].pop(key)
        if data["estimator"] == {"name": "supernet"}:  # added after runs and baselines were recorded
            data.pop("estimator")
        if root is not None:
            for section, key in PATH_KEYS:
                data[section][key] = relative_to_checkout(data[section][key], Path(root).resolve())
        if digest:
            for (section, key), value in ADDED_KEYS.items():
                if data[section][key] == value:
                    data[section].pop(key)
        return data

    def identity_toml(self, root: Path | None = None, digest: bool = False) -> str:
        """The TOML a run directory stores (``config.toml``, with the checkout as ``root``) and a rerun must match;
        see :meth:`identity`."""
        return tomli_w.dumps(self.identity(root, digest))


# keys that say how a run may execute, not what it computes: not part of its identity (config.toml, digests)
EXECUTION_KEYS = (("run", "trust_pickle"), ("run", "threads"), ("estimate", "engine"), ("estimate", "arch_batch"),
                  ("train", "engine"))
# keys added after baselines were recorded, with the default that reproduces the behaviour from before the key
# existed: at that value a digest omits them, so a recorded baseline stays valid (any other value changes it)
ADDED_KEYS = {("supernet", "bn_scope"): "cells", ("data", "holdout"): "train", ("data", "test_path"): "", ("train", "unsampled_ops"): "skip", ("shrink", "at_end"): False, ("shrink", "max_rounds"): 0,
              ("split", "schedule"): "continue"}
SPLIT_SCHEDULES = ("continue", "fresh")
ENGINES = ("batched", "eager")  # harness/batched.py or one path at a time ([estimate] engine, [train] engine)
# keys holding file paths: resolved against the config file's folder (overrides: the current directory)
PATH_KEYS = (("data", "train_path"), ("data", "test_path"), ("data", "split_file"), ("data", "cache_dir"), ("groundtruth", "source"))
_SCHEMES = ("cifar10", "cifar100", "imagenet16-120")  # "cifar10:ROOT": the path is ROOT
HOLDOUTS = ("train", "test")


def _split_scheme(value: str) -> tuple[str, str]:
    name, sep, rest = value.partition(":")
    if sep and (name == "builtin" or name.lower() in _SCHEMES):
        return name + ":", rest
    return "", value


def _resolve(value: str, base: Path) -> str:
    prefix, rest = _split_scheme(value)
    if not rest or prefix == "builtin:":
        return value
    path = Path(rest).expanduser()
    return prefix + str(path if path.is_absolute() else (base / path).resolve())


def relative_to_checkout(value: str, root: Path) -> str:
    """A data path as run directories store it: relative to the checkout ``root`` when it lies in it or beside it
    (``../shared/data/...``), so records do not depend on where a machine keeps them; other values unchanged."""
    prefix, rest = _split_scheme(value)
    if not rest or prefix == "builtin:" or not Path(rest).is_absolute():
        return value
    for up, base in enumerate((root, root.parent)):  # in the checkout, or beside it (../shared/data)
        if base == Path(base.anchor):  # a checkout at /: "beside it" would be everywhere
            continue
        try:
            return prefix + "../" * up + Path(rest).relative_to(base).as_posix()
        except ValueError:
            continue
    return value


def flat_keys(data: dict) -> dict[str, Any]:
    """``{"section.key": value}`` of a config dict (``[shrink.options]`` stays one value)."""
    return {f"{s}.{k}": v for s, values in data.items() for k, v in values.items()}


def differing_keys(a: dict, b: dict) -> list[str]:
    """The ``section.key`` names whose values differ between two config dicts, with both values."""
    fa, fb = flat_keys(a), flat_keys(b)
    return [f"{k} = {fa.get(k, '(absent)')!r} vs {fb.get(k, '(absent)')!r}" for k in sorted(set(fa) | set(fb))
            if fa.get(k) != fb.get(k)]


def _unknown(what: str, name: str, valid) -> ConfigError:
    close = difflib.get_close_matches(name, list(valid), n=1)
    hint = f" Did you mean {close[0]!r}?" if close else ""
    return ConfigError(f"unknown {what} {name!r}; valid: {', '.join(sorted(valid))}.{hint}")


def _coerce(section: str, key: str, value: Any, default: Any) -> Any:
    kind = type(default)
    if kind is float and isinstance(value, int) and not isinstance(value, bool):
        return float(value)
    if not isinstance(value, kind) or (kind is int and isinstance(value, bool)):
        raise ConfigError(f"[{section}] {key} = {value!r}: expected {kind.__name__} (default {default!r})")
    if kind is float and not math.isfinite(value):
        raise ConfigError(f"[{section}] {key} = {value!r}: expected a finite number")
    return value


# (section, key): (lowest, highest) allowed, None = unbounded; checked for every config before anything runs
RANGES: dict[tuple[str, str], tuple[float | None, float | None]] = {
    ("run", "seed"): (0, 2**32 - 1), ("run", "threads"): (0, 1024), ("data", "split_seed"): (0, 2**32 - 1),
    ("data", "resolution"): (0, None), ("data", "train_subset"): (0, None), ("data", "valid_subset"): (0, None),
    ("supernet", "C"): (1, None), ("supernet", "N"): (1, None), ("supernet", "num_classes"): (2, None),
    ("train", "epochs"): (0, None), ("train", "max_steps"): (0, None), ("train", "max_paths"): (0, None),
    ("train", "batch_size"): (1, None), ("train", "lr_min"): (0, None), ("train", "momentum"): (0, 0.999999),
    ("train", "weight_decay"): (0, None), ("train", "grad_clip"): (0, None), ("train", "log_every"): (1, None),
    ("train", "checkpoint_every"): (0, None),
    ("estimate", "sample_size"): (1, None), ("estimate", "sample_seed"): (0, 2**32 - 1),
    ("estimate", "batch_size"): (1, None), ("estimate", "recalib_batches"): (0, None),
    ("estimate", "track_every"): (0, None), ("estimate", "track_archs"): (2, None),
    ("estimate", "arch_batch"): (0, 4096),
    ("groundtruth", "epochs"): (1, None), ("metrics", "bootstrap"): (0, None),
}


def _check_ranges(cfg: "Config") -> None:
    for (section, key), (low, high) in RANGES.items():
        value = getattr(getattr(cfg, section), key)
        if (low is not None and value < low) or (high is not None and value > high):
            span = f">= {low}" if high is None else f"in {low}..{high}"
            raise ConfigError(f"[{section}] {key} = {value!r}: must be {span}")
    t, m = cfg.train, cfg.metrics
    if not t.lr > 0:
        raise ConfigError(f"[train] lr = {t.lr!r}: must be > 0")
    if t.lr_min > t.lr:
        raise ConfigError(f"[train] lr_min = {t.lr_min!r} is above lr = {t.lr!r}: the cosine schedule decays to lr_min")
    if t.unsampled_ops not in UNSAMPLED_OPS:
        raise ConfigError(f"[train] unsampled_ops = {t.unsampled_ops!r}; valid: {', '.join(UNSAMPLED_OPS)}")
    if t.nesterov and t.momentum == 0:
        raise ConfigError("[train] nesterov = true needs momentum > 0")
    if 0 < m.bootstrap < 20:
        raise ConfigError(f"[metrics] bootstrap = {m.bootstrap}: use 0 (no confidence intervals) or >= 20 resamples")
    if not 0 < m.confidence < 1:
        raise ConfigError(f"[metrics] confidence = {m.confidence!r}: must lie strictly between 0 and 1 (e.g. 0.95)")
    for section, key in (("estimate", "engine"), ("train", "engine")):
        if getattr(getattr(cfg, section), key) not in ENGINES:
            raise ConfigError(f"[{section}] {key} = {getattr(getattr(cfg, section), key)!r}; valid: {', '.join(ENGINES)}")
    if cfg.supernet.bn_policy == "recalibrate" and cfg.estimate.recalib_batches < 1:
        raise ConfigError("[estimate] recalib_batches must be >= 1 with [supernet] bn_policy = 'recalibrate'")


def check_device(name: str) -> None:
    if name == "auto":
        return
    import torch

    try:
        device = torch.device(name)
    except (RuntimeError, ValueError):
        raise ConfigError(f"[run] device = {name!r}: not a device name; use 'auto', 'cpu', 'cuda' or 'cuda:N'") from None
    if device.type not in ("cpu", "cuda"):
        raise ConfigError(f"[run] device = {name!r}: the harness runs on 'cpu' or 'cuda' ('auto' picks)")
    if device.type == "cuda":
        if not torch.cuda.is_available():
            raise ConfigError(f"[run] device = {name!r} but CUDA is not available; use 'auto' or 'cpu'")
        if device.index is not None and device.index >= torch.cuda.device_count():
            raise ConfigError(f"[run] device = {name!r} but only {torch.cuda.device_count()} CUDA device(s) exist")


def check_data_spec(spec: str, what: str) -> None:
    """ConfigError unless ``spec`` (builtin:NAME, cifar10:ROOT, a zip or folder) names something that exists."""
    prefix, rest = _split_scheme(spec)
    if prefix == "builtin:":
        from .builtin import BUILTINS

        if rest not in BUILTINS:
            raise ConfigError(f"{what} = {spec!r}: unknown built-in dataset; available: "
                              + ", ".join(f"builtin:{b}" for b in BUILTINS))
    elif rest and not Path(rest).expanduser().exists():
        raise ConfigError(f"{what}: {rest} does not exist")


def _check_paths(cfg: "Config") -> None:
    """Paths that must exist do (empty ones are reported by the command that needs them)."""
    d, g = cfg.data, cfg.groundtruth
    check_data_spec(d.train_path, "[data] train_path")
    if d.test_path:
        check_data_spec(d.test_path, "[data] test_path")
    for section, key, value in (("data", "split_file", d.split_file), ("groundtruth", "source", g.source)):
        if value and not Path(value).is_file():
            raise ConfigError(f"[{section}] {key}: {value} is not a file" + ("" if not Path(value).exists() else
                                                                           " (it is a directory)"))


def _build_section(name: str, values: dict) -> Any:
    cls = SECTIONS[name]
    defaults = cls()
    fields = {f.name for f in dataclasses.fields(cls)}
    kwargs = {}
    for key, value in values.items():
        if key not in fields:
            raise _unknown(f"key in [{name}]", key, fields)
        kwargs[key] = _coerce(name, key, value, getattr(defaults, key))
    return cls(**kwargs)


def _plugin(section: str, registry, options: dict, default: str) -> tuple[str, type, dict]:
    """``[section]``'s ``name`` (looked up in ``registry``) and the rest of its keys."""
    options = dict(options)
    name = options.pop("name", default)
    if not isinstance(name, str):
        raise ConfigError(f"[{section}] name = {name!r}: expected a string; valid: {', '.join(registry.names())}")
    try:
        return name, registry.get(name), options
    except KeyError as exc:
        raise ConfigError(f"[{section}] name: {exc.args[0]}") from None


def _validate_sampler(options: dict) -> dict:
    from .samplers import SAMPLERS

    name, cls, options = _plugin("sampler", SAMPLERS, options, "uniform")
    if "allowed" in options:  # the shrinkers' narrowed space, set by the harness, never by a config
        raise ConfigError("[sampler] allowed is set by search-space shrinking ([shrink]), not by the config")
    if "cells" in options and getattr(cls, "needs_cells", False):
        raise ConfigError(f"[sampler] cells is set by the harness ({name!r} draws one architecture per search cell: "
                          "3 x [supernet] N), not by the config")
    _check_options(f"[sampler] for sampler {name!r}", cls, options, internal=("allowed", "cells"))
    return {"name": name, **options}


def _validate_estimator(options: dict) -> dict:
    from .estimators import ESTIMATORS

    name, cls, options = _plugin("estimator", ESTIMATORS, options, "supernet")
    _check_options(f"[estimator] for estimator {name!r}", cls, options)
    return {"name": name, **options}


def _check_options(what: str, cls: type, options: dict, internal: tuple[str, ...] = ()) -> None:
    """Keyword options of a plugin, checked against its constructor (values are checked by constructing it);
    ``internal`` parameters are the harness's, not config keys."""
    params = inspect.signature(cls.__init__).parameters.values()
    valid = {p.name for p in params if p.name not in ("self", *internal)
             and p.kind not in (p.VAR_POSITIONAL, p.VAR_KEYWORD)}
    for key in options:
        if key not in valid:
            raise _unknown(f"key in {what}", key, valid or {"(none: this one takes no options)"})
    try:
        cls(**options)
    except (TypeError, ValueError) as exc:
        raise ConfigError(f"{what}: {exc}") from None


def _validate_shrink(sh: ShrinkSection, split: SplitSection) -> None:
    from .shrinkers import SHRINKERS
    from .shrinkers.base import SHRINK_MODES

    try:
        cls = SHRINKERS.get(sh.rule)
    except KeyError as exc:
        raise ConfigError(f"[shrink] rule: {exc.args[0]}") from None
    _check_options(f"[shrink.options] for rule {sh.rule!r}", cls, sh.options)
    if sh.mode not in SHRINK_MODES:
        raise ConfigError(f"[shrink] mode = {sh.mode!r}; valid: {', '.join(SHRINK_MODES)}")
    if sh.max_rounds < 0:
        raise ConfigError(f"[shrink] max_rounds = {sh.max_rounds}: must be >= 0 (0 = until min_ops/target_size)")
    if sh.drop < 1 or not 1 <= sh.min_ops <= 5 or sh.target_size < 0 or sh.estimate_space < 0 or sh.score_images < 1:
        raise ConfigError("[shrink] needs drop >= 1, min_ops in 1..5 (an edge keeps at least one op), "
                          "target_size >= 0, estimate_space >= 0 and score_images >= 1")
    if sh.warmup_epochs < 0 or sh.shrink_every <= 0:
        raise ConfigError("[shrink] needs warmup_epochs >= 0 and shrink_every > 0")
    edges = split.edges
    if len(set(edges)) != len(edges) or not all(isinstance(e, int) and not isinstance(e, bool) and 0 <= e <= 5
                                                for e in edges):
        raise ConfigError(f"[split] edges = {edges!r}: expected distinct edge indices 0..5 "
                          "(0->1, 0->2, 1->2, 0->3, 1->3, 2->3)")
    if split.at_epochs < 0:
        raise ConfigError("[split] at_epochs must be >= 0")
    if split.after_shrink and (sh.rule == "none" or not edges):
        raise ConfigError("[split] after_shrink needs [shrink] rule other than 'none' and [split] edges")
    if split.schedule not in SPLIT_SCHEDULES:
        raise ConfigError(f"[split] schedule = {split.schedule!r}; valid: {', '.join(SPLIT_SCHEDULES)}")
    if split.schedule == "fresh" and (not edges or split.after_shrink or split.at_epochs <= 0):
        raise ConfigError("[split] schedule = 'fresh' restarts the optimizer at a split it must know in advance: "
                          "it needs [split] edges, at_epochs > 0 and after_shrink = false")


def _validate(cfg: Config) -> Config:
    from .supernet import BN_POLICIES, BN_SCOPES

    if cfg.supernet.bn_policy not in BN_POLICIES:
        raise ConfigError(f"[supernet] bn_policy = {cfg.supernet.bn_policy!r}; valid: {', '.join(BN_POLICIES)}")
    if cfg.supernet.bn_scope not in BN_SCOPES:
        raise ConfigError(f"[supernet] bn_scope = {cfg.supernet.bn_scope!r}; valid: {', '.join(BN_SCOPES)}")
    if cfg.data.holdout not in HOLDOUTS:
        raise ConfigError(f"[data] holdout = {cfg.data.holdout!r}; valid: {', '.join(HOLDOUTS)} (where the held-out "
                          "images come from: a split of the training set, or the x-valid half of the test set)")
    if cfg.data.test_path and cfg.data.holdout != "test":
        raise ConfigError("[data] test_path is read only with holdout = 'test'; set holdout = 'test' or remove it")
    if cfg.data.holdout == "test" and cfg.data.train_path and not cfg.data.test_path \
            and not _split_scheme(cfg.data.train_path)[0]:
        raise ConfigError("[data] holdout = 'test' needs [data] test_path, the test set (a zip or folder of class "
                          "subfolders): only the official formats (cifar100:ROOT, imagenet16-120:ROOT) hold both splits")
    if cfg.estimate.archs not in ARCH_SETS:
        raise ConfigError(f"[estimate] archs = {cfg.estimate.archs!r}; valid: {', '.join(ARCH_SETS)}")
    if cfg.estimate.sample_pool not in ("unique", "all"):
        raise ConfigError(f"[estimate] sample_pool = {cfg.estimate.sample_pool!r}; valid: unique, all")
    _check_ranges(cfg)
    if cfg.estimate.archs == "list":
        from .space import parse_arch

        if not cfg.estimate.arch_list:
            raise ConfigError("[estimate] archs = 'list' needs arch_list = [NB201 strings]")
        for text in cfg.estimate.arch_list:
            try:
                parse_arch(text)
            except ValueError as exc:
                raise ConfigError(f"[estimate] arch_list: {exc}") from None
    check_device(cfg.run.device)
    _check_paths(cfg)
    if cfg.train.epochs <= 0 and cfg.train.max_steps <= 0 and cfg.train.max_paths <= 0:
        raise ConfigError("[train] needs epochs > 0, max_steps > 0 or max_paths > 0")
    if cfg.train.max_steps > 0 and cfg.train.max_paths > 0:
        raise ConfigError("[train] max_steps and max_paths are two budgets; set one of them (the other to 0)")
    f = cfg.forgetting
    if min(f.probes, f.probe_every, f.decay_every, f.decay_tracers, f.probe_seed) < 0 or min(f.probe_images, f.probe_points) < 1:
        raise ConfigError("[forgetting] probes, probe_every, decay_tracers, decay_every, probe_seed must be >= 0; "
                          "probe_images and probe_points >= 1")
    if not all(isinstance(lag, int) and not isinstance(lag, bool) and lag >= 1 for lag in f.decay_lags):
        raise ConfigError(f"[forgetting] decay_lags = {f.decay_lags!r}: expected a list of positive step counts")
    _validate_shrink(cfg.shrink, cfg.split)
    cfg.sampler = _validate_sampler(cfg.sampler)
    cfg.estimator = _validate_estimator(cfg.estimator)
    _validate_pairing(cfg)
    _validate_search(cfg)
    return cfg


def _validate_search(cfg: Config) -> None:
    from .samplers import SAMPLERS

    s, name = cfg.search, cfg.sampler["name"]
    if min(s.search_subset, s.batch_size, s.alpha_every, s.sharpness_every) < 0 or min(s.sharpness_iters,
                                                                                          s.sharpness_images) < 1:
        raise ConfigError("[search] search_subset, batch_size, alpha_every and sharpness_every must be >= 0; "
                          "sharpness_iters and sharpness_images >= 1")
    if not SAMPLERS.get(name).differentiable:
        if s.sharpness_every > 0:
            raise ConfigError(f"[search] sharpness_every needs a differentiable sampler (architecture parameters); "
                              f"{name!r} has none. Differentiable: {', '.join(differentiable_samplers())}")
        return
    if cfg.split.edges or (cfg.shrink.rule != "none" and not getattr(SAMPLERS.get(name), "shrinkable", False)):
        raise ConfigError(f"[sampler] name = {name!r} trains every op through alpha: [shrink] rule must be 'none' "
                          "and [split] edges empty")


def _validate_pairing(cfg: Config) -> None:
    """Strategies and shrinking rules that need each other (or cannot go together)."""
    from .samplers import SAMPLERS
    from .shrinkers import SHRINKERS

    sampler, rule = SAMPLERS.get(cfg.sampler["name"]), SHRINKERS.get(cfg.shrink.rule)
    if rule.needs_alpha and not getattr(sampler, "shrinkable", False):
        with_alpha = [n for n in SAMPLERS.names() if getattr(SAMPLERS.get(n), "shrinkable", False)]
        raise ConfigError(f"[shrink] rule = {cfg.shrink.rule!r} scores ops by architecture parameters trained "
                          f"jointly with the weights; use [sampler] name = {' or '.join(map(repr, with_alpha))} "
                          f"(not {cfg.sampler['name']!r}); the rule that scored ops by the L2 norm of their weights, "
                          "called 'magnitude' before, is now 'weight-norm'")


def differentiable_samplers() -> list[str]:
    from .samplers import SAMPLERS

    return [n for n in SAMPLERS.names() if SAMPLERS.get(n).differentiable]


def from_dict(data: dict) -> Config:
    kwargs = {}
    for name, values in data.items():
        if name in ("sampler", "estimator"):
            if not isinstance(values, dict):
                raise ConfigError(f"[{name}] must be a table")
            kwargs[name] = dict(values)
            continue
        if name not in SECTIONS:
            raise _unknown("config section", name, list(SECTIONS) + ["sampler", "estimator"])
        if not isinstance(values, dict):
            raise ConfigError(f"[{name}] must be a table, got {values!r}")
        kwargs[name] = _build_section(name, values)
    return _validate(Config(**kwargs))


def parse_override(text: str) -> tuple[str, str, Any]:
    """``section.key=value`` with a TOML value; bare words are taken as strings."""
    lhs, sep, rhs = text.partition("=")
    section, dot, key = lhs.strip().partition(".")
    if not sep or not dot or not section or not key:
        raise ConfigError(f"--set {text!r}: expected section.key=value, e.g. train.max_steps=200")
    try:
        value = tomllib.loads(f"v = {rhs.strip()}")["v"]
    except tomllib.TOMLDecodeError:
        value = rhs.strip()
    return section, key, value


def _resolve_paths(data: dict, base: Path) -> None:
    for section, key in PATH_KEYS:
        values = data.get(section)
        if isinstance(values, dict) and isinstance(values.get(key), str):
            values[key] = _resolve(values[key], base)


def load_config(path: str | Path | None, overrides: list[str] = ()) -> Config:
    """The validated config of TOML file ``path`` (None: the defaults) with ``--set`` overrides applied.

    Relative paths in the file resolve against the file's folder, those in overrides against the current
    directory; every value is checked here, so a bad config fails before anything is written."""
    data: dict = {}
    if path is not None:
        path = Path(path)
        if not path.is_file():
            raise ConfigError(f"config file {path} not found" if not path.exists() else f"config {path} is not a file")
        try:
            data = tomllib.loads(path.read_text(encoding="utf-8"))
        except tomllib.TOMLDecodeError as exc:
            raise ConfigError(f"{path}: not valid TOML: {exc}") from None
        except UnicodeDecodeError as exc:
            raise ConfigError(f"{path}: not UTF-8 text (byte {exc.start}); TOML files must be UTF-8") from None
        except OSError as exc:
            raise ConfigError(f"{path}: cannot read: {exc.strerror}") from None
        _resolve_paths(data, path.resolve().parent)
    extra: dict = {}
    for text in overrides:
        section, key, value = parse_override(text)
        extra.setdefault(section, {})[key] = value
    _resolve_paths(extra, Path.cwd())
    for section, values in extra.items():
        if not isinstance(data.get(section, {}), dict):
            raise ConfigError(f"[{section}] must be a table, got {data[section]!r}")
        data.setdefault(section, {}).update(values)
    return from_dict(data)
