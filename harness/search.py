"""What a differentiable run records besides its supernet: alpha during training (the derived architecture, so
collapse towards parameter-free ops is visible), the sharpness of the search loss with respect to alpha, and
after training the alpha-score of every architecture.

Run-directory files (:func:`search_report`, after training)::

    alpha.csv          step, epoch, derived (NB201 string), parameter_free, ground_truth, p_e{edge}_{op} ...
    sharpness.csv      step, epoch, eigenvalue, iterations, images
    alpha_scores.csv   all 15,625 architectures: arch, space_index (base-5 order of harness.space), nb201_index
                       (NB201's own index, from the ground truth; empty where it has none), alpha_score, rank,
                       ground_truth
"""
from __future__ import annotations

from pathlib import Path
from typing import Sequence

import numpy as np
import pandas as pd
import torch
import torch.nn.functional as F

from .alpha import alpha_score, check_alpha, derived_arch, dominant_eigenvalue, op_probabilities, \
    parameter_free_fraction, rank_by_score
from .io import write_csv
from .metrics import kendall_tau, ranking_report, spearman
from .space import Arch, all_archs


def search_loss_fn(model, batches: Sequence[tuple[torch.Tensor, torch.Tensor]]):
    """``loss(alpha)``: the mean cross-entropy of the mixed-op supernet (softmax(alpha) weights) on ``batches``,
    in training mode as alpha is trained (batch statistics); BN running statistics are left untouched."""

    def loss(alpha: torch.Tensor) -> torch.Tensor:
        total = sum(F.cross_entropy(model.forward_weighted(x, alpha.softmax(-1)), y, reduction="sum")
                    for x, y in batches)
        return total / sum(len(y) for _, y in batches)

    return loss


def sharpness(model, alpha: torch.Tensor, batches, iters: int, seed: int) -> tuple[float, int]:
    """Top Hessian eigenvalue of the search loss w.r.t. alpha at the current weights (power iteration)."""
    saved = {k: b.clone() for k, b in model.named_buffers()}
    was_training = model.training
    model.train()
    try:
        return dominant_eigenvalue(search_loss_fn(model, batches), alpha, iters, torch.Generator().manual_seed(seed))
    finally:
        with torch.no_grad():
            for k, b in model.named_buffers():
                b.copy_(saved[k])
        model.train(was_training)


class AlphaMonitor:
    """Records alpha every ``alpha_every`` steps and the sharpness every ``sharpness_every`` steps (0 = never),
    from step 0 on; a :class:`harness.train.Monitor`, so its time is not training time."""

    def __init__(self, sampler, model, steps_per_epoch: int, alpha_every: int, sharpness_every: int,
                 sharpness_batches=(), sharpness_iters: int = 20, seed: int = 0):
        self.sampler, self.model, self.spe = sampler, model, steps_per_epoch
        self.alpha_every, self.sharpness_every = alpha_every, sharpness_every
        self.batches, self.iters, self.seed = list(sharpness_batches), sharpness_iters, seed
        self.alpha_rows: list[dict] = []
        self.sharpness_rows: list[dict] = []
        self.after_step(0, [])

    def after_step(self, step: int, archs: list[Arch]) -> bool:
        if self.alpha_every > 0 and step % self.alpha_every == 0:
            self.alpha_rows.append(alpha_row(self.sampler.alpha, step, self.spe))
        if self.sharpness_every > 0 and step % self.sharpness_every == 0:
            value, used = sharpness(self.model, self.sampler.alpha, self.batches, self.iters, self.seed + step)
            self.sharpness_rows.append({"step": step, "epoch": step / self.spe, "eigenvalue": value,
                                        "iterations": used, "images": sum(len(y) for _, y in self.batches)})
            return True
        return False

    def finish(self, step: int) -> None:
        """Record the final alpha (and sharpness) if the schedule did not fall on the last step."""
        if not self.alpha_rows or self.alpha_rows[-1]["step"] != step:
            self.alpha_rows.append(alpha_row(self.sampler.alpha, step, self.spe))
        if self.sharpness_every > 0 and self.sharpness_rows[-1]["step"] != step:
            every, self.sharpness_every = self.sharpness_every, step or 1
            self.after_step(step, [])
            self.sharpness_every = every

    def state_dict(self) -> dict:
        return {"alpha_rows": self.alpha_rows, "sharpness_rows": self.sharpness_rows}

    def load_state_dict(self, state: dict) -> None:
        self.alpha_rows, self.sharpness_rows = list(state["alpha_rows"]), list(state["sharpness_rows"])


def alpha_row(alpha, step: int, steps_per_epoch: int) -> dict:
    arch = derived_arch(alpha)
    return {"step": step, "epoch": step / steps_per_epoch, "derived": arch.to_str(),
            "parameter_free": parameter_free_fraction(arch),
            **{f"p_{k}": v for k, v in op_probabilities(alpha).items()}}


