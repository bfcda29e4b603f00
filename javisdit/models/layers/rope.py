"""Rotary position embedding, interleaved-pair convention: over the sequence axis (v0.1), and over three
axes (t, h, w) for JavisDiT++ (``rope_angles_3d``).

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
        self._tables: dict[tuple, tuple[torch.Tensor, torch.Tensor]] = {}

    def tables(self, length: int, dtype: torch.dtype, device: torch.device) -> tuple[torch.Tensor, torch.Tensor]:
        """(cos, signed sin) [N, D] for N = ``length`` positions, ``(-sin, sin)`` per channel pair; kept
        for the next call with the same length (every block and sampling step of a clip), rebuilt when
        ``freqs`` is replaced or loaded into."""
        freqs = self.freqs
        key = (length, dtype, device, freqs.dtype, freqs.data_ptr(), freqs._version)
        if key not in self._tables:
            positions = torch.arange(length, device=device, dtype=dtype).to(freqs.dtype)
            angles = (positions[:, None] * freqs[None]).repeat_interleave(2, dim=-1)  # [N, D]
            sign = torch.tensor([-1.0, 1.0], device=device, dtype=angles.dtype).repeat(angles.shape[-1] // 2)
            if len(self._tables) >= 8:
                self._tables.clear()
            self._tables[key] = (angles.cos().to(dtype), (angles.sin() * sign).to(dtype))
        return self._tables[key]

    def forward(self, x: torch.Tensor, start: int = 0, length: int | None = None) -> torch.Tensor:
        """x [..., n, D] at positions ``start .. start + n - 1`` of a sequence of ``length`` (default: n)
        positions; a slice of a sequence rotates as in the whole (sequence parallelism holds such slices)."""
        n = x.shape[-2]
        cos, signed_sin = self.tables(n if length is None else length, x.dtype, x.device)
        if start or cos.shape[0] != n:
            cos, signed_sin = cos[start : start + n], signed_sin[start : start + n]
        # pair (x0, x1) -> (x0 cos - x1 sin, x1 cos + x0 sin): x·cos + swap(x)·(-sin, sin), rounded after
        # each product as the original (a fused multiply-add would differ in bf16)
        swapped = x.unflatten(-1, (-1, 2)).flip(-1).flatten(-2)
        return x * cos + swapped * signed_sin


def rope_angles_1d(positions: torch.Tensor, head_dim: int, theta: float = 10000.0) -> torch.Tensor:
    """Rotation angles [L, head_dim / 2] of tokens at ``positions`` [L] (fractional positions allowed), in
    the positions' dtype; ``apply_rope_pairs`` rotates by them."""
    return positions[:, None] * rope_frequencies(head_dim, theta).to(positions)[None]


# ----- 3-axis RoPE (JavisDiT++ / Wan2.1) ------------------------------------------------------------------------


def axis_dims(head_dim: int) -> tuple[int, int, int]:
    """Channels of a head rotated by the (t, h, w) positions: ``d - 4⌊d/6⌋, 2⌊d/6⌋, 2⌊d/6⌋`` (128 -> 44, 42, 42)."""
    sixth = head_dim // 6
    return head_dim - 4 * sixth, 2 * sixth, 2 * sixth


def rope_angles_3d(positions: torch.Tensor, head_dim: int, theta: float = 10000.0) -> torch.Tensor:
    """Rotation angles [L, head_dim / 2] (float64) of tokens at (t, h, w) ``positions`` [L, 3].

    Axis a rotates its ``axis_dims[a] / 2`` channel pairs with frequencies ``1 / theta^(2j / dim_a)``;
    the pairs of t come first, then h, then w.
    """
    angles = []
    for axis, dim in enumerate(axis_dims(head_dim)):
        inverse = 1.0 / theta ** (torch.arange(0, dim, 2, dtype=torch.float64, device=positions.device) / dim)
        angles.append(positions[:, axis, None].to(torch.float64) * inverse[None])
    return torch.cat(angles, dim=1)


def apply_rope_pairs(x: torch.Tensor, angles: torch.Tensor) -> torch.Tensor:
    """Rotate adjacent channel pairs of x [..., L, D] by ``angles`` [L, D / 2], in the angles' precision
    (float64 for JavisDiT++), the result cast back to x's dtype."""
    pairs = x.to(angles.dtype).unflatten(-1, (-1, 2))
    cos, sin = angles.cos(), angles.sin()
    real = pairs[..., 0] * cos - pairs[..., 1] * sin
    imag = pairs[..., 0] * sin + pairs[..., 1] * cos
    return torch.stack((real, imag), dim=-1).flatten(-2).to(x.dtype)
