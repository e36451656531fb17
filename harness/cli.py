"""``nb201-harness`` command line: one small function per subcommand.

Exit status (``EXIT_CODES``; README "Exit status"): 0 success; 1 a regression (``check``, ``regress``); 2 bad
input, one line on stderr, before any work or with the finished work kept; 3 an unexpected error (a bug: the
traceback is shown); 4 not comparable (a baseline for another experiment); 130 interrupted (Ctrl-C), with what
was saved and how to resume.
"""
from __future__ import annotations

import argparse
import json
import math
import sys
import time
import traceback
from pathlib import Path

from .config import ConfigError, load_config
from .io import check_writable, finite_or_none, write_csv

EXIT_OK, EXIT_REGRESSED, EXIT_USER, EXIT_BUG, EXIT_NOT_COMPARABLE, EXIT_INTERRUPTED = 0, 1, 2, 3, 4, 130
EXIT_CODES = {EXIT_OK: "success", EXIT_REGRESSED: "a regression (check, regress)",
              EXIT_USER: "bad input or environment: one line on stderr, nothing computed is lost",
              EXIT_BUG: "an unexpected error (a bug in the harness): the traceback is shown",
              EXIT_NOT_COMPARABLE: "not comparable: the baseline is for another experiment (check, regress)",
              EXIT_INTERRUPTED: "interrupted (Ctrl-C): what was saved and how to resume is printed"}

EPILOG_RUN = """examples:
  nb201-harness run configs/cifar10-cpu-smoke.toml
  nb201-harness run configs/nb201-cifar10.toml --set train.epochs=10 --out runs/spos-10ep
  nb201-harness run configs/cifar10-cpu-smoke.toml --set data.train_path=/data/cifar10-train-jpeg.zip
  nb201-harness run configs/nb201-cifar10.toml --seeds 0,1,2,3 --jobs 4 --out runs/spos   # 4 runs share one GPU
"""


def _overrides(args: argparse.Namespace) -> list[str]:
    threads = getattr(args, "threads", None)
    return [*(args.set or []), *(["run.trust_pickle=true"] if getattr(args, "trust_pickle", False) else []),
            *([f"run.threads={threads}"] if threads is not None else [])]


def cmd_run(args: argparse.Namespace) -> int:
    from .runner import run_experiment
    from .train import Interrupted

    if args.seeds is not None:
        return _run_seeds(args)
    if args.jobs != 1:
        raise ConfigError("--jobs runs several seeds at once: give them with --seeds, e.g. --seeds 0,1,2 --jobs 3")
    cfg = load_config(args.config, _overrides(args))
    out = Path(args.out) if args.out else Path("runs") / f"{cfg.run.name}-{time.strftime('%Y%m%d-%H%M%S')}"
    resume = f"nb201-harness run {args.config} {' '.join(f'--set {s!r}' for s in _overrides(args))} --out {out}"
    try:
        metrics = run_experiment(cfg, out, progress=not args.quiet)
    except Interrupted as exc:
        print(f"nb201-harness: {exc} in {out}/checkpoint.pt; resume with: {' '.join(resume.split())}",
              file=sys.stderr)
        return EXIT_INTERRUPTED
    except KeyboardInterrupt:
        if not out.exists():
            raise
        print(f"nb201-harness: interrupted; what {out} holds is kept (the last checkpoint, finished estimates); "
              f"resume with: {' '.join(resume.split())}", file=sys.stderr)
        return EXIT_INTERRUPTED
    r = metrics["ranking"]
    summary = {k: r[k]["value"] for k in ("kendall_tau", "spearman", "precision_top5pct", "regret_top1")}
    summary = {k: round(v, 4) if v is not None else None for k, v in finite_or_none(summary).items()}
    print(json.dumps({"run_dir": str(out), "n_archs": r["n_archs"], **summary}))
    return 0


