"""Ranking metrics: arrays in, floats out. ``est`` and ``gt`` are aligned 1-D arrays over architectures."""
from __future__ import annotations

import warnings
from typing import Callable

import numpy as np
from scipy import stats

TOP_K_PERCENTS = (1, 5, 10)


def _check(est, gt) -> tuple[np.ndarray, np.ndarray]:
    est, gt = np.asarray(est, dtype=float), np.asarray(gt, dtype=float)
    if est.shape != gt.shape or est.ndim != 1:
        raise ValueError(f"estimates and ground truth must be aligned 1-D arrays, got {est.shape} and {gt.shape}")
    if len(est) < 2:
        raise ValueError("ranking metrics need at least 2 architectures")
    if not (np.isfinite(est).all() and np.isfinite(gt).all()):
        raise ValueError("estimates and ground truth must be finite (found NaN or inf)")
    return est, gt


def _constant(est: np.ndarray, gt: np.ndarray) -> bool:
    # a correlation with a constant array is undefined: report NaN (JSON null) without scipy's warning
    return bool(np.ptp(est) == 0 or np.ptp(gt) == 0)


def undefined_last(score) -> np.ndarray:
    """``score`` with every undefined (non-finite) value replaced by one value below all others: an estimator's
    undefined scores rank last, tied (as a run scores them)."""
    score = np.asarray(score, dtype=float)
    undefined = ~np.isfinite(score)
    if not undefined.any():
        return score
    out = score.copy()
    out[undefined] = (score[~undefined].min() - 1.0) if (~undefined).any() else 0.0
    return out


def kendall_tau(est, gt) -> float:
    """Kendall tau-b (handles ties); NaN when either side is constant."""
    est, gt = _check(est, gt)
    return float("nan") if _constant(est, gt) else float(stats.kendalltau(est, gt, variant="b").statistic)


def spearman(est, gt) -> float:
    est, gt = _check(est, gt)
    return float("nan") if _constant(est, gt) else float(stats.spearmanr(est, gt).statistic)


def pearson(est, gt) -> float:
    est, gt = _check(est, gt)
    return float("nan") if _constant(est, gt) else float(stats.pearsonr(est, gt).statistic)


def top_k_count(n: int, percent: float) -> int:
    return max(1, int(round(n * percent / 100.0)))


def top_inclusion(values: np.ndarray, k: int) -> np.ndarray:
    """Probability that each item is among the ``k`` largest when ties are ordered at random.

    Items strictly above the k-th largest value are in (1), items below are out (0), and the group tied at the
    k-th value shares the remaining slots equally. No rule based on input order decides a tie: many
    architectures share an inherited-weight accuracy (60-84 distinct values among 150 in our CPU runs).
    """
    kth = np.sort(values)[::-1][k - 1]
    above, tied = values > kth, values == kth
    p = above.astype(float)
    p[tied] = (k - above.sum()) / tied.sum()
    return p


def precision_at_top(est, gt, percent: float) -> float:
    """Fraction of the estimator's top-``percent``% that are in the true top-``percent``%, in expectation over
    random orders of tied values on both sides: sum_i P(i in estimated top) * P(i in true top) / k."""
    est, gt = _check(est, gt)
    k = top_k_count(len(est), percent)
    return float(top_inclusion(est, k) @ top_inclusion(gt, k) / k)


def regret(est, gt) -> float:
    """True accuracy of the true best minus that of the estimator's top pick (>= 0); when several
    architectures share the top estimate, the expected regret of a uniformly random pick among them."""
    est, gt = _check(est, gt)
    return float(gt.max() - gt[est == est.max()].mean())


def kendall_tau_top(est, gt, percent: float = 10) -> float:
    """Kendall tau-b among the architectures in the true top-``percent``% (all of a tie at its boundary)."""
    est, gt = _check(est, gt)
    k = max(2, top_k_count(len(gt), percent))
    idx = np.flatnonzero(gt >= np.sort(gt)[::-1][k - 1])  # architectures tied at the boundary all count
    return kendall_tau(est[idx], gt[idx])


def metric_functions() -> dict[str, Callable[[np.ndarray, np.ndarray], float]]:
    fns: dict[str, Callable] = {"kendall_tau": kendall_tau, "spearman": spearman, "pearson": pearson}
    for p in TOP_K_PERCENTS:
        fns[f"precision_top{p}pct"] = lambda e, g, p=p: precision_at_top(e, g, p)
    fns["regret_top1"] = regret
    fns["kendall_tau_top10pct"] = lambda e, g: kendall_tau_top(e, g, 10)
    return fns


def bootstrap_ci(fn, est, gt, n_resamples: int = 1000, confidence: float = 0.95, seed: int = 0) -> tuple[float, float]:
    """Percentile bootstrap CI of ``fn(est, gt)``, resampling architectures in pairs."""
    est, gt = _check(est, gt)
    with warnings.catch_warnings():
        # small top-k sets make some resample distributions degenerate; the percentile CI is still valid
        warnings.simplefilter("ignore", stats.DegenerateDataWarning)
        res = stats.bootstrap((est, gt), lambda e, g: _nan_safe(fn, e, g), paired=True, vectorized=False,
                              n_resamples=n_resamples, confidence_level=confidence, method="percentile",
                              random_state=np.random.default_rng(seed))
    return float(res.confidence_interval.low), float(res.confidence_interval.high)


def _nan_safe(fn, e, g) -> float:
    # a resample can be degenerate (e.g. all-tied top set); count it as NaN, which scipy then ignores
    try:
        return fn(e, g)
    except ValueError:
        return float("nan")


def ranking_report(est, gt, n_resamples: int = 1000, confidence: float = 0.95, seed: int = 0) -> dict:
    """Every ranking metric with its bootstrap CI: ``{name: {"value", "ci_low", "ci_high"}}``."""
    est, gt = _check(est, gt)
    out = {}
    for name, fn in metric_functions().items():
        entry = {"value": fn(est, gt)}
        if n_resamples > 0:
            entry["ci_low"], entry["ci_high"] = bootstrap_ci(fn, est, gt, n_resamples, confidence, seed)
        out[name] = entry
    out["n_archs"] = int(len(est))
    return out
