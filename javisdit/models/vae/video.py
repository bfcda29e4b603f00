"""``OpenSoraVAE_V1_2``: Open-Sora 1.2's video VAE (pixels [B, 3, T, H, W] in [-1, 1] <-> latents
[B, 4, T', H/8, W/8]).

Frames go through SDXL's image VAE (diffusers ``AutoencoderKL``, scaled by 0.18215, 4 frames at a
time), then the causal temporal VAE compresses each 17-frame chunk to 5 latent frames; latents are
normalised per channel with the checkpoint's ``shift`` and ``scale``. State-dict names equal the
published ``hpcai-tech/OpenSora-VAE-v1.2`` (``spatial_vae.module.*``, ``temporal_vae.*``, ``scale``,
``shift``). Decoding works chunk by chunk, so memory grows with the clip only through its output.
"""

from __future__ import annotations

from typing import Any

import torch
from torch import nn

from javisdit.models import geometry
from javisdit.models.vae.temporal import TemporalVAE
from javisdit.utils.seed import randn

SPATIAL_SCALING = 0.18215
SHIFT = (-0.10, 0.34, 0.27, 0.98)
SCALE = (3.85, 2.32, 2.33, 3.06)

#: Architectures: the SDXL image VAE and the v1.2 temporal VAE, a tiny pair for tests, JavisDiT-mini's.
VIDEO_VAE_PRESETS: dict[str, dict[str, Any]] = {
    "v1.2": dict(
        spatial=dict(in_channels=3, out_channels=3, latent_channels=4, block_out_channels=(128, 256, 512, 512),
                     down_block_types=("DownEncoderBlock2D",) * 4, up_block_types=("UpDecoderBlock2D",) * 4,
                     layers_per_block=2, norm_num_groups=32, sample_size=1024),
        temporal=dict(filters=128, num_res_blocks=4, channel_multipliers=(1, 2, 2, 4), num_groups=32),
    ),
    "tiny": dict(
        spatial=dict(in_channels=3, out_channels=3, latent_channels=4, block_out_channels=(8, 8, 8, 8),
                     down_block_types=("DownEncoderBlock2D",) * 4, up_block_types=("UpDecoderBlock2D",) * 4,
                     layers_per_block=1, norm_num_groups=4, sample_size=64),
        temporal=dict(filters=8, num_res_blocks=1, channel_multipliers=(1, 2, 2, 4), num_groups=4),
    ),
    # JavisDiT-mini's (configs/mini): trained from scratch on 64x64 bouncing balls. One group per GroupNorm:
    # with a few channels per group, a flat background's colour is normalised away and hard to learn back.
    # Temporal stride 2: at 4, four positions of a fast ball share one latent cell of 4 channels, and a
    # temporal VAE of this size loses the ball (see README, JavisDiT-mini).
    "mini": dict(
        spatial=dict(in_channels=3, out_channels=3, latent_channels=4, block_out_channels=(16, 32, 32, 32),
                     down_block_types=("DownEncoderBlock2D",) * 4, up_block_types=("UpDecoderBlock2D",) * 4,
                     layers_per_block=1, norm_num_groups=1, sample_size=64),
        temporal=dict(filters=16, num_res_blocks=1, channel_multipliers=(1, 2, 2, 4), num_groups=1,
                      temporal_downsample=(False, True, False)),  # 2 frames a latent frame (v1.2: 4)
    ),
}


class _SpatialVAE(nn.Module):
    """Holds the diffusers AutoencoderKL as ``module`` (the checkpoint's key prefix)."""

    def __init__(self, config: dict[str, Any]):
        super().__init__()
        from diffusers import AutoencoderKL

        self.module = AutoencoderKL(**config)


