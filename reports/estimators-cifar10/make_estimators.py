"""Writes the estimators report (README.md, table/, tau.png/svg) from finished runs; make.sh calls it.

    python reports/estimators-cifar10/make_estimators.py --runs DIR --supernets DIR --naslib JSON --out DIR \
        --wall-seconds S --command CMD

- ``--runs``: one run per estimator and seed (``NAME-seedS``), all over the same architectures.
- ``--full-runs``: some of those estimators again on NB201's full network, over the same architectures.
- ``--supernets``: supernet runs whose architectures are the first ones of ``--runs`` (checked; an error if not).
- ``--naslib``: the file naslib_agreement.py wrote (our estimators against NASLib's recorded scores).

Every number in the README comes from these inputs, and so does each verdict. A difference between two
estimators is reported as one only when its paired bootstrap CI excludes 0 and every seed agrees on its sign.
"""
from __future__ import annotations

import argparse
import json
import platform
import sys
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
import torch  # noqa: E402
from scipy import stats  # noqa: E402

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT))
from harness.compare import load_run, write_report  # noqa: E402
from harness.io import write_text  # noqa: E402
from harness.metrics import precision_at_top, regret, undefined_last  # noqa: E402

RESAMPLES = 1000
REFERENCES = ("params", "nb201-12ep")  # every estimator is tested against these two
# Abdelfattah et al. 2021 (ICLR), NB201 CIFAR-10, all 15,625 architectures, NB201's network (C=16, N=5, 32x32):
# the values the issue quotes. vote's figure is zero-cost-nas's share of architecture pairs ordered right, not a
# Spearman (see docs/methods.md).
PUBLISHED = {"synflow": "0.74", "jacob_cov": "0.73", "vote": "0.82 (pairs)"}
KIND = {"params": "baseline", "flops": "baseline", "random": "baseline (the floor)", "nb201-12ep": "NB201 12-epoch table"}


def fail(message: str) -> None:
    sys.exit(f"make_estimators.py: {message}")


def load(dirs: list[Path]) -> dict[str, list]:
    """{strategy: [RunRecord sorted by seed]}"""
    groups: dict[str, list] = {}
    for d in dirs:
        r = load_run(d)
        groups.setdefault(r.strategy, []).append(r)
    return {k: sorted(v, key=lambda r: r.seed) for k, v in groups.items()}


def scores(record, n: int) -> np.ndarray:
    """The first ``n`` estimates of a run, undefined ones ranked last and tied, as the run's own metrics do."""
    return undefined_last(record.estimates["estimate"].to_numpy()[:n])


def taus_on(records, idx: np.ndarray, n: int) -> np.ndarray:
    """Kendall tau of each seed's estimates on architectures ``idx`` (rows 0..n-1 of estimates.csv) for every
    bootstrap resample: shape (seeds, RESAMPLES + 1); column 0 is the sample itself."""
    out = np.empty((len(records), RESAMPLES + 1))
    for i, r in enumerate(records):
        est = scores(r, n)
        gt = r.estimates["ground_truth"].to_numpy()[:n]
        for b in range(RESAMPLES + 1):
            j = np.arange(n) if b == 0 else idx[b - 1]
            out[i, b] = stats.kendalltau(est[j], gt[j]).statistic if np.ptp(est[j]) > 0 else 0.0
    return out


def verdict(a: np.ndarray, b: np.ndarray) -> tuple[float, float, float, str]:
    """Mean-over-seeds tau of a minus that of b, its 95% paired bootstrap CI (the same resampled architectures
    for both) and the verdict."""
    diff = a.mean(axis=0) - b.mean(axis=0)
    lo, hi = np.percentile(diff[1:], [2.5, 97.5])
    per_seed = [x - y for x in a[:, 0] for y in b[:, 0]]  # every pair of seeds
    if lo > 0 and min(per_seed) > 0:
        word = "higher"
    elif hi < 0 and max(per_seed) < 0:
        word = "lower"
    else:
        word = "no demonstrated difference"
    return float(diff[0]), float(lo), float(hi), word