class MonitorGroup:
    """Several monitors as one (the training loop takes one)."""

    def __init__(self, monitors):
        self.monitors = [m for m in monitors if m is not None]

    def after_step(self, step: int, archs: list[Arch]) -> bool:
        return any([m.after_step(step, archs) for m in self.monitors])  # a list: every monitor runs

    def state_dict(self) -> dict:
        return {"monitors": [m.state_dict() for m in self.monitors]}

    def load_state_dict(self, state: dict) -> None:
        for m, s in zip(self.monitors, state["monitors"]):
            m.load_state_dict(s)


def alpha_table(alpha_rows: list[dict], truth_many) -> pd.DataFrame:
    """alpha.csv: the alpha records with the derived architecture's true accuracy (``truth_many(archs)``: NaN
    where the ground truth lacks it)."""
    frame = pd.DataFrame(alpha_rows)
    frame.insert(4, "ground_truth", truth_many([Arch.from_str(s) for s in frame["derived"]]))
    return frame


def alpha_scores(alpha, truth_many, nb201_index=lambda arch: None) -> pd.DataFrame:
    """alpha_scores.csv: every architecture of the space, its alpha-score and rank (1 = best; ties by the base-5
    ``space_index``). ``nb201_index(arch)`` is NB201's own index (the ground truth's; None where unknown): NB201
    numbers architectures in its own order, not base 5, so the two agree for almost no architecture."""
    archs = all_archs()
    idx = np.array([a.index for a in archs])
    scores = alpha_score(alpha, np.asarray(archs, dtype=np.int64))
    official = pd.array([nb201_index(a) for a in archs], dtype="Int64")
    return pd.DataFrame({"arch": [a.to_str() for a in archs], "space_index": idx, "nb201_index": official,
                         "alpha_score": scores, "rank": rank_by_score(scores, idx), "ground_truth": truth_many(archs)})


def alpha_block(alpha, scores: pd.DataFrame, estimated: Sequence[Arch], truth: np.ndarray, records: pd.DataFrame,
                sharp: pd.DataFrame, bootstrap: int, confidence: float, seed: int) -> dict:
    """The ``alpha`` block of metrics.json."""
    by_arch = scores.set_index("arch")["alpha_score"]
    est = by_arch.loc[[a.to_str() for a in estimated]].to_numpy()
    known = scores.dropna(subset=["ground_truth"])
    final = records.iloc[-1]
    return {
        "estimator": "alpha-score: sum over edges of log-softmax(alpha)[edge, op]",
        "alpha": check_alpha(alpha).round(6).tolist(),
        "ranking": ranking_report(est, truth, bootstrap, confidence, seed),
        "all_known": {"n_archs": len(known),
                      "kendall_tau": kendall_tau(known["alpha_score"].to_numpy(), known["ground_truth"].to_numpy()),
                      "spearman": spearman(known["alpha_score"].to_numpy(), known["ground_truth"].to_numpy())},
        "derived": {"arch": final["derived"], "ground_truth": _float(final["ground_truth"]),
                    "parameter_free_fraction": float(final["parameter_free"]),
                    "best_known": _float(known["ground_truth"].max()) if len(known) else None},
        "derived_by_epoch": [{k: _float(v) if k == "ground_truth" else v for k, v in row.items()} for row in
                             records[["epoch", "derived", "ground_truth", "parameter_free"]].to_dict("records")],
        "sharpness": None if sharp.empty else {
            "first": float(sharp["eigenvalue"].iloc[0]), "last": float(sharp["eigenvalue"].iloc[-1]),
            "max": float(sharp["eigenvalue"].max()), "n": len(sharp)},
    }


def _float(x) -> float | None:
    return None if x is None or not np.isfinite(x) else float(x)


def search_report(out: Path, saved: dict | None, gt, query, archs: Sequence[Arch], truth: np.ndarray, metrics_cfg,
                  seed: int) -> dict | None:
    """Write alpha.csv, sharpness.csv and alpha_scores.csv into the run directory ``out`` from what training saved
    (``saved``: alpha and the monitor's rows); returns the ``alpha`` block of metrics.json (None for strategies
    without alpha)."""
    if saved is None:
        return None
    known = set(gt.archs())

    def truth_many(todo: Sequence[Arch]) -> np.ndarray:
        inside = [a for a in todo if a in known]
        values = dict(zip(inside, gt.query_many(inside, query, allow_missing=True))) if inside else {}
        return np.array([values.get(a, np.nan) for a in todo], dtype=float)

    records = alpha_table(saved["alpha_rows"], truth_many)
    sharp = pd.DataFrame(saved["sharpness_rows"], columns=["step", "epoch", "eigenvalue", "iterations", "images"])
    index = {a: gt.nb201_index(a) for a in known}
    scores = alpha_scores(saved["alpha"], truth_many, index.get)
    write_csv(out / "alpha.csv", records)
    write_csv(out / "alpha_scores.csv", scores)
    if not sharp.empty:
        write_csv(out / "sharpness.csv", sharp)
    return alpha_block(saved["alpha"], scores, archs, truth, records, sharp, metrics_cfg.bootstrap,
                       metrics_cfg.confidence, seed)
