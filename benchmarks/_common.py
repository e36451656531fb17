"""What the benchmark files share: device synchronisation and the device record each benchmark's extra_info holds."""
from __future__ import annotations

import platform

import torch


def sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def device_info(device: torch.device, **sizes) -> dict:
    """The device, its name, torch/CUDA versions, threads, and the benchmark's ``sizes`` (C, N, resolution, ...)."""
    name = torch.cuda.get_device_name(device) if device.type == "cuda" else (platform.processor() or "cpu")
    return {"device": str(device), "device_name": name, "torch": torch.__version__, "cuda": torch.version.cuda,
            "threads": torch.get_num_threads(), **sizes}
