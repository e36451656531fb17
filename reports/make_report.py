"""Write a report directory from finished runs: the comparison (tables + PNG/SVG plots) and a README.

    python reports/make_report.py RUN_DIR... --out DIR --title TITLE --command CMD --wall-seconds S

Everything in the README is generated from the run directories and the arguments; the reading of the
numbers ("what they mean") is derived from the numbers themselves, so a regenerated report stays true.
"""
from __future__ import annotations

import argparse
import re
import json
import os
import platform
from pathlib import Path

import numpy as np
import torch
from scipy import stats

from harness.config import relative_to_checkout
from harness.compare import load_run, runs_table, strategy_table, to_markdown, write_report
from harness.groundtruth import GTQuery, TableGroundTruth, load_ground_truth
from harness.io import write_text
from harness.metrics import kendall_tau
from harness.runner import ROOT
from harness.suite import holm_adjusted

MEANING = """\
- **Kendall tau / Spearman**: rank agreement between the supernet's inherited-weight accuracy and the stand-alone
  ground truth over the estimated architectures (1 = same order, 0 = unrelated, -1 = reversed).
- **P@top-5%**: of the ground truth's top 5% architectures, the fraction the estimator also puts in its top 5%.
- **regret**: accuracy points lost by picking the estimator's top-1 architecture instead of the true best one.
- Intervals: 95% percentile bootstrap over architectures for one run; mean ± std when a strategy has several seeds.
"""

AGAINST_MEANING = """\
- Against `{ref}`: Welch's t-test of Kendall tau over seeds, Holm-adjusted over all the strategies compared with
  it (one family), so a difference is called only when the adjusted p is below 0.05.
"""

FORGETTING_MEANING = """\
- **mean_forgetting**: mean change in a forgetting probe's accuracy (points, on fixed probe images) between
  consecutive probe points at which that probe was not trained; positive = forgotten, negative = it improved
  anyway because the weights it shares were trained on other architectures. **final_probe_tau**: Kendall tau
  of the probes' accuracies against their ground truth at the end of training.
"""

SHRINK_MEANING = """\
- **Shrinking** (`+angle`, `+accuracy`, `+weight-norm`, `+magnitude`): after a warm-up (in ABS's regime: once,
  after training) the rule scores every alive op on every edge and removes the lowest-scored each round (per edge,
  or globally); the sampler then trains only the alive space.
  **space_size**: architectures left. **top1pct_retained / top5pct_retained**: the fraction of NB201's true top 1% /
  5% architectures (of all 15,625) still in the final space. **space_regret**: best true accuracy overall minus
  the best inside the final space (points). **op_score_tau**: Kendall tau, at the first round, between the
  rule's op scores and the ops' true importance (mean true accuracy of the architectures using the op).
  **tau_in_space**: Kendall tau of the supernet's estimates within the final space (its non-isomorphic
  architectures). That set is smaller and more alike than the full sample, so this tau is not comparable with
  the full-space one. The full-space metrics (kendall_tau etc.) rank the same 150 architectures for every
  strategy, including those a shrinker removed.
- **few-shot**: the supernet is split into 5 sub-supernets on one edge, one per op there. Each owns a copy of
  the weights and trains and estimates only its architectures, at the same total number of steps.
"""

ALPHA_MEANING = """\
- **Differentiable strategies** (`darts`, `gdas`, `sd-darts`, `gdas-nsas`) have two estimators. The table's
  kendall_tau etc. are the **inherited-weight** accuracy of each architecture's single path, as for `uniform`.
  **alpha_tau / alpha_spearman** rank the same architectures by the **alpha-score**, the sum over edges of
  log-softmax(alpha) of the architecture's ops. **derived_acc** is the true NB201 accuracy of the derived
  architecture (argmax alpha per edge) at the end. **parameter_free** is its share of none/skip/pool edges,
  which is DARTS's known collapse on NB201. **sharpness_last** is the dominant Hessian eigenvalue of the search
  loss with respect to alpha at the end (power iteration; the largest eigenvalue, not the largest in magnitude).
  SD-DARTS claims flatter minima than DARTS, so a smaller value.
"""

REFERENCE_POINTS = """\
**Published reference points** (NB201 CIFAR-10 with full-size supernet training, far beyond this CPU budget):
one-shot SPOS reaches Kendall tau about 0.49-0.54, few-shot NAS with 5 sub-supernets about 0.55-0.61, and
PWSNAS's angle metric about 0.58. The runs here train a C=8, N=2 supernet at 16x16 for 3,000 steps, about 8
epochs, so their absolute taus are not comparable with those. Only the differences between strategies at
equal budget are evidence, and only where they exceed the seed-to-seed spread.
"""


