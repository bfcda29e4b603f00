"""The elementwise steps around every DiT sub-layer, each in one pass over the tokens.

adaLN-modulated transformers spend a large share of their time outside the matmuls: ``x·(1 + scale) +
shift`` before a sub-layer and ``x + gate·h`` after it are three and two passes over [B, N, C] when
written with separate operators. ``torch.addcmul`` does each in one pass (and, in bf16, rounds once
instead of twice). ``residual_add`` writes into ``x`` when no autograd graph is recorded and ``x`` is
the block's own activation (sampling); training keeps the out-of-place form autograd needs.
"""

from __future__ import annotations

import torch


def modulate(x: torch.Tensor, shift: torch.Tensor, scale: torch.Tensor) -> torch.Tensor:
    """``x·(1 + scale) + shift``; x [B, N, C], shift and scale broadcastable to it (e.g. [B, 1, C])."""
    return torch.addcmul(shift, x, 1 + scale)


def residual_add(x: torch.Tensor, h: torch.Tensor, gate: torch.Tensor | None = None, inplace: bool = False
                 ) -> torch.Tensor:
    """``x + gate·h`` (``x + h`` without a gate).

    Args:
        x: the residual stream [B, N, C]; h: the sub-layer's output, same shape; gate: broadcastable to it.
        inplace: write the sum into ``x`` when autograd is off. Only for an ``x`` the caller owns (a
            block's own intermediate, never its input), since its old value is gone afterwards.
    """
    if inplace and not torch.is_grad_enabled() and h.dtype == x.dtype:
        return x.add_(h) if gate is None else x.addcmul_(gate, h)
    return x + h if gate is None else torch.addcmul(x, gate, h)