def _run_seeds(args: argparse.Namespace) -> int:
    """``run --seeds``: the config once per seed into OUT/seed-S, ``--jobs`` at once (:mod:`harness.pool`)."""
    from .compare import load_run, strategy_table, to_markdown
    from .pool import Job, run_jobs

    seeds = _int_list(args.seeds, "--seeds")
    if len(set(seeds)) != len(seeds):
        raise ConfigError(f"--seeds {args.seeds!r} repeats a seed; each seed runs once")
    if args.jobs < 1:
        raise ConfigError(f"--jobs {args.jobs}: must be >= 1 (1 = one at a time)")
    configs = {s: load_config(args.config, [*_overrides(args), f"run.seed={s}"]) for s in seeds}  # checked first
    name = configs[seeds[0]].run.name
    out = Path(args.out) if args.out else Path("runs") / f"{name}-{time.strftime('%Y%m%d-%H%M%S')}"
    check_writable(out, "run directory")
    jobs = [Job(f"seed-{s}", configs[s], out / f"seed-{s}") for s in seeds]
    _, errors = run_jobs(jobs, workers=args.jobs, progress=not args.quiet)
    finished = [load_run(job.run_dir) for job in jobs if job.name not in errors]
    for record in finished:
        summary = {k: record.metrics[k]["value"] for k in ("kendall_tau", "spearman", "precision_top5pct", "regret_top1")}
        print(json.dumps({"run_dir": str(record.path), "seed": record.seed,
                          **{k: round(v, 4) if v == v else None for k, v in summary.items()}}))
    if finished:
        print(to_markdown(strategy_table(finished)), file=sys.stderr)
    if errors:
        bug = any(e.bug for e in errors.values())
        why = "a bug in the harness: see the tracebacks" if bug else "bad input or environment"
        print(f"nb201-harness: {len(errors)} of {len(jobs)} runs failed ({why}); rerun the same command to resume "
              "them", file=sys.stderr)
        return EXIT_BUG if bug else EXIT_USER
    return 0


def cmd_gt_info(args: argparse.Namespace) -> int:
    from .groundtruth import load_ground_truth, summarize
    from .safeload import trusting

    with trusting(args.trust_pickle):
        print(json.dumps(summarize(load_ground_truth(args.source)), indent=2))
    return 0


def _refuse_overwrite(out: Path, force: bool, *sources: Path) -> None:
    """Before any work: never write over an input; over an existing file only with --force."""
    for source in sources:
        if out.exists() and source.exists() and out.resolve() == source.resolve():
            raise ConfigError(f"--out {out} is the input file itself; writing it would replace the data it is "
                              "read from. Choose another --out")
    if out.exists() and not force:
        raise ConfigError(f"--out {out} exists; choose another path or pass --force to replace it")
    check_writable(out, "output file")


def cmd_gt_export(args: argparse.Namespace) -> int:
    from .groundtruth import export_table, load_ground_truth
    from .safeload import trusting

    _refuse_overwrite(Path(args.out), args.force, Path(args.source))
    with trusting(args.trust_pickle):
        gt = load_ground_truth(args.source)
    path = export_table(gt, args.out)
    print(f"wrote {len(gt)} architectures to {path}", file=sys.stderr)
    return 0


EPILOG_SWEEP = """examples:
  nb201-harness sweep sweeps/demo-seeds.toml                 # on this machine; rerun to resume
  ray start --head && nb201-harness sweep sweeps/demo-seeds.toml --engine ray
exit status: 0 all runs finished; 2 or 3 some failed (their tracebacks are in their directories)"""


EPILOG_GT_BUILD = """examples:
  # the embedded mini-benchmark (data/digitsm/), exactly as committed:
  nb201-harness gt build --data builtin:digitsm --name digitsm --archs sample:200 --seeds 0,1 --epochs 8 \\
      --C 16 --N 2 --batch-size 64 --no-augment --workers 2 --out data/digitsm/digitsm_gt.csv
  # NB201's own recipe (the defaults) on CIFAR-10 for 500 non-isomorphic architectures, 3 seeds, on a GPU:
  nb201-harness gt build --data cifar10:/data/cifar --name mycifar --archs sample-unique:500 --seeds 777,888,999 \\
      --device cuda --out mycifar_gt.csv
An interrupted build resumes when rerun with the same options and --out.
"""


