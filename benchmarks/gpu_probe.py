"""Where does a CUDA training step's time go? In-process timings of the uniform step at NB201 scale.

Not a pytest benchmark: a diagnostic printed as a table (and written as JSON with ``--json``) that says
whether the step is bound by kernel launches (host) or by GPU work, by timing the same sequence of
architectures under variants that change one thing each:

* ``fp32`` -- the harness step as it is (reference);
* ``batch256`` -- 4x the images per step: if the time barely grows, the step is launch-bound;
* ``channels_last`` -- NHWC data and weights;
* ``bf16_autocast`` -- mixed precision;
* ``host_only`` -- the CPU time to enqueue a step (measured from the profiler: self CPU time of the step).

Run on a GPU machine from the repository root: ``python benchmarks/gpu_probe.py --json out.json``.
"""
from __future__ import annotations

import argparse
import contextlib
import json
import random

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from harness.space import Arch, NUM_OPS
from harness.supernet import Supernet


def _archs(n: int, seed: int = 0) -> list[Arch]:
    rng = random.Random(seed)
    return [Arch(tuple(rng.randrange(NUM_OPS) for _ in range(6))) for _ in range(n)]


def time_steps(batch: int, channels_last: bool, autocast: bool, steps: int, device: str) -> dict:
    torch.manual_seed(0)
    model = Supernet(16, 5, 10).to(device)
    if channels_last:
        model = model.to(memory_format=torch.channels_last)
    opt = torch.optim.SGD(model.parameters(), lr=0.025, momentum=0.9, nesterov=True, weight_decay=5e-4)
    x = torch.randn(batch, 3, 32, 32, device=device)
    if channels_last:
        x = x.contiguous(memory_format=torch.channels_last)
    y = torch.randint(0, 10, (batch,), device=device)
    archs = _archs(steps + 10)
    ctx = (lambda: torch.autocast("cuda", dtype=torch.bfloat16)) if autocast else contextlib.nullcontext

    def step(arch: Arch) -> None:
        opt.zero_grad(set_to_none=True)
        with ctx():
            loss = F.cross_entropy(model(x, arch), y)
        loss.backward()
        nn.utils.clip_grad_norm_(model.parameters(), 5.0)
        opt.step()

    for a in archs[:10]:
        step(a)
    torch.cuda.synchronize()
    start, end = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
    start.record()
    for a in archs[10:]:
        step(a)
    end.record()
    torch.cuda.synchronize()
    ms = start.elapsed_time(end) / steps
    with torch.profiler.profile(activities=[torch.profiler.ProfilerActivity.CPU,
                                            torch.profiler.ProfilerActivity.CUDA]) as prof:
        for a in archs[10:30]:
            step(a)
        torch.cuda.synchronize()
    events = prof.key_averages()
    cuda_us = sum(e.self_device_time_total for e in events) / 20
    launches = sum(e.count for e in events if e.key.startswith(("cudaLaunchKernel", "cuLaunchKernel"))) / 20
    return {"batch": batch, "channels_last": channels_last, "bf16_autocast": autocast, "ms_per_step": ms,
            "gpu_busy_ms_per_step": cuda_us / 1000, "kernel_launches_per_step": launches,
            "images_per_second": batch / ms * 1000}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--steps", type=int, default=200)
    parser.add_argument("--json", default="")
    args = parser.parse_args()
    if not torch.cuda.is_available():
        raise SystemExit("gpu_probe needs CUDA")
    variants = {"fp32": (64, False, False), "batch256": (256, False, False),
                "channels_last": (64, True, False), "bf16_autocast": (64, False, True),
                "channels_last+bf16": (64, True, True)}
    rows = {}
    for name, (b, cl, ac) in variants.items():
        rows[name] = time_steps(b, cl, ac, args.steps, "cuda")
    ref = rows["fp32"]["ms_per_step"]
    print(f"{'variant':<20} {'ms/step':>8} {'GPU busy ms':>11} {'launches':>9} {'img/s':>9} {'vs fp32':>8}")
    for name, r in rows.items():
        print(f"{name:<20} {r['ms_per_step']:8.2f} {r['gpu_busy_ms_per_step']:11.2f} "
              f"{r['kernel_launches_per_step']:9.0f} {r['images_per_second']:9.0f} {ref / r['ms_per_step']:8.2f}x")
    info = {"device_name": torch.cuda.get_device_name(), "torch": torch.__version__, "cuda": torch.version.cuda,
            "steps_timed": args.steps, "variants": rows}
    if args.json:
        with open(args.json, "w") as fh:
            json.dump(info, fh, indent=2)


if __name__ == "__main__":
    main()
