"""Learning-rate schedule of all three stages: linear warm-up, then constant (the original's
``LinearWarmupLR``, which stage 2 forgot to use)."""

from __future__ import annotations

import torch
from torch.optim.lr_scheduler import LRScheduler


class LinearWarmupLR(LRScheduler):
    """``lr_k = base · (k + 1) / (warmup + 1)`` for the first ``warmup_steps`` optimizer steps, then ``base``."""

    def __init__(self, optimizer: torch.optim.Optimizer, warmup_steps: int, last_epoch: int = -1):
        if warmup_steps < 0:
            raise ValueError(f"warmup_steps must be >= 0, got {warmup_steps}")
        self.warmup_steps = warmup_steps
        super().__init__(optimizer, last_epoch)

    def get_lr(self) -> list[float]:  # type: ignore[override]
        k = self.last_epoch
        factor = (k + 1) / (self.warmup_steps + 1) if k < self.warmup_steps else 1.0
        return [base * factor for base in self.base_lrs]
