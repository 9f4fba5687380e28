"""Learning-rate schedules: warm-up then polynomial (pre-training) or linear (fine-tuning) decay.

All schedules are functions of the progress p = k / total_steps of optimizer step k (1-based),
with warm-up w as a fraction of the total (NVIDIA's `schedulers.py`), safe past the end and w = 0:
- poly (NVIDIA PolyWarmUpScheduler, degree 0.5): base * p / w while p < w, else base * (1 - p)^0.5;
- linear (NVIDIA LinearWarmUpScheduler): base * p / w while p < w, else
  base * max((p - 1) / (w - 1), 0);
- constant (ConstantWarmUpScheduler): base * p / w while p < w, else base.
The step count is the scheduler's own; the training loops advance it after each step taken.
"""

from __future__ import annotations

from typing import Any

from torch.optim import Optimizer

SCHEDULES = ("poly", "linear", "constant")


def lr_factor(
    schedule: str, step: int, total_steps: int, warmup: float, degree: float = 0.5
) -> float:
    """The multiplier of the base LR for optimizer step `step` (1-based) of `total_steps`."""
    if total_steps <= 0:
        raise ValueError(f"total_steps must be positive, got {total_steps}")
    progress = step / total_steps
    if progress < warmup:
        return progress / warmup
    if schedule == "poly":
        return max(1.0 - progress, 0.0) ** degree
    if schedule == "linear":
        return max(0.0, (progress - 1.0) / (warmup - 1.0)) if warmup < 1 else 0.0
    if schedule == "constant":
        return 1.0
    raise ValueError(f"unknown schedule {schedule!r} (one of {SCHEDULES})")


class WarmupScheduler:
    """Writes the LR of the next optimizer step into every parameter group.

    Call `step()` after each optimizer step that was taken; the LR for step 1 is set at
    construction. `last_step` is the number of steps taken so far.
    """

    def __init__(
        self,
        optimizer: Optimizer,
        base_lr: float,
        total_steps: int,
        warmup: float,
        schedule: str = "poly",
        degree: float = 0.5,
        last_step: int = 0,
    ) -> None:
        if schedule not in SCHEDULES:
            raise ValueError(f"unknown schedule {schedule!r} (one of {SCHEDULES})")
        if not 0 <= warmup <= 1:
            raise ValueError(f"warmup proportion must be in [0, 1], got {warmup}")
        if total_steps <= 0:
            raise ValueError(f"the schedule needs a positive number of steps, got {total_steps}")
        self.optimizer = optimizer
        self.base_lr = base_lr
        self.total_steps = total_steps
        self.warmup = warmup
        self.schedule = schedule
        self.degree = degree
        self.last_step = last_step
        self._apply()

    def lr_at(self, step: int) -> float:
        return self.base_lr * lr_factor(
            self.schedule, step, self.total_steps, self.warmup, self.degree
        )

    @property
    def current_lr(self) -> float:
        """The LR the next optimizer step will use."""
        return self.lr_at(self.last_step + 1)

    def _apply(self) -> None:
        lr = self.current_lr
        for group in self.optimizer.param_groups:
            group["lr"] = lr

    def step(self) -> None:
        self.last_step += 1
        self._apply()

    def state_dict(self) -> dict[str, Any]:
        keys = ("base_lr", "total_steps", "warmup", "schedule", "degree", "last_step")
        return {key: getattr(self, key) for key in keys}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        for key, value in state.items():
            setattr(self, key, value)
        self._apply()