def pm(values) -> str:
    values = np.asarray(values, dtype=float)
    return f"{values.mean():.3f} ± {values.std(ddof=1):.3f}" if len(values) > 1 else f"{values[0]:.3f}"


def cost(records) -> str:
    c = [r.cost["seconds_per_arch"] for r in records if r.cost]
    if not c:
        return "n/a"
    m = float(np.mean(c))
    return f"{m:.2g}" if m >= 1e-3 else f"{m:.1e}"


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--runs", type=Path, required=True)
    p.add_argument("--full-runs", type=Path, required=True)
    p.add_argument("--supernets", type=Path, required=True)
    p.add_argument("--naslib", type=Path, required=True)
    p.add_argument("--out", type=Path, required=True)
    p.add_argument("--wall-seconds", type=float, required=True)
    p.add_argument("--command", required=True)
    args = p.parse_args()

    est = load(sorted(d for d in args.runs.iterdir() if d.is_dir()))
    sup = load(sorted(d for d in args.supernets.iterdir() if d.is_dir()))
    full = load(sorted(d for d in args.full_runs.iterdir() if d.is_dir()))
    archs = next(iter(est.values()))[0].estimates["arch"].tolist()
    n_all = len(archs)
    for group in est.values():
        for r in group:
            if r.estimates["arch"].tolist() != archs:
                fail(f"{r.path} scores other architectures than the other estimator runs")
    n_sub = len(next(iter(sup.values()))[0].estimates)
    for group in sup.values():
        for r in group:
            if r.estimates["arch"].tolist() != archs[:n_sub]:
                fail(f"{r.path}: its architectures are not the first {n_sub} of the estimator runs'")
    for group in full.values():
        for r in group:
            if r.estimates["arch"].tolist() != archs:
                fail(f"{r.path} scores other architectures than the estimator runs")
    for r in [r for g in (*est.values(), *sup.values(), *full.values()) for r in g]:
        if r.estimates["ground_truth"].to_numpy().tolist() != est[next(iter(est))][0].estimates["ground_truth"].to_numpy()[:len(r.estimates)].tolist():
            fail(f"{r.path} has another ground truth")
    seeds = sorted({r.seed for g in est.values() for r in g})

    rng = np.random.default_rng(0)
    idx_all = rng.integers(0, n_all, size=(RESAMPLES, n_all))
    idx_sub = rng.integers(0, n_sub, size=(RESAMPLES, n_sub))
    t_all = {k: taus_on(v, idx_all, n_all) for k, v in est.items()}
    t_full = {k: taus_on(v, idx_all, n_all) for k, v in full.items()}
    t_sub = {k: taus_on(v, idx_sub, n_sub) for k, v in est.items()}
    t_sub.update({k: taus_on(v, idx_sub, n_sub) for k, v in sup.items()})

    def spearman(records, n):
        return [stats.spearmanr(scores(r, n), r.estimates["ground_truth"][:n]).statistic for r in records]

    naslib = json.loads(args.naslib.read_text())["estimators"]
    order = sorted(est, key=lambda k: -t_all[k][:, 0].mean())
    lines = []
    lines.append("| estimator | kind | Kendall tau | Spearman | published Spearman | P@top-5% | regret (points) | s / arch "
                 "| undefined | vs params | vs nb201-12ep |")
    lines.append("|---|---|---|---|---|---|---|---|---|---|---|")
    verdicts = {}
    for k in order:
        rs = est[k]
        e = [scores(r, n_all) for r in rs]
        g = rs[0].estimates["ground_truth"].to_numpy()
        undefined = max(int(np.isnan(r.estimates["estimate"]).sum()) for r in rs)  # per run
        cells = []
        for ref in REFERENCES:
            if ref == k or ref not in t_all:
                cells.append("")
                continue
            d, lo, hi, word = verdict(t_all[k], t_all[ref])
            verdicts[(k, ref)] = (d, lo, hi, word)
            cells.append(f"{d:+.3f} [{lo:+.3f}, {hi:+.3f}] {word}")
        lines.append(f"| {k} | {KIND.get(k, 'zero-cost proxy')} | {pm(t_all[k][:, 0])} | {pm(spearman(rs, n_all))} "
                     f"| {PUBLISHED.get(k, '')} | {pm([precision_at_top(x, g, 5) for x in e])} "
                     f"| {pm([regret(x, g) for x in e])} | {cost(rs)} | {undefined} "
                     f"| {cells[0]} | {cells[1]} |")
    table_all = "\n".join(lines)

    lines = ["| estimator or strategy | Kendall tau on the 150 | Kendall tau on all 1,000 | s / arch | vs params (on the 150) |",
             "|---|---|---|---|---|"]
    sub_verdicts = {}
    for k in sorted(t_sub, key=lambda k: -t_sub[k][:, 0].mean()):
        d, lo, hi, word = verdict(t_sub[k], t_sub["params"]) if k != "params" else (0, 0, 0, "")
        sub_verdicts[k] = (d, lo, hi, word)
        label = k if k in est else f"supernet, `{k}`"
        rs = est.get(k) or sup[k]
        lines.append(f"| {label} | {pm(t_sub[k][:, 0])} | {pm(t_all[k][:, 0]) if k in t_all else ''} | {cost(rs)} | "
                     + (f"{d:+.3f} [{lo:+.3f}, {hi:+.3f}] {word}" if k != "params" else "") + " |")
    table_sub = "\n".join(lines)

    lines = ["| estimator | Kendall tau | Spearman | published Spearman | s / arch | Kendall tau at the CPU size "
             "| vs params (full network) |", "|---|---|---|---|---|---|---|"]
    full_verdicts = {}
    for k in sorted(full, key=lambda k: -t_full[k][:, 0].mean()):
        cell = ""
        if k != "params" and "params" in t_full:
            d, lo, hi, word = full_verdicts[k] = verdict(t_full[k], t_full["params"])
            cell = f"{d:+.3f} [{lo:+.3f}, {hi:+.3f}] {word}"
        lines.append(f"| {k} | {pm(t_full[k][:, 0])} | {pm(spearman(full[k], n_all))} | {PUBLISHED.get(k, '')} "
                     f"| {cost(full[k])} | {pm(t_all[k][:, 0]) if k in t_all else ''} | {cell} |")
    table_full = "\n".join(lines)
    full_said = " ".join(f"{k}'s Spearman here is {np.mean(spearman(full[k], n_all)):.3f}; the published value is {PUBLISHED[k]}."
                         for k in full if k in PUBLISHED)

    lines = ["| estimator | Kendall tau [95% CI] | Spearman [95% CI] | NASLib's tau | Spearman with NASLib's scores | s / arch |",
             "|---|---|---|---|---|---|"]
    for k, row in sorted(naslib.items(), key=lambda kv: -kv[1]["kendall_tau"]["value"]):
        kt, sp = row["kendall_tau"], row["spearman"]
        nl = f"{row['naslib_kendall_tau']:.3f}" if "naslib_kendall_tau" in row else "n/a"
        ag = f"{row['spearman_with_naslib']:.3f}" if "spearman_with_naslib" in row else "n/a"
        lines.append(f"| {k} | {kt['value']:.3f} [{kt['ci_low']:.2f}, {kt['ci_high']:.2f}] | {sp['value']:.3f} "
                     f"[{sp['ci_low']:.2f}, {sp['ci_high']:.2f}] | {nl} | {ag} | {row['seconds_per_arch']:.2g} |")
    table_naslib = "\n".join(lines)

    # one figure: tau per estimator (1,000 architectures) and per estimator/strategy on the 150
    fig, axes = plt.subplots(1, 2, figsize=(12, 6), sharex=True)
    for ax, t, title in ((axes[0], t_all, f"{n_all} architectures (estimators)"),
                         (axes[1], t_sub, f"the first {n_sub} (estimators and supernets)")):
        names = sorted(t, key=lambda k: t[k][:, 0].mean())
        means = [t[k][:, 0].mean() for k in names]
        sds = [t[k][:, 0].std(ddof=1) if len(t[k]) > 1 else 0 for k in names]
        ax.barh(names, means, xerr=sds, color=["tab:orange" if k in sup else "tab:blue" for k in names])
        ax.axvline(0, color="k", lw=0.8)
        ax.set_title(title)
        ax.set_xlabel("Kendall tau with cifar10-valid 200-epoch accuracy (mean ± std over seeds)")
    fig.tight_layout()
    for fmt in ("png", "svg"):
        fig.savefig(args.out / f"tau.{fmt}", dpi=120)
    plt.close(fig)

    table_dir = args.out / "table"
    write_report([r for g in est.values() for r in g], table_dir)

    def said(word_of):
        return ", ".join(f"`{k}` ({d:+.3f} [{lo:+.3f}, {hi:+.3f}])" for k, (d, lo, hi, w) in word_of) or "none"

    above = [(k, v) for (k, ref), v in verdicts.items() if ref == "params" and v[3] == "higher"]
    below = [(k, v) for (k, ref), v in verdicts.items() if ref == "params" and v[3] == "lower"]
    same = [k for (k, ref), v in verdicts.items() if ref == "params" and v[3] == "no demonstrated difference"]
    above12 = [(k, v) for (k, ref), v in verdicts.items() if ref == "nb201-12ep" and v[3] == "higher"]
    sup_vs = [(k, sub_verdicts[k]) for k in sup]
    wall = args.wall_seconds
    text = f"""# Estimators on real CIFAR-10: {n_all} architectures, {len(seeds)} seeds

Made by `{args.command}` in {wall / 60:.0f} min on {torch.get_num_threads()} CPU threads
({platform.processor() or platform.machine()}, torch {torch.__version__}, no GPU). Every number and verdict below
is computed from the run directories by `make_estimators.py`.

What was run:

- Every estimator other than the supernet: the zero-cost proxies, the baselines and NB201's 12-epoch table
  (`harness/estimators/`, definitions and the reference code in `docs/methods.md`).
- Seeds {", ".join(map(str, seeds))}: the seed sets the initialisation and the data batch of a proxy. params,
  flops and nb201-12ep do not depend on it, so their std is 0.
- Architectures: a seeded {n_all} of NB201's 6,466 non-isomorphic ones (`estimate.sample_size = {n_all}`,
  `sample_seed = 0`). Their first {n_sub} are exactly the architectures of `reports/strategies-cifar10-cpu/`.
- The CPU-sized real CIFAR-10 setting, `configs/cifar10-cpu-smoke.toml`: NB201's network at C=8, N=2 and 16x16
  inputs, and real CIFAR-10 JPEGs from `../shared/data`.
- Ground truth: NB201's cifar10-valid 200-epoch validation accuracy (mean over its seeds).
- Runs: `runs/NAME-seedS/` (estimates.csv with every architecture's score, metrics.json with CIs per run).
  `table/` is `nb201-harness compare` over them: per-run CIs, Kendall tau against cost (`tau_vs_cost.png`), the
  rank agreement between estimators (`rank_agreement.png`) and scatter plots.
- Also run: the baselines, synflow and l2_norm on NB201's full network over the same architectures (below).
- Not run: all 15,625 architectures, and the costlier proxies on NB201's full network. Those need a GPU or
  several CPU hours; no GPU was lent to the session that made this report.

How to read the verdicts:

- "vs params" and "vs nb201-12ep" give the difference in Kendall tau (mean over seeds) and its 95% paired
  bootstrap CI: {RESAMPLES} resamples of the architectures, the same resample for both estimators and every seed.
- A difference is called *higher* or *lower* only when that CI excludes 0 **and** every pair of seeds has the
  same sign. Anything else is "no demonstrated difference".

## All {n_all} architectures

![Kendall tau](tau.png)

{table_all}

*published Spearman*: Abdelfattah et al. 2021, on all 15,625 architectures with NB201's full network (C=16, N=5,
32x32). Those are not our settings, so the columns are beside each other, not comparable. vote's published 0.82
is the share of architecture pairs ordered right, not a Spearman (docs/methods.md).

What the numbers say:

- Above counting parameters (tau higher than `params`'s, demonstrated): {said(above)}.
- Below it: {said(below)}.
- No demonstrated difference from params: {", ".join(f"`{k}`" for k in same) or "none"}.
- Above NB201's own 12-epoch training: {said(above12)}.
- Above params on the {n_all} but not demonstrated on the first {n_sub} alone: {", ".join(f"`{k}`" for k, _ in above if sub_verdicts.get(k, (0, 0, 0, ""))[3] != "higher") or "none"}.
  On {n_sub} architectures the bootstrap CIs are about {np.sqrt(n_all / n_sub):.1f}x wider.

## The same {n_all} architectures on NB201's full network

`configs/estimators-cifar10.toml`: NB201's stand-alone network (C=16, N=5, 32x32), real CIFAR-10, the same
{n_all} architectures and seeds, for the baselines and the proxies cheap enough at this size on 2 CPU cores.
The other proxies take 0.3-1.8 s per architecture here (see the NASLib section below): {n_all} architectures
times 3 seeds would take hours.

{table_full}

The published Spearman values are over all 15,625 architectures at this network size. Ours are over a seeded
{n_all} of the non-isomorphic ones, so agreement is expected only to within sampling error. {full_said}

## The {n_sub} architectures of the supernet runs: estimators beside the supernets

The estimators' rows are their {n_all}-architecture runs restricted to the first {n_sub}, the supernet runs'
architectures. A proxy's score does not depend on which other architectures a run holds: the initialisation
seed is a function of the run seed and the architecture. The exception is vote, a count of pairwise wins over
the run's architectures: its rows here count wins among all {n_all}. The supernet rows are the runs committed in
`reports/strategies-cifar10-cpu/`: 3 seeds each, 3,000 forward/backward passes, the same CPU-sized setting. A
supernet's s / arch is its training plus estimation time over the {n_sub}.

{table_sub}

Supernets against params on these {n_sub}: {said(sup_vs)}. At this CPU budget the supernets barely learned (see
`reports/strategies-cifar10-cpu/`), so this is a CPU-budget result, not a verdict on weight sharing at NB201 scale.

## Against NASLib's recorded scores (NB201's full network)

Made by `python reports/estimators-cifar10/naslib_agreement.py` (file `naslib-agreement.json`):

- one run per estimator of `configs/estimators-cifar10.toml`: NB201's network at C=16, N=5, 32x32, real CIFAR-10,
  seed 0;
- a seeded 150 of the architectures NASLib recorded zero-cost scores for (CIFAR-10,
  `{json.loads(args.naslib.read_text())["naslib_file"]}`);
- *Spearman with NASLib's scores*: our score against NASLib's, architecture by architecture;
- *NASLib's tau*: NASLib's recorded score against the same ground truth and architectures.

{table_naslib}

- jacob_cov and epe_nas agree less with NASLib. Both work on input Jacobians of one batch: NASLib draws a fresh
  augmented batch per architecture, and we use one fixed batch per run.
- grasp and plain depend strongly on the initialisation and the batch. A fresh draw gives another score, so their
  low agreement is expected.
"""
    write_text(args.out / "README.md", text)
    print(args.out / "README.md")


if __name__ == "__main__":
    main()