def _mean_std(values: np.ndarray) -> str:
    values = values[np.isfinite(values)]
    if not len(values):
        return "n/a"
    return f"{values.mean():.3f}" + (f" ± {values.std(ddof=1):.3f}" if len(values) > 1 else "")


def _shrink_reading(records) -> str:
    """One line per shrinking strategy: what was left, how many top architectures survived, how well the rule's
    op scores matched the truth; then a plain statement of which rule kept the most and whether it helped tau."""
    runs = runs_table(records)
    if "space_size" not in runs.columns:
        return ""
    lines, kept = [], {}
    for name, g in runs[runs["space_size"].notna()].groupby("strategy", sort=True):
        kept[name] = float(g["top5pct_retained"].mean())
        lines.append(f"- `{name}` ({len(g)} runs): final space {int(g['space_size'].median())} architectures; "
                     f"true top 1% kept {_mean_std(g['top1pct_retained'].to_numpy(float))}, top 5% kept "
                     f"{_mean_std(g['top5pct_retained'].to_numpy(float))}; space regret "
                     f"{_mean_std(g['space_regret'].to_numpy(float))} points; op-score tau at round 1 "
                     f"{_mean_std(g['op_score_tau'].to_numpy(float))}; tau within the space "
                     f"{_mean_std(g['tau_in_space'].to_numpy(float))}.")
    if not kept:
        return ""
    best = max(kept, key=kept.get)
    share = float(runs.loc[runs["strategy"] == best, "space_size"].median()) / 15625
    head = (f"**Shrinking.** `{best}` kept the most of the true top 5% ({kept[best]:.3f} of it, in a space holding "
            f"{share:.1%} of all architectures; a random space of that size would keep about {share:.1%}).")
    scored = runs[runs["space_size"].notna()].groupby("strategy")["op_score_tau"].mean().dropna()
    if len(scored) and scored.idxmax() != best:
        top = scored.idxmax()
        head += (f" The op scores that agreed best with the ops' true importance were `{top}`'s (tau "
                 f"{scored[top]:.3f} at round 1), yet it kept {kept[top]:.3f} of the top 5%: pooled over edges, "
                 "ordering the ops well is not what decides which architectures survive; removing the wrong op "
                 "on every edge at once is.")
    return head + "\n\n" + "\n".join(lines) + "\n\n"


def _noise_floor(metrics: dict) -> str:
    """The ground truth's own seed-to-seed Kendall tau over the same architectures, when the table keeps seeds."""
    gt_info = metrics["ground_truth"]
    try:
        source = gt_info["source"]  # relative to the checkout (harness.config.relative_to_checkout) or absolute
        gt = load_ground_truth(source if ":" in source or Path(source).is_absolute() else str(ROOT / source))
    except (OSError, ValueError):
        return ""
    if not isinstance(gt, TableGroundTruth):
        return ""
    seeds = gt.seed_values(GTQuery.from_key(gt_info["query"]))
    if len(seeds) < 2:
        return ""
    a, b = list(seeds.values())[:2]
    return (f"- The ground truth itself: two training seeds of the same stand-alone networks agree with Kendall "
            f"tau {kendall_tau(a, b):.3f} over its {len(a)} architectures. That is the ceiling of what any "
            "estimator can show against a single seed, and the noise floor of this benchmark.\n")


def _verdict(v: float, lo: float, hi: float) -> str:
    if v != v:  # NaN
        return "is undefined (the estimates are constant)"
    if lo == lo and lo > 0:
        return "is positive with its whole 95% CI above 0: the ranking is better than random"
    if hi == hi and hi < 0:
        return "is negative with its whole 95% CI below 0: the ranking is reversed"
    return "has a 95% CI that includes 0: not distinguishable from a random ranking"


def _welch_vs_reference(groups: dict[str, np.ndarray], ref_name: str) -> dict[str, tuple[float, float]]:
    """Welch's t-test over seeds of each strategy's Kendall tau against the reference strategy's: raw p and its
    Holm-adjusted value over all the strategies compared (one family: "does any strategy differ from uniform?").
    Tested: strategies with at least 2 seeds, when the reference has at least 2, whose test is defined (a NaN p,
    from constant or undefined taus, is left out of the family, not counted as a tested non-difference)."""
    ref = groups[ref_name]
    raw = {s: float(stats.ttest_ind(t, ref, equal_var=False).pvalue) for s, t in groups.items()
           if s != ref_name and len(t) >= 2 and len(ref) >= 2}
    raw = {s: p for s, p in raw.items() if np.isfinite(p)}
    return dict(zip(raw, zip(raw.values(), holm_adjusted(list(raw.values())))))


