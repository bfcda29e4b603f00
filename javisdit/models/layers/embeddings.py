"""Embeddings of the DiT: timesteps and sizes, captions (with the learned null caption), patches, and
sin-cos positions.

Sin-cos frequencies are rounded to the working dtype before use, which is what the original's
bf16-cast frequency buffers did; in fp32 this changes nothing.
"""

from __future__ import annotations

import functools
import math

import torch
import torch.nn.functional as F
from torch import nn

from javisdit.models.layers.mlp import Mlp

# ---------------------------------------------------------------------------------------------------------
# Timesteps and scalar sizes
# ---------------------------------------------------------------------------------------------------------


def timestep_embedding(t: torch.Tensor, dim: int, max_period: float = 10000.0) -> torch.Tensor:
    """GLIDE sinusoid of t [B] -> [B, dim] fp32, laid out [cos | sin]."""
    half = dim // 2
    freqs = torch.exp(-math.log(max_period) * torch.arange(half, dtype=torch.float32, device=t.device) / half)
    args = t[:, None].float() * freqs[None]
    embedding = torch.cat([torch.cos(args), torch.sin(args)], dim=-1)
    if dim % 2:
        embedding = torch.cat([embedding, torch.zeros_like(embedding[:, :1])], dim=-1)
    return embedding


class TimestepEmbedder(nn.Module):
    """Raw diffusion timestep in [0, 1000] -> [B, C]."""

    def __init__(self, hidden_size: int, frequency_size: int = 256):
        super().__init__()
        self.frequency_size = frequency_size
        self.mlp = nn.Sequential(nn.Linear(frequency_size, hidden_size), nn.SiLU(), nn.Linear(hidden_size, hidden_size))

    def forward(self, t: torch.Tensor) -> torch.Tensor:
        return self.mlp(timestep_embedding(t, self.frequency_size).to(self.mlp[0].weight.dtype))


class SizeEmbedder(TimestepEmbedder):
    """A scalar per sample (e.g. fps) -> [B, C]; a single value is broadcast to the batch."""

    def forward(self, s: torch.Tensor, batch_size: int) -> torch.Tensor:  # type: ignore[override]
        s = s.reshape(-1)
        if s.shape[0] != batch_size:
            if batch_size % s.shape[0]:
                raise ValueError(f"cannot broadcast {s.shape[0]} size values to a batch of {batch_size}")
            s = s.repeat(batch_size // s.shape[0])
        return super().forward(s)


class CaptionEmbedder(nn.Module):
    """Projects condition tokens [B, 1, L, Cin] -> [B, 1, L, C]; in training, each sample is replaced
    by the learned null sequence ``y_embedding`` with probability ``uncond_prob`` (for CFG)."""

    def __init__(self, in_channels: int, hidden_size: int, uncond_prob: float, token_num: int):
        super().__init__()
        self.y_proj = Mlp(in_channels, hidden_size, hidden_size)
        self.register_buffer("y_embedding", torch.randn(token_num, in_channels) / in_channels**0.5)
        self.uncond_prob = uncond_prob

    def forward(self, caption: torch.Tensor, drop: bool | torch.Tensor = False) -> torch.Tensor:
        """``drop``: True draws which samples lose their caption (probability ``uncond_prob``); a [B]
        bool tensor says it per sample."""
        if isinstance(drop, torch.Tensor):
            dropped = drop.to(caption.device, torch.bool)
        elif drop and self.uncond_prob > 0:
            dropped = torch.rand(caption.shape[0], device=caption.device) < self.uncond_prob
        else:
            return self.y_proj(caption)
        caption = torch.where(dropped[:, None, None, None], self.y_embedding.to(caption.dtype), caption)
        return self.y_proj(caption)


# ---------------------------------------------------------------------------------------------------------
# Patches
# ---------------------------------------------------------------------------------------------------------


class PatchEmbed3D(nn.Module):
    """[B, Cin, T, H, W] -> [B, T'·H'·W', C] tokens (row-major over T', H', W'); pads T, H, W on the
    far side to multiples of the patch."""

    def __init__(self, patch_size: tuple[int, int, int], in_channels: int, hidden_size: int):
        super().__init__()
        self.patch_size = tuple(patch_size)
        self.proj = nn.Conv3d(in_channels, hidden_size, kernel_size=self.patch_size, stride=self.patch_size)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        pt, ph, pw = self.patch_size
        T, H, W = x.shape[-3:]
        x = F.pad(x, (0, -W % pw, 0, -H % ph, 0, -T % pt))
        return self.proj(x).flatten(2).transpose(1, 2)


class PatchEmbed2D(nn.Module):
    """[B, Cin, Ta, M] -> [B, R·M', C] tokens (time-major); Ta and M must be multiples of the patch."""

    def __init__(self, patch_size: tuple[int, int], in_channels: int, hidden_size: int):
        super().__init__()
        self.patch_size = tuple(patch_size)
        self.proj = nn.Conv2d(in_channels, hidden_size, kernel_size=self.patch_size, stride=self.patch_size)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.proj(x).flatten(2).transpose(1, 2)


# ---------------------------------------------------------------------------------------------------------
# Sin-cos positions
# ---------------------------------------------------------------------------------------------------------


def _inverse_frequencies(count: int, denominator: float, step: int, dtype: torch.dtype, device) -> torch.Tensor:
    exponents = torch.arange(0, count * step, step, dtype=torch.float32, device=device) / denominator
    return (1.0 / 10000**exponents).to(dtype)


@functools.lru_cache(maxsize=16)
def sincos_2d(h: int, w: int, dim: int, scale: float, base_size: int, dtype: torch.dtype, device=None) -> torch.Tensor:
    """2-D sin-cos positions of an h x w token grid -> [1, h·w, dim] (cached: every sampling step of a clip
    reads the same table; callers must not write into it).

    Channels are ``[sin x, cos x, sin y, cos y]`` with x the column (W) coordinate; coordinates are
    ``j / scale * base_size / w`` and ``i / scale * base_size / h`` (resolution-aware interpolation).
    """
    half = dim // 2
    inv_freq = _inverse_frequencies(half // 2, half, 2, dtype, device).float()
    ys = torch.arange(h, device=device, dtype=torch.float32) / scale * (base_size / h)
    xs = torch.arange(w, device=device, dtype=torch.float32) / scale * (base_size / w)
    grid_y, grid_x = torch.meshgrid(ys, xs, indexing="ij")

    def encode(coords: torch.Tensor) -> torch.Tensor:
        angles = coords.reshape(-1, 1) * inv_freq[None]
        return torch.cat([angles.sin(), angles.cos()], dim=-1)

    return torch.cat([encode(grid_x), encode(grid_y)], dim=-1)[None].to(dtype)


@functools.lru_cache(maxsize=16)
def sincos_1d(length: int, dim: int, dtype: torch.dtype, device=None) -> torch.Tensor:
    """1-D sin-cos positions 0..length-1 -> [1, length, dim], ``[sin | cos]``, computed in ``dtype`` (cached,
    read-only like ``sincos_2d``)."""
    inv_freq = _inverse_frequencies(dim // 2, dim // 2, 1, dtype, device)
    positions = torch.arange(length, device=device, dtype=dtype)
    angles = positions[:, None] * inv_freq[None]
    return torch.cat([angles.sin(), angles.cos()], dim=-1)[None]
