"""Parameter counts, printed both exactly and in the original's units."""

from __future__ import annotations

from torch import nn


def count_params(model: nn.Module, trainable_only: bool = False) -> int:
    return sum(p.numel() for p in model.parameters() if p.requires_grad or not trainable_only)


def format_numel(n: int) -> str:
    """``3,719,730,948 (3.46 B)``: exact, then divided by 1024^3 / 1024^2 as the original logs it
    (so the paper's "3.4B" model is 3.72e9 parameters)."""
    if n >= 1024**3:
        short = f"{n / 1024**3:.2f} B"
    elif n >= 1024**2:
        short = f"{n / 1024**2:.2f} M"
    elif n >= 1024:
        short = f"{n / 1024:.2f} K"
    else:
        short = str(n)
    return f"{n:,} ({short})"
