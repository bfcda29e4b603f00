"""Transformer blocks of the VA-STDiT (JavisDiT §3): the spatial/temporal DiT block of each tower, the
ST-prior cross-attention block, the bidirectional video-audio block and the final layer.

Shape legend: ``B`` batch, ``T`` token frames, ``S`` tokens per frame (``H·W`` for video, ``M`` mel
tokens for audio), ``C`` hidden size, ``L`` condition tokens. Token sequences are [B, T·S, C],
frame-major. ``x_mask`` [B, T] is True for frames being generated and False for clean conditioning
frames, which are modulated with the t=0 embedding ``t0`` instead of ``t``.
"""

from __future__ import annotations

import torch
from torch import nn

from javisdit.distributed.sequence_parallel import FrameShard, temporal_attention, token_gatherer
from javisdit.models.layers.attention import BiCrossAttention, CrossAttention, SelfAttention, TokenTimes
from javisdit.models.layers.fused import modulate, residual_add
from javisdit.models.layers.mlp import Mlp
from javisdit.models.layers.norms import make_layer_norm
from javisdit.models.layers.rope import RotaryEmbedding


def select_frames(x_mask: torch.Tensor | None, x: torch.Tensor, x_zero: torch.Tensor, T: int) -> torch.Tensor:
    """Per frame, ``x`` where ``x_mask`` is True and ``x_zero`` where it is False ([B, T·S, C])."""
    if x_mask is None:
        return x
    B, N, C = x.shape
    keep = x_mask[:, :, None, None]
    return torch.where(keep, x.reshape(B, T, N // T, C), x_zero.reshape(B, T, N // T, C)).reshape(B, N, C)


def modulation(table: torch.Tensor, t: torch.Tensor, chunks: int) -> list[torch.Tensor]:
    """``chunks`` tensors [B, 1, C] from a learned table [chunks, C] plus a conditioning [B, chunks·C]
    (or [B, C], added to every row of the table)."""
    return list((table[None] + t.reshape(t.shape[0], -1, table.shape[-1])).chunk(chunks, dim=1))


class Modulated:
    """The chunks of ``t`` and, for masked frames, of ``t0``; ``apply`` picks per frame."""

    def __init__(self, table: torch.Tensor, t: torch.Tensor, t0: torch.Tensor | None, x_mask, T: int, chunks: int):
        self.main = modulation(table, t, chunks)
        self.zero = modulation(table, t0, chunks) if x_mask is not None else None
        self.x_mask, self.T = x_mask, T

    def shift_scale(self, x: torch.Tensor, i: int) -> torch.Tensor:
        """modulate(x, shift_i, scale_{i+1}) with the t0 version on masked-off frames."""
        out = modulate(x, self.main[i], self.main[i + 1])
        if self.zero is None:
            return out
        return select_frames(self.x_mask, out, modulate(x, self.zero[i], self.zero[i + 1]), self.T)

    def add_gated(self, x: torch.Tensor, h: torch.Tensor, i: int, inplace: bool = False) -> torch.Tensor:
        """``x + gate_i·h`` (``residual_add``), with the t0 gate on masked-off frames."""
        if self.zero is None:
            return residual_add(x, h, self.main[i], inplace)
        gated = select_frames(self.x_mask, self.main[i] * h, self.zero[i] * h, self.T)
        return residual_add(x, gated, inplace=inplace)


class STDiT3Block(nn.Module):
    """Self-attention over the S tokens of a frame (spatial) or the T frames of a token (temporal),
    then un-gated text cross-attention, then an MLP; adaLN-style modulation from ``t`` (6 chunks:
    shift/scale/gate for attention, then for the MLP)."""

    def __init__(self, hidden_size: int, num_heads: int, mlp_ratio: float = 4.0, temporal: bool = False,
                 qk_norm: bool = False, attn_backend: str = "sdpa", layernorm_kernel: bool = False):
        super().__init__()
        self.temporal = temporal
        self.norm1 = make_layer_norm(hidden_size, use_kernel=layernorm_kernel)
        self.attn = SelfAttention(hidden_size, num_heads, qk_norm=qk_norm, backend=attn_backend)
        self.cross_attn = CrossAttention(hidden_size, num_heads)
        self.norm2 = make_layer_norm(hidden_size, use_kernel=layernorm_kernel)
        self.mlp = Mlp(hidden_size, int(hidden_size * mlp_ratio))
        self.scale_shift_table = nn.Parameter(torch.randn(6, hidden_size) / hidden_size**0.5)

    def attention_input(self, x: torch.Tensor, t: torch.Tensor) -> torch.Tensor:
        """What the self-attention reads, ``modulate(LN(x), shift, scale)`` [B, N, C], for every frame at ``t``
        [B, 6C] (the step cache's signal: ``STDiT3.cache_signal``)."""
        shift, scale = modulation(self.scale_shift_table, t, 6)[:2]
        return modulate(self.norm1(x), shift, scale)

    def forward(self, x: torch.Tensor, y: torch.Tensor, y_mask: torch.Tensor | None, t: torch.Tensor, T: int,
                x_mask: torch.Tensor | None = None, t0: torch.Tensor | None = None,
                rope: RotaryEmbedding | None = None, shard: FrameShard | None = None) -> torch.Tensor:
        """x: [B, T·S, C]; y: [B, L, C] text tokens with y_mask [B, L]; t, t0: [B, 6C]. With ``shard``
        (sequence parallelism) x holds this rank's T frames of the sample, and temporal attention sees the
        frames of every rank."""
        B, N, C = x.shape
        S = N // T
        mod = Modulated(self.scale_shift_table, t, t0, x_mask, T, 6)

        h = mod.shift_scale(self.norm1(x), 0)
        if self.temporal:  # [B, T·S, C] -> [B·S, T, C]
            h = h.view(B, T, S, C).transpose(1, 2).reshape(B * S, T, C)
            h = self.attn(h, rope=rope) if shard is None else temporal_attention(self.attn, h, rope, shard)
            h = h.view(B, S, T, C).transpose(1, 2).reshape(B, N, C)
        else:  # [B, T·S, C] -> [B·T, S, C]
            h = self.attn(h.reshape(B * T, S, C)).view(B, N, C)
        x = mod.add_gated(x, h, 2)  # a new tensor: the block's input stays as it was

        x = residual_add(x, self.cross_attn(x, y, y_mask), inplace=True)

        h = self.mlp(mod.shift_scale(self.norm2(x), 3))
        return mod.add_gated(x, h, 5, inplace=True)


class CrossSTDiT3Block(nn.Module):
    """ST-prior cross-attention (JavisDiT's hierarchical prior): every token attends to the spatial
    prior tokens, then to the temporal prior tokens, then an MLP; each sub-layer is modulated and
    gated from the prior timestep conditioning (9 chunks: shift/scale/gate for spatial, temporal, MLP).

    A token's keys are the same prior tokens whichever frame or position it belongs to, so the
    per-frame (spatial) and per-position (temporal) groupings of the original reduce to one attention
    of all T·S tokens of a sample. ``batch_union`` reproduces the original's attention to the prior
    tokens of every sample in the batch (the published weights were trained so).
    """

    def __init__(self, hidden_size: int, num_heads: int, mlp_ratio: float = 4.0, layernorm_kernel: bool = False):
        super().__init__()
        self.norm1s = make_layer_norm(hidden_size, use_kernel=layernorm_kernel)
        self.norm1t = make_layer_norm(hidden_size, use_kernel=layernorm_kernel)
        self.norm2 = make_layer_norm(hidden_size, use_kernel=layernorm_kernel)
        self.spatial_cross_attn = CrossAttention(hidden_size, num_heads)
        self.temporal_cross_attn = CrossAttention(hidden_size, num_heads)
        self.mlp = Mlp(hidden_size, int(hidden_size * mlp_ratio))
        self.scale_shift_table = nn.Parameter(torch.randn(9, hidden_size) / hidden_size**0.5)

    def forward(self, x: torch.Tensor, spatial_prior: torch.Tensor, temporal_prior: torch.Tensor, t: torch.Tensor,
                T: int, x_mask: torch.Tensor | None = None, t0: torch.Tensor | None = None,
                batch_union: bool = True) -> torch.Tensor:
        """x: [B, T·S, C]; priors: [B, Np, C]; t, t0: [B, 9C]."""
        mod = Modulated(self.scale_shift_table, t, t0, x_mask, T, 9)
        spatial_prior, temporal_prior = spatial_prior.to(x.dtype), temporal_prior.to(x.dtype)

        h = mod.shift_scale(self.norm1s(x), 0)
        x = mod.add_gated(x, self.spatial_cross_attn(h, spatial_prior, share_across_batch=batch_union), 2)
        h = mod.shift_scale(self.norm1t(x), 3)
        x = mod.add_gated(x, self.temporal_cross_attn(h, temporal_prior, share_across_batch=batch_union), 5,
                          inplace=True)
        h = self.mlp(mod.shift_scale(self.norm2(x), 6))
        return mod.add_gated(x, h, 8, inplace=True)


class CrossModalityBiAttentionBlock(nn.Module):
    """Video <-> audio cross-attention: every video token of a sample attends to all its audio tokens
    and vice versa, with zero-initialised residual scales (an exact no-op until trained)."""

    def __init__(self, video_dim: int, audio_dim: int, num_heads: int, layernorm_kernel: bool = False):
        super().__init__()
        embed_dim = min(video_dim, audio_dim) // 2
        self.attn_norm_m1 = make_layer_norm(video_dim, use_kernel=layernorm_kernel)
        self.attn_norm_m2 = make_layer_norm(audio_dim, use_kernel=layernorm_kernel)
        self.cross_attn = BiCrossAttention(video_dim, audio_dim, embed_dim, num_heads // 2)
        self.gamma_m1 = nn.Parameter(torch.zeros(video_dim))
        self.gamma_m2 = nn.Parameter(torch.zeros(audio_dim))

    def forward(self, vx: torch.Tensor, ax: torch.Tensor, shard: FrameShard | None = None,
                times: TokenTimes | None = None) -> tuple[torch.Tensor, torch.Tensor]:
        """vx: [B, Lv, C], ax: [B, La, C] -> the same shapes. With ``shard`` (sequence parallelism) vx is
        this rank's frames; the audio update still sees every video token (the same on every rank).
        ``times``: the tokens' times (``VASTDiT3Config.va_cross_time_rope`` / ``va_cross_time_window``)."""
        dv, da = self.cross_attn(self.attn_norm_m1(vx), self.attn_norm_m2(ax), gather_m1=token_gatherer(shard),
                                 times=times)
        return residual_add(vx, dv, self.gamma_m1), residual_add(ax, da, self.gamma_m2)


class FinalLayer(nn.Module):
    """Modulated LayerNorm then a linear map to ``num_patch`` x ``out_channels`` values per token; the
    modulation comes from the raw timestep embedding ``t`` [B, C]."""

    def __init__(self, hidden_size: int, num_patch: int, out_channels: int, layernorm_kernel: bool = False):
        super().__init__()
        self.norm_final = make_layer_norm(hidden_size, use_kernel=layernorm_kernel)
        self.linear = nn.Linear(hidden_size, num_patch * out_channels)
        self.scale_shift_table = nn.Parameter(torch.randn(2, hidden_size) / hidden_size**0.5)

    def forward(self, x: torch.Tensor, t: torch.Tensor, T: int, x_mask: torch.Tensor | None = None,
                t0: torch.Tensor | None = None) -> torch.Tensor:
        # The original normalised the already-modulated x again for t0 frames; we modulate LN(x) for
        # both (only frames the sampler and the loss discard differ).
        mod = Modulated(self.scale_shift_table, t, t0, x_mask, T, 2)
        return self.linear(mod.shift_scale(self.norm_final(x), 0))
