"""Stage-2 video-audio encoders of the ST-prior estimator (JavisDiT §3.3, training only).

Video and audio latents are patch-embedded into 128-d tokens, resampled to the prior's 32 spatial
(per frame) or 32 temporal (per spatial token) slots, and merged per slot by bidirectional
cross-attention into one embedding per slot: the target the prior's tokens must match for a
synchronised pair and miss for an asynchronous one. Shapes: video latent [N, 4, T, H, W], audio
latent [N, 8, Ta, M]; tokens [N, T, S, C]; slot embeddings [N, 32, C].
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import nn

from javisdit.models.layers.attention import BiCrossAttention, SelfAttention
from javisdit.models.layers.embeddings import PatchEmbed3D, sincos_1d, sincos_2d
from javisdit.models.layers.mlp import Mlp
from javisdit.models.layers.norms import make_layer_norm


class CrossModalityMergingBlock(nn.Module):
    """Per slot: video and audio token sequences cross-attend (residual), are averaged over their
    sequence and summed, then a pre-LN MLP (residual)."""

    def __init__(self, dim: int, num_heads: int, mlp_ratio: float = 4.0, layernorm_kernel: bool = False):
        super().__init__()
        self.norm_video = make_layer_norm(dim, use_kernel=layernorm_kernel)
        self.norm_audio = make_layer_norm(dim, use_kernel=layernorm_kernel)
        self.cross_attn = BiCrossAttention(dim, dim, dim, num_heads)
        self.mlp_norm = make_layer_norm(dim, use_kernel=layernorm_kernel)
        self.mlp = Mlp(dim, int(dim * mlp_ratio))

    def forward(self, video: torch.Tensor, audio: torch.Tensor) -> torch.Tensor:
        """video [N, K, Lv, C], audio [N, K, La, C] (K slots) -> [N, K, C]."""
        N, K, Lv, C = video.shape
        v, a = video.reshape(N * K, Lv, C), audio.reshape(N * K, audio.shape[2], C)
        dv, da = self.cross_attn(self.norm_video(v), self.norm_audio(a))
        x = (v + dv).mean(dim=1) + (a + da).mean(dim=1)
        x = x + self.mlp(self.mlp_norm(x))
        return x.view(N, K, C)


class AttentionDiscriminator(nn.Module):
    """Tells a (prior, pair embedding) token sequence of a synchronised pair from an asynchronous one:
    a class token attends over the sequence and a linear layer gives one logit."""

    def __init__(self, dim: int, num_heads: int, qk_norm: bool = True):
        super().__init__()
        self.cls_token = nn.Parameter(torch.zeros(1, 1, dim))
        self.attn = SelfAttention(dim, num_heads, qk_norm=qk_norm)
        self.classifier = nn.Linear(dim, 1)
        nn.init.normal_(self.cls_token, std=0.02)

    def forward(self, tokens: torch.Tensor) -> torch.Tensor:
        """tokens [N, L, C] -> logits [N]."""
        x = torch.cat([self.cls_token.expand(tokens.shape[0], -1, -1).to(tokens.dtype), tokens], dim=1)
        return self.classifier(self.attn(x)[:, 0]).squeeze(-1)


def resample(tokens: torch.Tensor, size: int, dim: int) -> torch.Tensor:
    """Linear interpolation of ``tokens`` along ``dim`` (1 or 2 of [N, A, B, C]) to ``size`` entries."""
    moved = tokens.movedim(dim, -1)  # [..., C, L]
    shape = moved.shape
    out = F.interpolate(moved.reshape(-1, 1, shape[-1]).float(), size=size, mode="linear")
    return out.reshape(*shape[:-1], size).to(tokens.dtype).movedim(-1, dim)


class VAEncoderMixin:
    """The stage-2 encoders of ``STIBPrior``: patch embeddings of both latents, one merging block per
    mode, the discriminator. They are registered on the prior itself, so that their state-dict names
    are the original's (``video_embedder.*``, ``va_spatial_encoder.*``, ``discriminator.*``, ...)."""

    def _build_va_encoder(self, dim: int, spatial_slots: int, temporal_slots: int, video_in_channel: int = 4,
                          video_patch_size=(1, 2, 2), video_input_sq_size: int = 512, audio_in_channel: int = 8,
                          audio_patch_size=(2, 2), num_heads: int = 4, mlp_ratio: float = 4.0, qk_norm: bool = True,
                          layernorm_kernel: bool = False) -> None:
        self.va_dim, self.spatial_slots, self.temporal_slots = dim, spatial_slots, temporal_slots
        self.video_input_sq_size = video_input_sq_size
        self.video_embedder = PatchEmbed3D(video_patch_size, video_in_channel, dim)
        self.audio_embedder = nn.Conv2d(audio_in_channel, dim, kernel_size=audio_patch_size, stride=audio_patch_size)
        self.va_spatial_encoder = CrossModalityMergingBlock(dim, num_heads, mlp_ratio, layernorm_kernel)
        self.va_temporal_encoder = CrossModalityMergingBlock(dim, num_heads, mlp_ratio, layernorm_kernel)
        self.discriminator = AttentionDiscriminator(dim, num_heads, qk_norm=qk_norm)

    def video_tokens(self, video: torch.Tensor, frame_height: float, frame_width: float) -> torch.Tensor:
        """[N, 4, T, H, W] -> [N, T', S, C] with 2-D sin-cos positions (as the DiT's video tower)."""
        pt, ph, pw = self.video_embedder.patch_size
        T, H, W = (-(-n // p) for n, p in zip(video.shape[-3:], (pt, ph, pw)))
        tokens = self.video_embedder(video).view(video.shape[0], T, H * W, self.va_dim)
        scale = math.sqrt(frame_height * frame_width) / self.video_input_sq_size
        pos = sincos_2d(H, W, self.va_dim, scale, round(math.sqrt(H * W)), tokens.dtype, tokens.device)
        return tokens + pos[:, None]

    def audio_tokens(self, audio: torch.Tensor) -> torch.Tensor:
        """[N, 8, Ta, M] -> [N, Ta', M', C] with 1-D sin-cos positions over the mel axis."""
        tokens = self.audio_embedder(audio).permute(0, 2, 3, 1)
        return tokens + sincos_1d(tokens.shape[2], self.va_dim, tokens.dtype, tokens.device)[:, None]

    def spatial_embedding(self, video_tokens: torch.Tensor, audio_tokens: torch.Tensor) -> torch.Tensor:
        """Per spatial slot, merge the frame sequences -> [N, 32, C]."""
        v = resample(video_tokens, self.spatial_slots, dim=2).transpose(1, 2)  # [N, 32, T', C]
        a = resample(audio_tokens, self.spatial_slots, dim=2).transpose(1, 2)  # [N, 32, Ta', C]
        return self.va_spatial_encoder(v, a)

    def temporal_embedding(self, video_tokens: torch.Tensor, audio_tokens: torch.Tensor) -> torch.Tensor:
        """Per temporal slot, merge the spatial token sets -> [N, 32, C]."""
        v = resample(video_tokens, self.temporal_slots, dim=1)  # [N, 32, S, C]
        a = resample(audio_tokens, self.temporal_slots, dim=1)  # [N, 32, M', C]
        return self.va_temporal_encoder(v, a)