def _p(p: float) -> str:
    return f"{p:.2g}" if p < 0.01 else f"{p:.2f}"


def _against_reference(name: str, taus: np.ndarray, ref_name: str, ref: np.ndarray,
                       tested: dict[str, tuple[float, float]]) -> str:
    """How a strategy's seeds compare with the reference strategy's (``tested``: :func:`_welch_vs_reference`)."""
    diff = float(taus.mean() - ref.mean())
    if len(taus) < 2 or len(ref) < 2:
        return f"{diff:+.3f} against `{ref_name}` (one seed: no seed-to-seed spread to judge it by)"
    if name not in tested:
        return f"{diff:+.3f} against `{ref_name}` (Welch's t-test undefined: constant or undefined taus; not tested)"
    p, adjusted = tested[name]
    if adjusted < 0.05:
        judged = "a difference larger than the seed-to-seed spread (Holm-adjusted p < 0.05)"
    elif p < 0.05:
        judged = f"not a demonstrated difference after Holm over the {len(tested)} comparisons (adjusted p >= 0.05)"
    else:
        judged = "within the seed-to-seed spread (p >= 0.05): not a demonstrated difference"
    return (f"{diff:+.3f} against `{ref_name}`, Welch's t-test over seeds p = {_p(p)}, Holm-adjusted over the "
            f"{len(tested)} strategies compared with `{ref_name}` p = {_p(adjusted)}: {judged}")


def _summary(records, reference: str = "uniform") -> str:
    """The plain-language paragraph: best strategy, which differences from the reference strategy (``uniform``
    unless the report names another) exceed the seed spread, and whether the ranking signal is strong enough at
    this budget to separate strategies at all."""
    ref_name = reference
    runs = runs_table(records)
    groups = {s: g["kendall_tau"].to_numpy(dtype=float) for s, g in runs.groupby("strategy", sort=True)}
    if len(groups) < 2:
        return ""
    means = {s: float(t.mean()) for s, t in groups.items()}
    best = max(means, key=means.get)
    text = [f"**In short.** The highest mean Kendall tau is `{best}`'s, {means[best]:.3f}"]
    tested = _welch_vs_reference(groups, ref_name) if ref_name in groups else {}
    if tested:
        test = (f"Welch's t-test over seeds, Holm-adjusted over the {len(tested)} comparisons with `{ref_name}`, "
                "p < 0.05")
        differ = [s for s, (_, adjusted) in tested.items() if adjusted < 0.05]
        raw_only = [s for s, (p, adjusted) in tested.items() if p < 0.05 <= adjusted]
        if differ:
            text.append(f"; {', '.join(f'`{s}`' for s in differ)} {'differs' if len(differ) == 1 else 'differ'} from `{ref_name}` ({means[ref_name]:.3f}) by more "
                        f"than the seed-to-seed spread ({test}), the others do not")
        else:
            text.append(f"; no strategy differs from `{ref_name}` ({means[ref_name]:.3f}) by more than the "
                        f"seed-to-seed spread ({test} for none), so this run does not show that any strategy ranks "
                        f"better or worse than {'uniform sampling' if ref_name == 'uniform' else f'`{ref_name}`'}")
        if raw_only:
            text.append(f" ({', '.join(f'`{s}`' for s in raw_only)}: p < 0.05 before the correction only, "
                        f"{'not a demonstrated difference' if len(raw_only) == 1 else 'not demonstrated differences'}"
                        f" among {len(tested)} tests)")
        untested = [s for s in groups if s != ref_name and s not in tested]
        if untested:
            text.append(f"; not tested (one seed, or an undefined test): {', '.join(f'`{s}`' for s in untested)}")
    if means[best] < 0.3:
        text.append(f". Every strategy's ranking is weak here (mean tau at most {means[best]:.2f}): at this budget the "
                    "supernet's inherited-weight accuracies carry little of the ground truth's order, so small "
                    "differences between strategies are mostly noise; a larger budget or scale is needed to separate them")
    return "".join(text) + ".\n\n"


