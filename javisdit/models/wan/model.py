"""JavisDiT++'s DiT: one Wan2.1 transformer that denoises video and audio tokens as one sequence.

Every block runs joint self-attention over ``[video tokens ‖ audio tokens]`` (shared weights, 3-axis
RoPE), text cross-attention for all tokens, then a modality-routed FFN: video tokens through Wan's FFN,
audio tokens through a second FFN with its own modulation (the paper's MS-MoE; a hard routing by
modality). Audio tokens sit on the video time axis (TA-RoPE, ``audio_positions``). Spec MODEL_V1.md §3.

Precision follows the published weights (§3.9): with bf16 parameters the blocks compute in bf16, the
timestep is rounded to bf16 before its float64 sinusoid, the time MLPs and both output heads compute in
fp32, RoPE in float64; the outputs are fp32. With fp32 parameters everything is fp32.

Shapes: ``B`` batch, ``L`` tokens (``Lv`` video + ``La`` audio), ``C`` hidden size, ``Tv, H', W'`` the
video token grid, ``Ta', M'`` the audio token grid (latent frames / 2, mel bins / 2), ``N`` text tokens.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import nn

from javisdit.errors import UserError
from javisdit.models.layers.attention import attention
from javisdit.models.layers.norms import RMSNorm
from javisdit.models.layers.rope import apply_rope_pairs, rope_angles_3d
from javisdit.models.wan.config import WanConfig

# ----- helpers ------------------------------------------------------------------------------------------------


def sinusoid(t: torch.Tensor, dim: int) -> torch.Tensor:
    """[B] timesteps -> [B, dim] float64 ``[cos(t f) ‖ sin(t f)]``, ``f_k = 10000^(-k / (dim/2))`` (cos first)."""
    half = dim // 2
    freqs = torch.pow(10000.0, -torch.arange(half, dtype=torch.float64, device=t.device) / half)
    angles = t.to(torch.float64)[:, None] * freqs[None]
    return torch.cat([angles.cos(), angles.sin()], dim=1)


def fp32_linear(layer: nn.Linear, x: torch.Tensor) -> torch.Tensor:
    """``layer(x)`` computed in fp32 whatever the stored dtype (the original's fp32 autocast regions)."""
    bias = None if layer.bias is None else layer.bias.float()
    return F.linear(x.float(), layer.weight.float(), bias)


def video_positions(grid: tuple[int, int, int], device=None) -> torch.Tensor:
    """Integer (t, h, w) of the video token grid (Tv, H', W') in row-major order: [Tv·H'·W', 3]."""
    t, h, w = (torch.arange(n, device=device) for n in grid)
    return torch.stack(torch.meshgrid(t, h, w, indexing="ij"), dim=-1).reshape(-1, 3)


def audio_positions(audio_grid: tuple[int, int], video_grid: tuple[int, int, int], device=None) -> torch.Tensor:
    """TA-RoPE (``interleave_offset``, spec §3.6): audio row i, bin m sits at
    ``(⌈(Tv - 1)·i / (Ta' - 1)⌉, H' + i, W' + m)``: on the video time axis, rounded up, and past the
    video grid on the two spatial axes. Exact integer arithmetic (the original's float64 linspace gives
    the same integers for every shape it runs). Returns [Ta'·M', 3]."""
    rows, bins = audio_grid
    tv, hv, wv = video_grid
    i = torch.arange(rows, device=device)
    t = -((-(tv - 1) * i) // max(rows - 1, 1))  # ceil division
    pos = torch.stack([t, hv + i, torch.zeros_like(i)], dim=-1)[:, None].repeat(1, bins, 1)
    pos[..., 2] = wv + torch.arange(bins, device=device)
    return pos.reshape(-1, 3)


# ----- layers -------------------------------------------------------------------------------------------------


class WanAttention(nn.Module):
    """Attention with q/k RMSNorm over the whole hidden vector (before the head split), q/k/v/o with
    biases; self-attention when ``context`` is None (with RoPE), else cross-attention (no RoPE, no mask)."""

    def __init__(self, dim: int, num_heads: int, qk_norm: bool = True, eps: float = 1e-6, backend: str = "sdpa"):
        super().__init__()
        self.num_heads = num_heads
        self.q, self.k, self.v, self.o = (nn.Linear(dim, dim) for _ in range(4))
        self.norm_q = RMSNorm(dim, eps) if qk_norm else nn.Identity()
        self.norm_k = RMSNorm(dim, eps) if qk_norm else nn.Identity()
        self.backend = backend

    def forward(self, x: torch.Tensor, context: torch.Tensor | None = None,
                angles: torch.Tensor | None = None) -> torch.Tensor:
        """x [B, L, C], context [B, N, C] or None, angles [L, head_dim / 2] -> [B, L, C]."""
        source = x if context is None else context
        q = self.norm_q(self.q(x)).unflatten(-1, (self.num_heads, -1)).transpose(1, 2)
        k = self.norm_k(self.k(source)).unflatten(-1, (self.num_heads, -1)).transpose(1, 2)
        v = self.v(source).unflatten(-1, (self.num_heads, -1)).transpose(1, 2)
        if angles is not None:
            q, k = apply_rope_pairs(q, angles), apply_rope_pairs(k, angles)
        out = attention(q, k, v, backend=self.backend)
        return self.o(out.transpose(1, 2).flatten(2))


def feed_forward(dim: int, hidden: int) -> nn.Sequential:
    """Linear -> GELU(tanh) -> Linear (keys ``0``, ``2``)."""
    return nn.Sequential(nn.Linear(dim, hidden), nn.GELU(approximate="tanh"), nn.Linear(hidden, dim))


class ParameterHolder(nn.Module):
    """One parameter under the key ``param`` (the original's ``audio_modulation.param``)."""

    def __init__(self, *shape: int):
        super().__init__()
        self.param = nn.Parameter(torch.randn(*shape) / math.sqrt(shape[-1]))


def modulate(x: torch.Tensor, shift: torch.Tensor, scale: torch.Tensor) -> torch.Tensor:
    return x * (1 + scale) + shift


# ----- block --------------------------------------------------------------------------------------------------


class AudioVideoBlock(nn.Module):
    """Joint self-attention, text cross-attention, then the video FFN on the first ``Lv`` tokens and the
    audio FFN on the rest. Without audio (``t2v``) it is Wan2.1's block; without video (``t2a``) only
    the audio FFN exists."""

    def __init__(self, config: WanConfig):
        super().__init__()
        C, eps = config.dim, config.eps
        backend = "flash" if config.enable_flash_attn else "sdpa"
        self.norm1 = nn.LayerNorm(C, eps, elementwise_affine=False)
        self.self_attn = WanAttention(C, config.num_heads, config.qk_norm, eps, backend)
        self.norm3 = nn.LayerNorm(C, eps) if config.cross_attn_norm else nn.Identity()
        self.cross_attn = WanAttention(C, config.num_heads, config.qk_norm, eps, backend)
        self.has_video_ffn, self.has_audio_ffn = config.use_video, config.use_audio
        if self.has_video_ffn:
            self.norm2 = nn.LayerNorm(C, eps, elementwise_affine=False)
            self.ffn = feed_forward(C, config.ffn_dim)
        self.modulation = nn.Parameter(torch.randn(1, 6, C) / math.sqrt(C))
        if self.has_audio_ffn:
            self.audio_norm2 = nn.LayerNorm(C, eps, elementwise_affine=False)
            self.audio_ffn = feed_forward(C, config.ffn_dim)
            self.audio_modulation = ParameterHolder(1, 3, C)

    def forward(self, x: torch.Tensor, num_video: int, e: torch.Tensor, audio_e: torch.Tensor | None,
                context: torch.Tensor, angles: torch.Tensor) -> torch.Tensor:
        """x [B, L, C] (the first ``num_video`` tokens are video), e [B, 6, C], audio_e [B, 3, C],
        context [B, N, C] -> [B, L, C]."""
        shift0, scale0, gate0, shift1, scale1, gate1 = (self.modulation + e.to(x.dtype)).unsqueeze(2).unbind(1)
        x = x + gate0 * self.self_attn(modulate(self.norm1(x), shift0, scale0), angles=angles)
        x = x + self.cross_attn(self.norm3(x), context)
        vx, ax = x[:, :num_video], x[:, num_video:]
        if self.has_video_ffn:
            vx = vx + gate1 * self.ffn(modulate(self.norm2(vx), shift1, scale1))
        if self.has_audio_ffn and ax.shape[1]:
            shift, scale, gate = (self.audio_modulation.param + audio_e.to(x.dtype)).unsqueeze(2).unbind(1)
            ax = ax + gate * self.audio_ffn(modulate(self.audio_norm2(ax), shift, scale))
        return torch.cat([vx, ax], dim=1)


class Head(nn.Module):
    """The output layer, in fp32: LayerNorm, (shift, scale) = ``modulation + e``, Linear to the patch values."""

    def __init__(self, dim: int, out_dim: int, patch: tuple[int, ...], eps: float = 1e-6):
        super().__init__()
        self.norm = nn.LayerNorm(dim, eps, elementwise_affine=False)
        self.head = nn.Linear(dim, math.prod(patch) * out_dim)
        self.modulation = nn.Parameter(torch.randn(1, 2, dim) / math.sqrt(dim))

    def forward(self, x: torch.Tensor, e: torch.Tensor) -> torch.Tensor:
        """x [B, L, C], e [B, C] (the raw time embedding) -> [B, L, prod(patch)·out] fp32."""
        shift, scale = (self.modulation.float() + e.float()[:, None]).unsqueeze(2).unbind(1)
        return fp32_linear(self.head, modulate(self.norm(x.float()), shift, scale))


# ----- model --------------------------------------------------------------------------------------------------


class WanModel(nn.Module):
    """Wan2.1-T2V with audio tokens (``t2av``), or its audio-only (``t2a``) / video-only (``t2v``) forms.

    Submodules are registered in the original's order, so ``state_dict()`` lists the published keys in
    the published order (spec §3.2, manifests ``javisdit_v1_jav_merged.tsv``, ``wan21_t2v_1_3b.tsv``).
    """

    def __init__(self, config: WanConfig):
        super().__init__()
        self.config = config
        C = config.dim
        if config.use_audio:
            self.audio_patch_embedding = nn.Conv2d(config.audio_in_dim, C, config.audio_patch_size,
                                                   config.audio_patch_size)
            self.audio_head = Head(C, config.audio_out_dim, config.audio_patch_size, config.eps)
        if config.use_video:
            self.patch_embedding = nn.Conv3d(config.in_dim, C, config.patch_size, config.patch_size)
            self.head = Head(C, config.out_dim, config.patch_size, config.eps)
        self.text_embedding = nn.Sequential(nn.Linear(config.text_dim, C), nn.GELU(approximate="tanh"),
                                            nn.Linear(C, C))
        self.time_embedding = nn.Sequential(nn.Linear(config.freq_dim, C), nn.SiLU(), nn.Linear(C, C))
        self.time_projection = nn.Sequential(nn.SiLU(), nn.Linear(C, 6 * C))
        if config.use_audio:
            self.audio_time_projection = nn.Sequential(nn.SiLU(), nn.Linear(C, 3 * C))
        self.blocks = nn.ModuleList(AudioVideoBlock(config) for _ in range(config.num_layers))
        self.reset_parameters()

    def reset_parameters(self) -> None:
        """The original's init: Xavier-uniform Linears and patch embeddings (zero biases), N(0, 0.02) text
        and time embeddings, zero output projections; modulations keep their randn / sqrt(C)."""
        for module in self.modules():
            if isinstance(module, nn.Linear):
                nn.init.xavier_uniform_(module.weight)
                nn.init.zeros_(module.bias)
        for name in ("patch_embedding", "audio_patch_embedding"):
            if hasattr(self, name):
                conv = getattr(self, name)
                nn.init.xavier_uniform_(conv.weight.flatten(1))
        for seq in (self.text_embedding, self.time_embedding):
            for layer in seq:
                if isinstance(layer, nn.Linear):
                    nn.init.normal_(layer.weight, std=0.02)
        for name in ("head", "audio_head"):
            if hasattr(self, name):
                nn.init.zeros_(getattr(self, name).head.weight)

    # ----- forward ----------------------------------------------------------------------------------------

    def _embed_video(self, video: torch.Tensor) -> tuple[torch.Tensor, tuple[int, int, int]]:
        """[B, 16, T, H, W] -> tokens [B, Tv·H'·W', C] and the grid (Tv, H', W')."""
        x = self.patch_embedding(video.to(self.patch_embedding.weight.dtype))
        return x.flatten(2).transpose(1, 2), tuple(x.shape[2:])

    def _embed_audio(self, audio: torch.Tensor) -> tuple[torch.Tensor, tuple[int, int]]:
        """[B, 8, Ta, 16] -> tokens [B, Ta'·M', C] and the grid (Ta', M')."""
        x = self.audio_patch_embedding(audio.to(self.audio_patch_embedding.weight.dtype))
        return x.flatten(2).transpose(1, 2), tuple(x.shape[2:])

    def _unpatchify_video(self, x: torch.Tensor, grid: tuple[int, int, int]) -> torch.Tensor:
        """[B, Lv, pt·ph·pw·C_out] (channel fastest) -> [B, C_out, Tv·pt, H'·ph, W'·pw]."""
        (pt, ph, pw), c = self.config.patch_size, self.config.out_dim
        x = x.reshape(x.shape[0], *grid, pt, ph, pw, c)
        return x.permute(0, 7, 1, 4, 2, 5, 3, 6).reshape(x.shape[0], c, grid[0] * pt, grid[1] * ph, grid[2] * pw)

    def _unpatchify_audio(self, x: torch.Tensor, grid: tuple[int, int]) -> torch.Tensor:
        """[B, La, pa·pm·C_out] -> [B, C_out, Ta'·pa, M'·pm]."""
        (pa, pm), c = self.config.audio_patch_size, self.config.audio_out_dim
        x = x.reshape(x.shape[0], *grid, pa, pm, c)
        return x.permute(0, 5, 1, 3, 2, 4).reshape(x.shape[0], c, grid[0] * pa, grid[1] * pm)

    def forward(self, x: dict[str, torch.Tensor], timestep: torch.Tensor, y: torch.Tensor,
                mask: torch.Tensor | None = None, num_frames: int | torch.Tensor = 33,
                x_mask: torch.Tensor | None = None, ax_mask: torch.Tensor | None = None) -> dict[str, torch.Tensor | None]:
        """The velocity ``x0 - ε`` of each modality (the negated Wan prediction), fp32.

        Args:
            x: ``{"video": [B, 16, T, H, W], "audio": [B, 8, Ta, 16]}`` (those the model type has).
            timestep: [B] in [0, 1000]. y: umT5 features [B, N, 4096] (or [B, 1, N, 4096]).
            mask: [B, N], 0 at padding: those rows of ``y`` are zeroed (no key mask in attention).
            num_frames: ``t2a`` only: the clip's video frames, whose latent frames the audio positions are
                laid out against (stage 1's geometry, spec §3.6; a tensor: its first element).
            x_mask, ax_mask: frame masks of X-conditional sampling, which JavisDiT++ was not trained for.

        Returns:
            ``{"video": [B, 16, T, H, W] or None, "audio": [B, 8, Ta, 16] or None}``; the inputs are not modified.
        """
        if x_mask is not None or ax_mask is not None:
            raise UserError("X-conditional generation needs frame masks, which JavisDiT++ (v1.0) does not take; "
                            "use a v0.1 config")
        config, dtype = self.config, self.blocks[0].modulation.dtype
        video = x.get("video") if config.use_video else None
        audio = x.get("audio") if config.use_audio else None
        tokens, angles = [], []
        frames = int(num_frames.reshape(-1)[0]) if isinstance(num_frames, torch.Tensor) else int(num_frames)
        video_grid = (frames - 1) // 4 + 1, 0, 0  # t2a: stage 1's audio geometry (spec §3.6)
        if video is not None:
            vx, video_grid = self._embed_video(video)
            tokens.append(vx)
            angles.append(rope_angles_3d(video_positions(video_grid, vx.device), config.head_dim))
        num_video = tokens[0].shape[1] if tokens else 0
        if audio is not None:
            ax, audio_grid = self._embed_audio(audio)
            tokens.append(ax)
            angles.append(rope_angles_3d(audio_positions(audio_grid, video_grid, ax.device), config.head_dim))
        h = torch.cat(tokens, dim=1)
        angles = torch.cat(angles, dim=0)

        # time: rounded to the parameters' dtype, then float64 sinusoid, MLPs in fp32
        t = timestep.to(dtype).reshape(-1)
        e = fp32_linear(self.time_embedding[2], F.silu(fp32_linear(self.time_embedding[0],
                                                                   sinusoid(t, config.freq_dim).float())))
        e0 = fp32_linear(self.time_projection[1], F.silu(e)).unflatten(1, (6, -1))
        audio_e0 = fp32_linear(self.audio_time_projection[1], F.silu(e)).unflatten(1, (3, -1)) \
            if config.use_audio else None

        y = y.reshape(y.shape[0], -1, y.shape[-1]).to(dtype)
        if mask is not None:
            y = torch.where(mask.reshape(y.shape[0], -1, 1).bool(), y, torch.zeros((), dtype=dtype, device=y.device))
        context = self.text_embedding(y)

        for block in self.blocks:
            h = block(h, num_video, e0, audio_e0, context, angles)

        out: dict[str, torch.Tensor | None] = {"video": None, "audio": None}
        if video is not None:
            out["video"] = -self._unpatchify_video(self.head(h[:, :num_video], e), video_grid)
        if audio is not None:
            out["audio"] = -self._unpatchify_audio(self.audio_head(h[:, num_video:], e), audio_grid)
        return out
