"""``nb201-harness`` command line: one small function per subcommand."""
from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

import pandas as pd

from .config import ConfigError, load_config
from .io import finite_or_none, write_csv

EPILOG_RUN = """examples:
  nb201-harness run configs/cifar10-cpu-smoke.toml
  nb201-harness run configs/nb201-cifar10.toml --set train.epochs=10 --out runs/spos-10ep
  nb201-harness run configs/cifar10-cpu-smoke.toml --set data.train_path=/data/cifar10-train-jpeg.zip
"""


def cmd_run(args: argparse.Namespace) -> int:
    from .runner import run_experiment

    cfg = load_config(args.config, args.set or [])
    out = Path(args.out) if args.out else Path("runs") / f"{cfg.run.name}-{time.strftime('%Y%m%d-%H%M%S')}"
    metrics = run_experiment(cfg, out, progress=not args.quiet)
    r = metrics["ranking"]
    summary = {k: r[k]["value"] for k in ("kendall_tau", "spearman", "precision_top5pct", "regret_top1")}
    summary = {k: round(v, 4) if v is not None else None for k, v in finite_or_none(summary).items()}
    print(json.dumps({"run_dir": str(out), "n_archs": r["n_archs"], **summary}))
    return 0


def cmd_gt_info(args: argparse.Namespace) -> int:
    from .groundtruth import load_ground_truth, summarize

    print(json.dumps(summarize(load_ground_truth(args.source)), indent=2))
    return 0


def cmd_gt_export(args: argparse.Namespace) -> int:
    from .groundtruth import export_table, load_ground_truth

    gt = load_ground_truth(args.source)
    path = export_table(gt, args.out)
    print(f"wrote {len(gt)} architectures to {path}", file=sys.stderr)
    return 0


def cmd_space_export(args: argparse.Namespace) -> int:
    from .nets import arch_costs
    from .space import iter_archs

    rows = []
    for arch in iter_archs():
        c = arch_costs(arch, args.C, args.N, args.classes, args.resolution)
        rows.append({"arch": arch.to_str(), "isomorphism_class": arch.canonical(), "params": c.params,
                     "params_mb": c.params / 1e6, "flops": c.flops, "flops_m": c.flops / 1e6})
    frame = pd.DataFrame(rows)
    write_csv(args.out, frame)
    print(f"wrote {len(frame)} architectures to {args.out}: params {frame.params.min()}..{frame.params.max()}, "
          f"FLOPs {frame.flops_m.min():.2f}M..{frame.flops_m.max():.2f}M", file=sys.stderr)
    return 0


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="nb201-harness", description="Weight-sharing NAS evaluation against NAS-Bench-201.")
    sub = p.add_subparsers(dest="command", required=True)

    run = sub.add_parser("run", help="train a supernet, estimate architectures, score the ranking",
                         epilog=EPILOG_RUN, formatter_class=argparse.RawDescriptionHelpFormatter)
    run.add_argument("config", help="TOML config (see configs/)")
    run.add_argument("--set", action="append", metavar="SECTION.KEY=VALUE", help="override a config key (repeatable)")
    run.add_argument("--out", help="run directory (default runs/NAME-TIMESTAMP); an unfinished one is resumed")
    run.add_argument("--quiet", action="store_true", help="no progress bars")
    run.set_defaults(func=cmd_run)

    gt = sub.add_parser("gt", help="ground truth: inspect or export").add_subparsers(dest="gt_command", required=True)
    info = gt.add_parser("info", help="architectures, isomorphism classes and optima of a ground-truth source",
                         epilog="example:\n  nb201-harness gt info --source ../shared/data/nb201/nb201_groundtruth.csv",
                         formatter_class=argparse.RawDescriptionHelpFormatter)
    info.add_argument("--source", required=True, help="compact CSV table or official NAS-Bench-201-v1_*.pth")
    info.set_defaults(func=cmd_gt_info)
    exp = gt.add_parser("export", help="one-time export of the official .pth file to the compact CSV table",
                        epilog="example:\n  nb201-harness gt export --source NAS-Bench-201-v1_1-096897.pth --out nb201.csv",
                        formatter_class=argparse.RawDescriptionHelpFormatter)
    exp.add_argument("--source", required=True)
    exp.add_argument("--out", required=True)
    exp.set_defaults(func=cmd_gt_export)

    space = sub.add_parser("space", help="the search space").add_subparsers(dest="space_command", required=True)
    sx = space.add_parser("export", help="one row per architecture: NB201 string, parameters, FLOPs",
                          epilog="example:\n  nb201-harness space export --out space.csv --C 16 --N 5 --classes 10",
                          formatter_class=argparse.RawDescriptionHelpFormatter)
    sx.add_argument("--out", required=True)
    sx.add_argument("--C", type=int, default=16, help="channels of the first stage (default 16)")
    sx.add_argument("--N", type=int, default=5, help="cells per stage (default 5)")
    sx.add_argument("--classes", type=int, default=10)
    sx.add_argument("--resolution", type=int, default=32, help="input size for FLOPs (default 32)")
    sx.set_defaults(func=cmd_space_export)
    return p


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        return args.func(args)
    except (ConfigError, ValueError, KeyError, FileNotFoundError, RuntimeError) as exc:
        # user-facing errors: one clear line, no traceback
        msg = exc.args[0] if isinstance(exc, KeyError) and exc.args else str(exc)
        print(f"nb201-harness: error: {msg}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
