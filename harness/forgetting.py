"""Multi-model forgetting: probe architectures and decay tracers measured during supernet training.

A training step on one architecture changes weights that other architectures share. Two measurements
show what that does to them, both with the current shared weights on a fixed set of held-out images
(BN statistics recomputed per architecture under ``recalibrate``, exactly as in estimation):

* **Probes** -- a fixed set of P architectures (seeded, one from each of P equal-count strata of the
  ground-truth accuracy of the estimated architectures), scored every ``probe_every`` steps and at the end.
  ``probes.csv``: step, arch, loss, acc (%), ground_truth (%), trained (how many times the probe was
  itself trained since its previous row: any path of a plan counts, constraint paths included).
* **Decay tracers** -- every ``decay_every`` steps (see :func:`schedule`) the architecture just trained (the plan's first path,
  the strategy's current architecture) is scored right after that step and again ``lag`` steps later
  for each of ``decay_lags``. ``decay.csv``: trained_step, arch, lag, step, loss, acc, retrained (times it
  was trained again since trained_step). Only tracers that can finish every lag are started.

Derived metrics (pure functions of those tables, see :func:`summarise`; drops are in accuracy points,
positive = forgotten):

* mean forgetting: over probes and pairs of probe rows with no training of that probe between them,
  the mean of acc(earlier) - acc(later), as a function of the interval length; the headline number is
  the mean over consecutive rows (interval = probe_every);
* decay curve: mean over tracers of acc(right after training) - acc(lag steps later), per lag;
* probe tau: Kendall tau of the probes' accuracy against ground truth at each probe step.

Weight sharing also transfers: early in training, untrained probes improve, so forgetting is negative.
"""
from __future__ import annotations

import random
from typing import Callable, Sequence

import numpy as np
import pandas as pd

from .metrics import kendall_tau
from .space import Arch

Evaluate = Callable[[Sequence[Arch]], list[tuple[float, float]]]  # archs -> [(loss, acc %)]
PROBE_COLUMNS = ["step", "arch", "loss", "acc", "ground_truth", "trained"]
DECAY_COLUMNS = ["trained_step", "arch", "lag", "step", "loss", "acc", "retrained"]


