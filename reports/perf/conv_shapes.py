"""Throughput of the CPU-sized network's convolutions (C=8, N=1, 16x16) per batch size: are the batched engine's
convolutions limited by per-call overhead (larger calls would help) or by the kernels themselves (they would not)?
    python reports/perf/conv_shapes.py
Prints ms per 512 images and GFLOP/s for each shape at 256, 512, 1024 and 2048 images (channels-last, oneDNN)."""
import time

import torch
import torch.nn.functional as F

SHAPES = [(8, 8, 16, 3, 1), (8, 16, 16, 3, 2), (16, 16, 8, 3, 1), (16, 32, 8, 3, 2), (32, 32, 4, 3, 1), (8, 16, 8, 1, 1)]


def ms(f, n=20):
    f()
    start = time.perf_counter()
    for _ in range(n):
        f()
    return (time.perf_counter() - start) / n * 1e3


print(f"torch {torch.__version__}, {torch.get_num_threads()} threads")
for cin, cout, hw, k, stride in SHAPES:
    row = []
    for b in (256, 512, 1024, 2048):
        x = torch.randn(b, cin, hw, hw).contiguous(memory_format=torch.channels_last)
        w, bias = torch.randn(cout, cin, k, k), torch.randn(cout)
        t = ms(lambda: F.conv2d(x, w, bias, stride=stride, padding=k // 2))
        flop = b * (hw // stride) ** 2 * cout * cin * k * k * 2
        row.append(f"{b}: {t / b * 512:.2f} ms/512 ({flop / t / 1e6:.0f} GFLOP/s)")
    print(f"{cin}->{cout} {k}x{k} at {hw}x{hw} stride {stride}:", "; ".join(row))
