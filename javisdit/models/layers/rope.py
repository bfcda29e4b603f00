"""Rotary position embedding over the sequence axis, interleaved-pair convention.

Consecutive channel pairs ``(x0, x1)`` are rotated by ``pos * freq``:
``(x0 cos - x1 sin, x1 cos + x0 sin)``, with ``freq_k = 10000^(-2k/D)`` (the ``freqs_for="lang"``
schedule of the original). Positions, angles and their cos/sin are computed in the dtype of ``freqs``,
so a bf16 model rounds them exactly as the published weights were trained.
"""

from __future__ import annotations

import torch
from torch import nn


def rope_frequencies(head_dim: int, theta: float = 10000.0) -> torch.Tensor:
    """The ``head_dim // 2`` rotation frequencies."""
    return 1.0 / theta ** (torch.arange(0, head_dim, 2)[: head_dim // 2].float() / head_dim)


class RotaryEmbedding(nn.Module):
    """Rotates queries/keys [..., N, D] by their position along N (dim -2)."""

    def __init__(self, head_dim: int, theta: float = 10000.0):
        super().__init__()
        if head_dim % 2:
            raise ValueError(f"RoPE needs an even head dimension, got {head_dim}")
        self.theta = theta
        # A frozen parameter, as in the original checkpoints (key "rope.freqs").
        self.freqs = nn.Parameter(rope_frequencies(head_dim, theta), requires_grad=False)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        freqs = self.freqs
        positions = torch.arange(x.shape[-2], device=x.device, dtype=x.dtype).to(freqs.dtype)
        angles = (positions[:, None] * freqs[None]).repeat_interleave(2, dim=-1)  # [N, D]
        pairs = x.unflatten(-1, (-1, 2))
        rotated = torch.stack((-pairs[..., 1], pairs[..., 0]), dim=-1).flatten(-2)
        return x * angles.cos() + rotated * angles.sin()