def _reading(records, reference: str = "uniform") -> str:
    """One line per strategy: the tau (with its CI or seed spread), then its standing against the reference
    strategy, then what its forgetting probes measured."""
    runs = runs_table(records)
    groups = {s: g for s, g in runs.groupby("strategy", sort=True)}
    ref_name = reference if reference in groups else None
    tested = (_welch_vs_reference({s: g["kendall_tau"].to_numpy(float) for s, g in groups.items()}, ref_name)
              if ref_name else {})
    lines = []
    for name, g in groups.items():
        taus = g["kendall_tau"].to_numpy(dtype=float)
        if len(g) == 1:
            row = g.iloc[0]
            text = (f"- `{name}` (seed {row['seed']}): Kendall tau {taus[0]:.3f} "
                    f"{_verdict(taus[0], row['kendall_tau_ci_low'], row['kendall_tau_ci_high'])}")
        else:
            above = int((g["kendall_tau_ci_low"] > 0).sum())
            text = (f"- `{name}` ({len(g)} seeds): Kendall tau {taus.mean():.3f} ± {taus.std(ddof=1):.3f} "
                    f"(mean ± std over seeds; {above} of {len(g)} runs have their whole 95% CI above 0)")
        if ref_name and name != ref_name:
            text += "; " + _against_reference(name, taus, ref_name, groups[ref_name]["kendall_tau"].to_numpy(float),
                                              tested)
        if "mean_forgetting" in g.columns and g["mean_forgetting"].notna().any():
            f = g["mean_forgetting"].to_numpy(dtype=float)
            sign = ("probes lost accuracy between probe points where they were not trained" if f.mean() > 0 else
                    "probes gained accuracy between probe points where they were not trained: training the "
                    "shared weights on other architectures helped them more than it hurt")
            text += f"; mean forgetting {f.mean():+.2f} points ({sign})"
        lines.append(text + ".")
    return "\n".join(lines) + "\n"


def _alpha_reading(records) -> str:
    """What the alpha estimators, the derived architectures and the sharpness show, derived from the numbers."""
    runs = runs_table(records)
    if "alpha_tau" not in runs.columns:
        return ""
    searched = runs[runs["alpha_tau"].notna() | runs["parameter_free"].notna()]
    lines = ["**The differentiable strategies, beyond inherited weights.**"]
    best = max((r.alpha["derived"].get("best_known") or float("nan") for r in records if r.alpha), default=float("nan"))
    for name, g in searched.groupby("strategy", sort=True):
        at, it = g["alpha_tau"].to_numpy(float), g["kendall_tau"].to_numpy(float)
        acc, pf = g["derived_acc"].to_numpy(float), g["parameter_free"].to_numpy(float)
        derived = ("are not in the ground-truth table" if np.isnan(acc).all() else
                   f"have true accuracy {np.nanmean(acc):.2f}% (per seed: {', '.join(f'{a:.2f}' for a in acc)}; "
                   f"best in the space {best:.2f}%)")
        text = (f"- `{name}` ({len(g)} seed{'s' if len(g) > 1 else ''}): the alpha-score ranks with Kendall tau "
                f"{np.nanmean(at):.3f}, against {it.mean():.3f} for its own inherited weights. Its final derived "
                f"architectures {derived}, with {pf.mean() * 100:.0f}% parameter-free edges")
        if "sharpness_last" in g.columns and g["sharpness_last"].notna().any():
            text += f"; final sharpness {np.nanmean(g['sharpness_last'].to_numpy(float)):.3f}"
        lines.append(text + ".")
    groups = {s: g["sharpness_last"].to_numpy(float) for s, g in searched.groupby("strategy")}
    if "darts" in groups and "sd-darts" in groups and min(len(groups["darts"]), len(groups["sd-darts"])) >= 2:
        d, sd = groups["darts"], groups["sd-darts"]
        p = float(stats.ttest_ind(sd, d, equal_var=False).pvalue)
        lines.append(f"- SD-DARTS's claim of a flatter search loss: final sharpness {sd.mean():.3f} ± {sd.std(ddof=1):.3f} "
                     f"for `sd-darts` against {d.mean():.3f} ± {d.std(ddof=1):.3f} for `darts` (Welch's t-test over "
                     f"seeds p = {p:.2f}): " + ("a difference larger than the seed spread." if p < 0.05 else
                                                 "not a difference this run can demonstrate."))
    return "\n".join(lines) + "\n\n"