def schedule(cfg, steps: int) -> tuple[int, int]:
    """(probe_every, decay_every) in steps for a run of ``steps`` from a ``[forgetting]`` section; 0 = off.

    Zero in the config means "spread evenly": ``probe_points`` measurements over the run, and
    ``decay_tracers`` tracers over the steps from which a tracer can still reach its longest lag.
    """
    probe_every = 0
    if cfg.probes > 0:
        probe_every = cfg.probe_every or max(1, steps // cfg.probe_points)
    decay_every = 0
    room = steps - max(cfg.decay_lags, default=steps)
    if cfg.decay_tracers > 0 and cfg.decay_lags and room >= 1:
        decay_every = cfg.decay_every or max(1, room // cfg.decay_tracers)
    return probe_every, decay_every


def choose_probes(archs: Sequence[Arch], truth: Sequence[float], n: int, rng: random.Random) -> list[int]:
    """Indices of ``n`` architectures: one drawn from each of ``n`` equal-count strata of ``truth``,
    lowest stratum first."""
    if not 0 < n <= len(archs):
        raise ValueError(f"cannot choose {n} probes from {len(archs)} architectures")
    order = np.argsort(np.asarray(truth, dtype=float), kind="stable")
    return [int(stratum[rng.randrange(len(stratum))]) for stratum in np.array_split(order, n)]


class ForgettingMonitor:
    """The training loop's :class:`~harness.train.Monitor`; ``evaluate`` scores architectures on the probe images."""

    def __init__(self, evaluate: Evaluate, probes: Sequence[Arch], truth: Sequence[float], probe_every: int,
                 decay_every: int, decay_lags: Sequence[int], total_steps: int):
        if any(lag < 1 for lag in decay_lags):
            raise ValueError(f"decay_lags must be positive step counts, got {list(decay_lags)}")
        self.evaluate = evaluate
        self.probes, self.truth = list(probes), dict(zip(probes, map(float, truth)))
        self.probe_every, self.decay_every, self.total = probe_every, decay_every, total_steps
        self.lags = sorted(set(int(lag) for lag in decay_lags))
        self.probe_rows: list[dict] = []
        self.decay_rows: list[dict] = []
        self.trained_ = {a: 0 for a in self.probes}  # per probe, trainings since its last row
        self.tracers_: list[dict] = []  # live: {"arch", "trained_step", "retrained"}

    def _due_probes(self, step: int) -> bool:
        return bool(self.probes) and self.probe_every > 0 and (step % self.probe_every == 0 or step == self.total)

    def after_step(self, step: int, archs: list[Arch]) -> bool:
        for arch in archs:
            if arch in self.trained_:
                self.trained_[arch] += 1
            for tracer in self.tracers_:
                tracer["retrained"] += tracer["arch"] == arch
        if self.lags and self.decay_every > 0 and step % self.decay_every == 0 and step + self.lags[-1] <= self.total:
            self.tracers_.append({"arch": archs[0], "trained_step": step, "retrained": 0})
        due = [t for t in self.tracers_ if step - t["trained_step"] in (0, *self.lags)]
        todo = ([*self.probes] if self._due_probes(step) else []) + [t["arch"] for t in due]
        if not todo:
            return False
        scores = self.evaluate(todo)
        if self._due_probes(step):
            for arch, (loss, acc) in zip(self.probes, scores):
                self.probe_rows.append({"step": step, "arch": arch.to_str(), "loss": loss, "acc": acc,
                                        "ground_truth": self.truth[arch], "trained": self.trained_[arch]})
                self.trained_[arch] = 0
        for tracer, (loss, acc) in zip(due, scores[len(todo) - len(due):]):
            self.decay_rows.append({"trained_step": tracer["trained_step"], "arch": tracer["arch"].to_str(),
                                    "lag": step - tracer["trained_step"], "step": step, "loss": loss, "acc": acc,
                                    "retrained": tracer["retrained"]})
        self.tracers_ = [t for t in self.tracers_ if step - t["trained_step"] < self.lags[-1]] if self.lags else []
        return True

    def frames(self) -> tuple[pd.DataFrame, pd.DataFrame]:
        return (pd.DataFrame(self.probe_rows, columns=PROBE_COLUMNS),
                pd.DataFrame(self.decay_rows, columns=DECAY_COLUMNS))

    def state_dict(self) -> dict:
        return {"probe_rows": self.probe_rows, "decay_rows": self.decay_rows,
                "trained": [[list(a), n] for a, n in self.trained_.items()],
                "tracers": [dict(t, arch=list(t["arch"])) for t in self.tracers_]}

    def load_state_dict(self, state: dict) -> None:
        self.probe_rows, self.decay_rows = list(state["probe_rows"]), list(state["decay_rows"])
        self.trained_ = {Arch(a): n for a, n in state["trained"]}
        self.tracers_ = [dict(t, arch=Arch(t["arch"])) for t in state["tracers"]]


# ---- derived metrics: tables in, tables/floats out ----------------------------------------------------

def forgetting_pairs(probes: pd.DataFrame) -> pd.DataFrame:
    """arch, start, interval, drop, consecutive: acc(start) - acc(start + interval) for every pair of rows
    of the same probe with no training of that probe in between (``consecutive``: adjacent rows)."""
    out = []
    for arch, rows in probes.sort_values("step").groupby("arch", sort=False):
        steps, acc, trained = (rows[c].to_numpy() for c in ("step", "acc", "trained"))
        cum = np.cumsum(trained)  # trainings in (steps[i], steps[j]] = cum[j] - cum[i]
        for i in range(len(steps)):
            for j in np.flatnonzero(cum[i + 1:] == cum[i]) + i + 1:
                out.append((arch, int(steps[i]), int(steps[j] - steps[i]), float(acc[i] - acc[j]), j == i + 1))
    return pd.DataFrame(out, columns=["arch", "start", "interval", "drop", "consecutive"])


def aggregate_drops(drops: pd.DataFrame, by: str) -> pd.DataFrame:
    """``by``, mean_drop, std_drop, n (and retrained_fraction when ``drops`` has ``retrained``) per value of
    ``by``: pools rows from :func:`forgetting_pairs` or :func:`decay_drops`, of one run or several seeds."""
    columns = [by, "mean_drop", "std_drop", "n"] + (["retrained_fraction"] if "retrained" in drops.columns else [])
    if drops.empty:
        return pd.DataFrame(columns=columns)
    g = drops.groupby(by)
    out = pd.DataFrame({"mean_drop": g["drop"].mean(), "std_drop": g["drop"].std(ddof=1), "n": g.size()})
    if "retrained" in drops.columns:
        out["retrained_fraction"] = g["retrained"].apply(lambda r: float((r > 0).mean()))
    return out.reset_index()[columns]


def forgetting_by_interval(probes: pd.DataFrame) -> pd.DataFrame:
    """interval (steps), mean_drop, std_drop, n over :func:`forgetting_pairs`."""
    return aggregate_drops(forgetting_pairs(probes), "interval")


def decay_drops(decay: pd.DataFrame) -> pd.DataFrame:
    """trained_step, arch, lag, drop, retrained: per tracer and lag, acc right after training minus acc
    ``lag`` steps later."""
    if decay.empty:
        return pd.DataFrame(columns=["trained_step", "arch", "lag", "drop", "retrained"])
    base = decay[decay["lag"] == 0].set_index(["trained_step", "arch"])["acc"]
    later = decay[decay["lag"] > 0].join(base.rename("acc0"), on=["trained_step", "arch"])
    later = later.assign(drop=later["acc0"] - later["acc"])
    return later[["trained_step", "arch", "lag", "drop", "retrained"]].reset_index(drop=True)


def decay_curve(decay: pd.DataFrame) -> pd.DataFrame:
    """lag (steps), mean_drop, std_drop, n, retrained_fraction (of tracers trained again within the lag)."""
    return aggregate_drops(decay_drops(decay), "lag")


def probe_tau(probes: pd.DataFrame) -> pd.DataFrame:
    """step, kendall_tau: the probes' accuracy against their ground truth at each probe step."""
    rows = []
    for step, g in probes.groupby("step"):
        tau = kendall_tau(g["acc"].to_numpy(), g["ground_truth"].to_numpy()) if len(g) > 1 else float("nan")
        rows.append({"step": int(step), "kendall_tau": tau})
    return pd.DataFrame(rows, columns=["step", "kendall_tau"])


def summarise(probes: pd.DataFrame, decay: pd.DataFrame) -> dict:
    """The ``forgetting`` block of metrics.json."""
    pairs = forgetting_pairs(probes)
    consecutive = pairs.loc[pairs["consecutive"].astype(bool), "drop"]
    tau = probe_tau(probes)
    return {
        "n_probes": int(probes["arch"].nunique()) if not probes.empty else 0,
        "mean_forgetting": float(consecutive.mean()) if len(consecutive) else None,
        "forgetting_by_interval": forgetting_by_interval(probes).to_dict("records"),
        "decay": decay_curve(decay).to_dict("records"),
        "probe_tau": tau.to_dict("records"),
        "final_probe_tau": float(tau["kendall_tau"].iloc[-1]) if len(tau) else None,
    }
