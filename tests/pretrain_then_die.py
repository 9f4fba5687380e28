"""run_pretraining.py under torchrun, with one worker killed (SIGKILL) after an optimizer step.

    PYTHONPATH=<repo> torchrun ... tests/pretrain_then_die.py STEP:RANK <run_pretraining flags>

In the job's first attempt only (TORCHELASTIC_RESTART_COUNT 0), the worker of global rank RANK
kills itself right after optimizer step STEP, as a node failure would, so a test can check that
the job torchrun restarts ends where an uninterrupted one does. The trainer itself carries no
such switch: the step is observed through the LR scheduler, which advances once after each
optimizer step (and starts at the resumed step after a resume).
"""

from __future__ import annotations

import os
import signal
import sys

import run_pretraining
import schedulers


def die_after(step: int) -> None:
    """Make this process SIGKILL itself once the scheduler has advanced to `step`."""
    advance = schedulers.WarmupScheduler.step

    def advance_then_die(self: schedulers.WarmupScheduler) -> None:
        advance(self)
        if self.last_step >= step:
            os.kill(os.getpid(), signal.SIGKILL)

    schedulers.WarmupScheduler.step = advance_then_die


def main(argv: list[str]) -> int:
    spec, *flags = argv
    step, _, rank = spec.partition(":")
    first_attempt = os.environ.get("TORCHELASTIC_RESTART_COUNT", "0") == "0"
    if first_attempt and int(os.environ.get("RANK", "0")) == int(rank or 0):
        die_after(int(step))
    return run_pretraining.main(flags)


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