class OpenSoraVideoVAE(nn.Module):
    out_channels = geometry.VIDEO_LATENT_CHANNELS

    def __init__(self, preset: str = "v1.2", micro_frame_size: int = geometry.VIDEO_CHUNK_FRAMES,
                 micro_batch_size: int = 4, sample_posterior: bool = True):
        super().__init__()
        if preset not in VIDEO_VAE_PRESETS:
            raise ValueError(f"unknown video VAE preset {preset!r}; valid: {', '.join(VIDEO_VAE_PRESETS)}")
        if micro_frame_size != geometry.VIDEO_CHUNK_FRAMES:
            raise ValueError(f"micro_frame_size must be {geometry.VIDEO_CHUNK_FRAMES} (the temporal VAE was "
                             f"trained on such chunks), got {micro_frame_size}")
        spec = VIDEO_VAE_PRESETS[preset]
        self.micro_batch_size = micro_batch_size
        self.sample_posterior = sample_posterior
        self.spatial_vae = _SpatialVAE(dict(spec["spatial"]))
        self.temporal_vae = TemporalVAE(**spec["temporal"])
        self.register_buffer("scale", torch.tensor(SCALE).view(1, 4, 1, 1, 1))
        self.register_buffer("shift", torch.tensor(SHIFT).view(1, 4, 1, 1, 1))

    def fill_derived_keys(self, state_dict: dict, prefix: str = "") -> None:
        """Checkpoints may leave out the normalisation constants."""
        state_dict.setdefault(prefix + "scale", torch.tensor(SCALE).view(1, 4, 1, 1, 1))
        state_dict.setdefault(prefix + "shift", torch.tensor(SHIFT).view(1, 4, 1, 1, 1))

    def channels_last(self) -> OpenSoraVideoVAE:
        """Store the convolution weights channels-last (``channels_last`` for the spatial VAE's 2-D
        convolutions, ``channels_last_3d`` for the temporal VAE's 3-D ones), in place; returns self.

        oneDNN (CPU) and cuDNN then run the convolutions and the layers between them in the layout their
        kernels want instead of reordering activations: the same numbers up to the order of the sums. On a
        2-core CPU the 240p / 4 s decode took 12 % less time in bf16 (125 -> 110 s) for 0.5 GB more peak
        memory, and the same in fp32 (``scripts/benchmarks/vaes.py --decode-240p``). Inference builds the VAE
        so; checkpoints written from such a model are contiguous copies (``save_pretrained`` makes them).
        """
        for module in self.modules():
            if isinstance(module, nn.Conv2d):
                module.to(memory_format=torch.channels_last)
            elif isinstance(module, nn.Conv3d):
                module.to(memory_format=torch.channels_last_3d)
        return self

    @property
    def time_stride(self) -> int:
        """Frames per latent frame of the temporal VAE: 4 for v1.2 (the preset's ``temporal_downsample``)."""
        return self.temporal_vae.time_factor

    def get_latent_size(self, size: tuple[int, int, int]) -> tuple[int, int, int]:
        """(T, H, W) -> (T', H', W'), e.g. (102, 240, 426) -> (30, 30, 53)."""
        return geometry.video_latent_size(*size, time_stride=self.time_stride)

    def _sample(self, mean: torch.Tensor, logvar: torch.Tensor, generator=None) -> torch.Tensor:
        if not self.sample_posterior:
            return mean
        noise = randn(mean.shape, generator, device=mean.device, dtype=mean.dtype)  # rows: samples
        return mean + torch.exp(0.5 * logvar) * noise

    def _frames(self, x: torch.Tensor) -> torch.Tensor:
        """[B, C, T, H, W] -> [B·T, C, H, W]."""
        return x.transpose(1, 2).flatten(0, 1)

    def _unframes(self, x: torch.Tensor, B: int) -> torch.Tensor:
        return x.unflatten(0, (B, -1)).transpose(1, 2)

    @torch.no_grad()
    def encode(self, x: torch.Tensor, generator=None) -> torch.Tensor:
        """Pixels [B, 3, T, H, W] in [-1, 1] -> normalised latents [B, 4, T', H/8, W/8].

        ``generator``: the posterior samples' random source, a generator or one per sample.
        """
        return self.encode_temporal(self.encode_spatial(x, generator), generator)

    @torch.no_grad()
    def encode_spatial(self, x: torch.Tensor, generator=None) -> torch.Tensor:
        """The first half of ``encode``: pixels [B, 3, T, H, W] -> the spatial VAE's latents of every frame,
        x 0.18215 [B, 4, T, H/8, W/8] (what the temporal VAE reads)."""
        if x.dim() != 5 or x.shape[1] != 3 or min(x.shape[2:]) < 1:
            raise ValueError(f"video must be [B, 3, T, H, W] with T, H, W >= 1, got {list(x.shape)}")
        B, vae = x.shape[0], self.spatial_vae.module
        dists = [vae.encode(chunk).latent_dist for chunk in self._frames(x.to(vae.dtype)).split(self.micro_batch_size)]
        # frames of one sample are sampled together, so per-sample generators see whole samples
        mean = torch.cat([d.mean for d in dists]).unflatten(0, (B, -1))
        logvar = torch.cat([d.logvar for d in dists]).unflatten(0, (B, -1))
        z = self._sample(mean, logvar, generator).flatten(0, 1) * SPATIAL_SCALING
        return self._unframes(z, B)

    @torch.no_grad()
    def encode_temporal(self, z: torch.Tensor, generator=None) -> torch.Tensor:
        """The second half of ``encode``: ``encode_spatial``'s latents [B, 4, T, h, w] -> normalised latents
        [B, 4, T', h, w], 17 frames a chunk."""
        if z.dim() != 5 or z.shape[1] != self.out_channels:
            raise ValueError(f"spatial latents must be [B, {self.out_channels}, T, h, w], got {list(z.shape)}")
        chunks = [self._sample(*self.temporal_vae.encode(part), generator)
                  for part in z.split(geometry.VIDEO_CHUNK_FRAMES, dim=2)]
        return (torch.cat(chunks, dim=2) - self.shift.to(z.dtype)) / self.scale.to(z.dtype)

    @torch.no_grad()
    def decode(self, z: torch.Tensor, num_frames: int) -> torch.Tensor:
        """Normalised latents [B, 4, T', h, w] -> pixels [B, 3, num_frames, 8h, 8w] in about [-1, 1]."""
        expected = geometry.video_latent_frames(num_frames, self.time_stride)
        if z.dim() != 5 or z.shape[1] != self.out_channels or z.shape[2] != expected:
            raise ValueError(f"latents for {num_frames} frames must be [B, 4, {expected}, h, w], got {list(z.shape)}")
        B, vae = z.shape[0], self.spatial_vae.module
        z = z.to(vae.dtype) * self.scale.to(vae.dtype) + self.shift.to(vae.dtype)
        frames_left, video = num_frames, []
        for part in z.split(geometry.video_chunk_latents(self.time_stride), dim=2):
            n = min(geometry.VIDEO_CHUNK_FRAMES, frames_left)
            spatial = self.temporal_vae.decode(part, num_frames=n)
            frames = [vae.decode(chunk / SPATIAL_SCALING).sample for chunk in self._frames(spatial).split(self.micro_batch_size)]
            video.append(self._unframes(torch.cat(frames), B))
            frames_left -= n
        return torch.cat(video, dim=2)
