"""Benchmark scripts, run from the repository root as `python -m benchmarks.<name>`; the
helpers they share."""

import torch


def sync(device: torch.device) -> None:
    """Wait for the device's queued work, so that a timer read after it counts that work."""
    if device.type == "cuda":
        torch.cuda.synchronize()
