"""Benchmark scripts, run from the repository root as `python -m benchmarks.<name>`.

Each module measures one thing and prints it (or writes it as JSON): the harness (ours against
Hugging Face `transformers`), single comparisons (SQuAD inference, MRPC fine-tuning, the loader,
the LAMB step, the attention backends), the table of `scripts/gpu_check.sh` and the fine-tuning
stability tables. This file holds what they share (`sync`, for timers); what they measure is the
library's and the entry scripts', which never import a benchmark.
"""

import torch


def sync(device: torch.device) -> None:
    """Wait for the device's queued work, so that a timer read after it counts that work."""
    if device.type == "cuda":
        torch.cuda.synchronize()