def cmd_gt_build(args: argparse.Namespace) -> int:
    from .gtbuild import BuildSpec, build, seed_agreement, select_archs

    if args.workers < 1:
        raise ConfigError(f"--workers {args.workers}: must be >= 1")
    archs = [a.to_str() for a in select_archs(args.archs, args.arch_seed)]
    data_name = args.data.partition(":")[2] if args.data.startswith("builtin:") else "cifar10"
    spec = BuildSpec(data=args.data, name=args.name, archs=archs, seeds=_int_list(args.seeds, "--seeds"),
                     epochs=args.epochs, C=args.C, N=args.N, resolution=args.resolution, batch_size=args.batch_size,
                     lr=args.lr, lr_min=args.lr_min, weight_decay=args.weight_decay, augment=not args.no_augment,
                     split_seed=args.split_seed, normalize=args.normalize or data_name, device=args.device)
    from .safeload import trusting

    with trusting(args.trust_pickle):
        table = build(spec, args.out, workers=args.workers, progress=not args.quiet)
    summary = {"table": args.out, "n_archs": len(table), "seeds": spec.seeds}
    if len(spec.seeds) > 1:
        summary["seed_agreement_valid"] = seed_agreement(args.out, spec.name, spec.epochs)
    print(json.dumps(summary, indent=2))
    return 0


def _int_list(text: str, flag: str) -> list[int]:
    try:
        return [int(s) for s in text.split(",")]
    except ValueError:
        raise ConfigError(f"{flag} {text!r}: expected comma-separated integers, e.g. 0,1,2") from None


def cmd_demo(args: argparse.Namespace) -> int:
    from .demo import run_demo

    from .demo import all_strategies

    if args.workers < 0 or args.threads < 0:
        raise ConfigError(f"--workers {args.workers} / --threads {args.threads}: must be >= 0 (0 = automatic)")
    if args.all and args.strategy:
        raise ConfigError("--all and --strategy exclude each other: --all runs every strategy")
    out = Path(args.out) if args.out else Path("runs") / f"demo-{time.strftime('%Y%m%d-%H%M%S')}"
    check_writable(out, "demo directory")
    start = time.perf_counter()
    paths, table = run_demo(out, all_strategies() if args.all else args.strategy or None, args.set or [],
                            progress=not args.quiet, workers=args.workers, threads=args.threads)
    print(f"\nRanking quality on the digitsm mini-benchmark (tau: 95% bootstrap CI over architectures;\n"
          f"regret in accuracy points; forgetting: mean probe accuracy drop in points):\n\n{table}\n")
    pngs = [p.name for p in paths if p.suffix == ".png"]
    first = "correlations.png" if "correlations.png" in pngs else (pngs[0] if pngs else "summary.md")
    print(f"{time.perf_counter() - start:.0f} s in all. Runs in {out}/; the full table is {out / 'compare'}/summary.md. "
          f"Open {out / 'compare' / first} first (tau and Spearman per strategy, with CIs), then "
          f"{', '.join(p for p in pngs if p != first)}.")
    return 0


def cmd_sweep(args: argparse.Namespace) -> int:
    from .compare import load_run, strategy_table, to_markdown
    from .sweep import load_sweep, run_sweep

    sweep = load_sweep(args.sweep)
    runs, errors = run_sweep(sweep, Path(args.out) if args.out else None, args.engine, args.address,
                             progress=not args.quiet)
    finished = [r for r in runs if r.name not in errors and (r.run_dir / "metrics.json").exists()]
    if finished:
        print(to_markdown(strategy_table([load_run(r.run_dir) for r in finished])))
        print(f"compare: {finished[0].run_dir.parent / 'compare'}", file=sys.stderr)
    if errors:
        bug = any(e.bug for e in errors.values())
        for e in errors.values():
            print(f"nb201-harness: {e}", file=sys.stderr)
        print(f"nb201-harness: {len(errors)} of {len(runs)} runs failed ("
              f"{'a bug in the harness' if bug else 'bad input or environment'}); rerun the same command to resume "
              "them", file=sys.stderr)
        return EXIT_BUG if bug else EXIT_USER
    return 0


def cmd_compare(args: argparse.Namespace) -> int:
    from .compare import load_run, strategy_table, to_markdown, write_report

    seen: dict[Path, str] = {}
    for d in args.run_dirs:
        key = Path(d).resolve()
        if key in seen:
            raise ConfigError(f"{d} and {seen[key]} are the same run; each run directory counts as one seed, "
                              "so give each once")
        seen[key] = d
    if args.out:
        check_writable(args.out, "report directory")
    records = [load_run(d) for d in args.run_dirs]
    print(to_markdown(strategy_table(records)))
    if args.out:
        paths = write_report(records, args.out)
        print(f"wrote {', '.join(str(p) for p in paths)}", file=sys.stderr)
    return 0