def _details(run_dir: Path) -> str:
    m = json.loads((run_dir / "metrics.json").read_text())
    if "train" not in m:  # an estimator run (harness/estimators): nothing trained
        est, env = m["estimator"], m["environment"]
        net = est.get("network", {})
        return (f"- `{run_dir.name}`: estimator `{est['name']}` {json.dumps(est.get('options', {}))} on the stand-alone "
                f"network C={net.get('C')}, N={net.get('N')}, {net.get('resolution')}x{net.get('resolution')}; "
                f"{m['estimate']['n_archs']} architectures in {est['seconds']:.1f} s "
                f"({est['seconds_per_arch']:.3g} s each, {est.get('undefined', 0)} undefined); torch {env['torch']} on "
                f"{env['device']}, git {env['git_revision']}\n")
    t, e, s, env = m["train"], m["estimate"], m["supernet"], m["environment"]
    return (f"- `{run_dir.name}`: supernet C={s['C']}, N={s['N']} ({s['parameters']:,} parameters, BN `{s['bn_policy']}`); "
            f"{t['steps']} training steps ({t.get('paths', t['steps'])} forward/backward passes) in {t['seconds']:.1f} s; "
            f"{e['n_archs']} architectures estimated on "
            f"{e['held_out_images']} held-out images in {e['seconds']:.1f} s; torch {env['torch']} on {env['device']}, "
            f"git {env['git_revision']}\n")


def render(records, run_dirs, args) -> str:
    first = json.loads((run_dirs[0] / "metrics.json").read_text())
    gt = first["ground_truth"]
    shrinking = any(r.shrink for r in records) or any("few-shot" in r.strategy for r in records)
    labels = {r.strategy for r in records}
    compared = args.reference in labels and len(labels) > 1
    plots = "".join(f"![{name}]({name}.png)\n\n" for name in ("correlations", "scatter", "tau_vs_progress", "forgetting_probe_acc",
                                                                 "forgetting_drop", "forgetting_probe_tau", "shrink_retention",
                                                                 "shrink_alive", "shrink_scores", "alpha_search", "tau_vs_cost",
                                                                 "rank_agreement")
                    if (Path(args.out) / f"{name}.png").exists())
    return f"""# {args.title}

Generated by `{args.command}` (do not edit: rerun the command).

- machine: {platform.platform()}, {os.cpu_count()} CPU cores, torch {torch.__version__}
- wall time of the command: {args.wall_seconds:.0f} s
{f"- {args.note}" + chr(10) if args.note else ""}- ground truth: `{gt['query']}` ({gt['metric']} accuracy after {gt['epochs']} epochs, {gt['seeds']} over seeds) from `{relative_to_checkout(gt['source'], ROOT)}`

## Ranking quality per strategy

{to_markdown(strategy_table(records))}
Per-run tables: [summary.md](summary.md), [compare.csv](compare.csv).

## What the numbers mean

{MEANING}{AGAINST_MEANING.format(ref=args.reference) if compared else ''}{FORGETTING_MEANING if any(r.forgetting for r in records) else ''}{SHRINK_MEANING if shrinking else ''}{ALPHA_MEANING if any(r.alpha for r in records) else ''}
{_summary(records, args.reference)}{_reading(records, args.reference)}{_noise_floor(first)}
{_shrink_reading(records)}{_alpha_reading(records)}{REFERENCE_POINTS if shrinking else ''}
## Plots

{plots}## Runs

{''.join(_details(d) for d in run_dirs)}"""


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("run_dirs", nargs="+", type=Path)
    p.add_argument("--out", required=True)
    p.add_argument("--title", required=True)
    p.add_argument("--command", required=True, help="the command that regenerates the report")
    p.add_argument("--wall-seconds", type=float, required=True)
    p.add_argument("--note", default="", help="one line on how the runs were made, shown under the machine")
    p.add_argument("--reference", default=None,
                   help="the strategy (label) every other is tested against, Welch over seeds with Holm over them "
                        "(default: uniform, where the report has it)")
    p.add_argument("--label-by-run-name", action="store_true",
                   help="label each run by its directory name less -seedN (the make.sh variant), not its strategy")
    args = p.parse_args()
    records = [load_run(d) for d in args.run_dirs]
    if args.label_by_run_name:  # the report's own variant names (runs/VARIANT-seedN), e.g. two regimes of one rule
        for r in records:
            r.strategy = re.sub(r"-seed\d+$", "", r.path.name)
    labels = sorted({r.strategy for r in records})
    if args.reference is not None and args.reference not in labels:
        p.error(f"--reference {args.reference!r} is not one of the report's strategies: {', '.join(labels)}")
    args.reference = args.reference or "uniform"
    write_report(records, args.out)
    write_text(Path(args.out) / "README.md", render(records, args.run_dirs, args))


if __name__ == "__main__":
    main()