def cmd_check(args: argparse.Namespace) -> int:
    from .regression import (RegressionError, check_run, check_update, load_baseline, make_baseline,
                             read_run_metrics, write_baseline)

    for flag, value in (("--tolerance", args.tolerance), ("--sigmas", args.sigmas)):
        if value is not None and not (math.isfinite(value) and value >= 0):
            raise ConfigError(f"{flag} {value}: must be a finite number >= 0")
    runs = [read_run_metrics(d) for d in args.run_dir]
    if args.update:
        check_writable(args.baseline, "baseline")
        previous = load_baseline(args.baseline) if Path(args.baseline).exists() else None
        check_update(runs, previous, args.description, args.force)
        write_baseline(args.baseline, make_baseline(runs, args.description or "", previous, args.tolerance,
                                                    args.sigmas))
        print(f"baseline {args.baseline} rewritten from {', '.join(args.run_dir)}")
        return 0
    if len(runs) > 1:
        raise RegressionError("check one run at a time; several runs are for --update (a baseline from seeds)")
    result = check_run(runs[0], load_baseline(args.baseline), 0.05 if args.tolerance is None else args.tolerance)
    print("\n".join(result.lines))
    print(f"check {'passed' if result.passed else 'FAILED'}: {args.run_dir[0]} against {args.baseline}")
    return 0 if result.passed else 1


def cmd_regress(args: argparse.Namespace) -> int:
    from .suite import SUITE, regress

    if args.workers < 0:
        raise ConfigError(f"--workers {args.workers}: must be >= 0 (0 = one per CPU core)")
    out = Path(args.out) if args.out else Path("runs") / "regress"
    check_writable(out, "run directory")
    passed, text = regress(out, Path(args.suite or SUITE), args.entry, args.record, args.workers)
    print(text)
    if not args.record:
        print(f"regress {'passed' if passed else 'FAILED'} (runs in {out})")
    return 0 if passed else 1


def cmd_space_export(args: argparse.Namespace) -> int:
    from .nets import arch_costs
    from .space import iter_archs

    for flag, value, low in (("--C", args.C, 1), ("--N", args.N, 1), ("--classes", args.classes, 2),
                             ("--resolution", args.resolution, 1)):
        if value < low:
            raise ConfigError(f"{flag} {value}: must be >= {low}")
    check_writable(args.out, "output file")
    rows = []
    for arch in iter_archs():
        c = arch_costs(arch, args.C, args.N, args.classes, args.resolution)
        rows.append({"arch": arch.to_str(), "isomorphism_class": arch.canonical(), "params": c.params,
                     "params_mb": c.params / 1e6, "flops": c.flops, "flops_m": c.flops / 1e6})
    import pandas as pd

    frame = pd.DataFrame(rows)
    write_csv(args.out, frame)
    print(f"wrote {len(frame)} architectures to {args.out}: params {frame.params.min()}..{frame.params.max()}, "
          f"FLOPs {frame.flops_m.min():.2f}M..{frame.flops_m.max():.2f}M", file=sys.stderr)
    return 0


class HelpFormatter(argparse.RawDescriptionHelpFormatter):
    """Examples in epilogs keep their lines; every option's help ends with its default unless it says it."""

    def _get_help_string(self, action: argparse.Action) -> str:
        text = action.help or ""
        default = action.default
        if ("default" not in text and action.option_strings and not action.required
                and not (default is None or default is False or default is argparse.SUPPRESS or default in ([], ""))):
            text += " (default: %(default)s)"
        return text


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="nb201-harness", description="Weight-sharing NAS evaluation against NAS-Bench-201.",
                                formatter_class=HelpFormatter, epilog="exit status: " + "; ".join(f"{k} {v}" for k, v in EXIT_CODES.items()))
    common = argparse.ArgumentParser(add_help=False)
    common.add_argument("--debug", action="store_true", help="show the traceback of any error")
    trust = argparse.ArgumentParser(add_help=False)
    trust.add_argument("--trust-pickle", action="store_true",
                       help="load pickled inputs unrestricted (they can run code): only files you trust")
    sub = p.add_subparsers(dest="command", required=True)
    _add = sub.add_parser

    def add_parser(name, *, trusting=False, **kw):  # every command takes --debug; groups (gt, space) do not
        parents = [] if name in ("gt", "space") else [common, trust] if trusting else [common]
        kw["formatter_class"] = HelpFormatter
        return _add(name, parents=parents, **kw)

    sub.add_parser = add_parser

    run = sub.add_parser("run", trusting=True, help="train a supernet, estimate architectures, score the ranking",
                         epilog=EPILOG_RUN)
    run.add_argument("config", help="TOML config (see configs/)")
    run.add_argument("--set", action="append", metavar="SECTION.KEY=VALUE", help="override a config key (repeatable)")
    run.add_argument("--out", help="run directory (default runs/NAME-TIMESTAMP); an unfinished one is resumed")
    run.add_argument("--threads", type=int, help="torch CPU threads of each run, as run.threads (default: all "
                                                 "cores, split between --jobs)")
    run.add_argument("--seeds", metavar="S,S,...", help="run the config once per seed (run.seed), into OUT/seed-S")
    run.add_argument("--jobs", type=int, default=1,
                     help="with --seeds: runs at once, each in its own process (default: 1). On CPU the cores are "
                          "split between them; on a GPU they share it and fill its idle time")
    run.add_argument("--quiet", action="store_true", help="no progress bars")
    run.set_defaults(func=cmd_run)

    gt = sub.add_parser("gt", help="ground truth: inspect or export").add_subparsers(dest="gt_command", required=True)
    gt_add = gt.add_parser
    gt.add_parser = lambda name, **kw: gt_add(name, parents=[common, trust], **{**kw, "formatter_class": HelpFormatter})
    info = gt.add_parser("info", help="architectures, isomorphism classes and optima of a ground-truth source",
                         epilog="example:\n  nb201-harness gt info --source ../shared/data/nb201/nb201_groundtruth.csv")
    info.add_argument("--source", required=True, help="compact CSV table, official NAS-Bench-201-v1_*.pth or "
                                                       "NATS-Bench topology directory (NATS-tss-v1_0-3ffb9-simple)")
    info.set_defaults(func=cmd_gt_info)
    exp = gt.add_parser("export", help="one-time export of the official .pth file or NATS-Bench's topology directory "
                                       "to the compact CSV table",
                        epilog="examples:\n  nb201-harness gt export --source NAS-Bench-201-v1_1-096897.pth --out nb201.csv"
                               "\n  nb201-harness gt export --source NATS-tss-v1_0-3ffb9-simple --out nats-tss.csv")
    exp.add_argument("--source", required=True, help="the official NAS-Bench-201-v1_*.pth file, NATS-Bench's "
                                                     "NATS-tss-v1_0-3ffb9-simple directory (or a compact CSV table)")
    exp.add_argument("--out", required=True, help="the table to write (never the source; an existing file only "
                                                  "with --force)")
    exp.add_argument("--force", action="store_true", help="replace an existing --out file")
    exp.set_defaults(func=cmd_gt_export)

    b = gt.add_parser("build", help="train architectures stand-alone to make a ground-truth table (resumable)",
                      epilog=EPILOG_GT_BUILD)
    b.add_argument("--data", required=True, help="builtin:digitsm, a zip/folder of class subfolders, or cifar10:ROOT")
    b.add_argument("--name", required=True, help="dataset key of the table's columns (lowercase letters/digits)")
    b.add_argument("--archs", default="sample:200", help="all | unique | sample:K | sample-unique:K | list:FILE")
    b.add_argument("--arch-seed", type=int, default=0, help="seed of the sample:K draw (default 0)")
    b.add_argument("--seeds", default="0", help="comma-separated training seeds, e.g. 0,1,2")
    b.add_argument("--epochs", type=int, default=200, help="training epochs per architecture and seed")
    b.add_argument("--C", type=int, default=16, help="channels of the first stage")
    b.add_argument("--N", type=int, default=5, help="cells per stage")
    b.add_argument("--resolution", type=int, default=0, help="input size; 0 = the data's native size (default 0)")
    b.add_argument("--batch-size", type=int, default=256, help="training batch size")
    b.add_argument("--lr", type=float, default=0.1, help="initial learning rate (cosine to --lr-min)")
    b.add_argument("--lr-min", type=float, default=0.0, help="final learning rate of the cosine schedule (default 0)")
    b.add_argument("--weight-decay", type=float, default=5e-4, help="SGD weight decay")
    b.add_argument("--no-augment", action="store_true", help="no random crop + flip (digits must not be flipped)")
    b.add_argument("--split-seed", type=int, default=0, help="stratified split seed when the data fixes none (default 0)")
    b.add_argument("--normalize", default="", help="mean/std constants (default: the builtin's, else cifar10)")
    b.add_argument("--device", default="cpu", help="cpu, cuda or cuda:N")
    b.add_argument("--workers", type=int, default=1, help="parallel worker processes (CPU)")
    b.add_argument("--out", required=True, help="output table TABLE.csv (TABLE.partial.csv / .build.json beside it)")
    b.add_argument("--quiet", action="store_true", help="no progress bars")
    b.set_defaults(func=cmd_gt_build)

    demo = sub.add_parser("demo", help="strategies on the offline mini-benchmark, compared (about 3 minutes)",
                          epilog="examples:\n  nb201-harness demo\n  nb201-harness demo --all\n"
                                 "  nb201-harness demo --strategy uniform --strategy gdas --out runs/demo")
    demo.add_argument("--out", help="directory for the runs and the comparison (default runs/demo-TIMESTAMP)")
    demo.add_argument("--strategy", action="append",
                      help="only this strategy (repeatable; default: uniform, nsas, fairnas, uniform+angle, darts)")
    demo.add_argument("--all", action="store_true", help="every registered strategy, and uniform+angle")
    demo.add_argument("--set", action="append", metavar="SECTION.KEY=VALUE", help="override a demo config key")
    demo.add_argument("--workers", type=int, default=0,
                      help="strategies trained at once in separate processes (default: one per CPU core)")
    demo.add_argument("--threads", type=int, default=0,
                      help="torch threads per strategy (default: CPU cores // workers, so they never oversubscribe)")
    demo.add_argument("--quiet", action="store_true", help="no progress lines")
    demo.set_defaults(func=cmd_demo)

    sw = sub.add_parser("sweep", trusting=True, help="run a study: a base config times a grid (resumable), then "
                                                      "compare it", epilog=EPILOG_SWEEP)
    sw.add_argument("sweep", help="sweep file (TOML: base, [set], [grid], [resources]; see harness/sweep.py)")
    sw.add_argument("--engine", choices=("local", "ray"), default="local",
                    help="local: a process pool on this machine (default); ray: one Ray task per run on a cluster")
    sw.add_argument("--address", help="with --engine ray: the cluster (default: the one `ray start` started here)")
    sw.add_argument("--out", help="where the runs go (default: the sweep file's out, else runs/SWEEP-NAME)")
    sw.add_argument("--quiet", action="store_true", help="no progress table")
    sw.set_defaults(func=cmd_sweep)

    cmp_ = sub.add_parser("compare", help="one table and plots across finished runs",
                          epilog="example:\n  nb201-harness compare runs/demo/uniform runs/spos-seed1 --out reports/mine")
    cmp_.add_argument("run_dirs", nargs="+", metavar="RUN_DIR", help="finished run directories (each counts as one seed)")
    cmp_.add_argument("--out", help="write compare.csv, summary.csv, summary.md and PNG/SVG plots here")
    cmp_.set_defaults(func=cmd_compare)

    chk = sub.add_parser("check", help="fail when a run's ranking quality fell below a committed baseline",
                         epilog="examples:\n  nb201-harness check runs/demo/uniform --baseline my-baseline.json"
                                "\n  nb201-harness check runs/demo/uniform --baseline my-baseline.json "
                                "--update --description 'uniform, demo config'\n  nb201-harness check runs/s0/uniform "
                                "runs/s1/uniform runs/s2/uniform --baseline B.json --update --description 'three seeds'"
                                "\nexit status: 0 passed, 1 regressed, "
                                "2 bad input, 3 a bug, 4 not comparable (a baseline of another experiment)")
    chk.add_argument("run_dir", metavar="RUN_DIR", nargs="+",
                     help="the run to check; with --update, one or several runs of the same experiment")
    chk.add_argument("--baseline", required=True, help="baseline JSON (format 1; the CI suite's baselines are `regress`'s)")
    chk.add_argument("--tolerance", type=float, default=None,
                     help="allowed drop for metrics without their own tolerance (default 0.05)")
    chk.add_argument("--update", action="store_true", help="rewrite the baseline from this run (deliberately)")
    chk.add_argument("--force", action="store_true",
                     help="with --update: replace a baseline of another strategy or benchmark (needs --description)")
    chk.add_argument("--description", help="with --update: what the baseline is")
    chk.add_argument("--sigmas", type=float, default=3.0,
                     help="with --update from several runs: tolerance >= this many std of the runs (default 3)")
    chk.set_defaults(func=cmd_check)

    reg = sub.add_parser("regress", help="the ranking-regression suite: statistical test against recorded baselines",
                         epilog="examples:\n  nb201-harness regress\n  nb201-harness regress --entry uniform --out runs/r"
                                "\n  nb201-harness regress --record --entry uniform   # rewrite its baseline (10 seeds)"
                                "\nexit status: 0 passed, 1 regressed, 2 bad input, 3 a bug, 4 a baseline for another config")
    reg.add_argument("--suite", help="suite file (default tests/regression/suite.toml)")
    reg.add_argument("--entry", action="append", help="only this entry (repeatable; a subset is its own family)")
    reg.add_argument("--out", help="run directories go to OUT/ENTRY/seedS (default runs/regress); finished ones "
                                   "of the same config are reused")
    reg.add_argument("--record", action="store_true", help="run the baseline seeds and rewrite the baselines")
    reg.add_argument("--workers", type=int, default=0, help="runs at once, 1 thread each (default: one per core)")
    reg.set_defaults(func=cmd_regress)

    space = sub.add_parser("space", help="the search space").add_subparsers(dest="space_command", required=True)
    space_add = space.add_parser
    space.add_parser = lambda name, **kw: space_add(name, parents=[common], **{**kw, "formatter_class": HelpFormatter})
    sx = space.add_parser("export", help="one row per architecture: NB201 string, parameters, FLOPs",
                          epilog="example:\n  nb201-harness space export --out space.csv --C 16 --N 5 --classes 10")
    sx.add_argument("--out", required=True, help="the CSV file to write")
    sx.add_argument("--C", type=int, default=16, help="channels of the first stage (default 16)")
    sx.add_argument("--N", type=int, default=5, help="cells per stage (default 5)")
    sx.add_argument("--classes", type=int, default=10, help="classifier outputs (default 10)")
    sx.add_argument("--resolution", type=int, default=32, help="input size for FLOPs (default 32)")
    sx.set_defaults(func=cmd_space_export)
    return p


def user_errors() -> tuple[type[BaseException], ...]:
    """The errors that mean bad input or a bad environment (one line, exit 2); anything else is a bug (exit 3)."""
    from .compare import CompareError
    from .data import DataError
    from .groundtruth.base import GroundTruthError
    from .gtbuild import BuildError
    from .regression import RegressionError
    from .runner import RunDirError
    from .safeload import UnsafeFileError
    from .space import ArchError
    from .train import TrainingDiverged

    return (ConfigError, DataError, GroundTruthError, BuildError, RegressionError, RunDirError, UnsafeFileError,
            ArchError, CompareError, TrainingDiverged, OSError)


def _message(exc: BaseException) -> str:
    if isinstance(exc, OSError) and exc.strerror and exc.filename:
        return f"{exc.filename}: {exc.strerror}"
    return str(exc)


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    from .regression import NotComparableError

    try:
        return args.func(args)
    except NotComparableError as exc:
        if args.debug:
            traceback.print_exc()
        print(f"nb201-harness: not comparable: {exc}", file=sys.stderr)
        return EXIT_NOT_COMPARABLE
    except KeyboardInterrupt as exc:
        print(f"\nnb201-harness: {exc or 'interrupted'}; files already written are complete (every write is "
              "atomic); rerun the same command to resume", file=sys.stderr)
        return EXIT_INTERRUPTED
    except Exception as exc:
        from .pool import RunFailed

        if isinstance(exc, RunFailed) and exc.bug or not isinstance(exc, (*user_errors(), RunFailed)):
            traceback.print_exc()
            print(f"nb201-harness: unexpected error ({type(exc).__name__}): this is a bug in the harness; please "
                  "report it with the traceback above", file=sys.stderr)
            return EXIT_BUG
        if args.debug:
            traceback.print_exc()
        print(f"nb201-harness: error: {_message(exc)}", file=sys.stderr)
        return EXIT_USER


if __name__ == "__main__":
    sys.exit(main())
