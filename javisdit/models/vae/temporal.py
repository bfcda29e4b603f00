"""Open-Sora 1.2's causal temporal VAE: compresses spatial-VAE latents 4x in time (17 frames -> 5).

A MagViT-style 3-D conv net: causal convolutions (padded only at the start of time), GroupNorm +
SiLU residual blocks, two stride-2 temporal downsamplings in the encoder and two depth-to-time
upsamplings in the decoder, a diagonal Gaussian bottleneck. Shapes: [B, C, T, H, W] throughout;
H and W are never changed.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn


class CausalConv3d(nn.Module):
    """Conv3d that pads time only in front (causal) and H, W symmetrically."""

    def __init__(self, in_channels: int, out_channels: int, kernel_size=3, stride=(1, 1, 1), bias: bool = True):
        super().__init__()
        kt, kh, kw = (kernel_size,) * 3 if isinstance(kernel_size, int) else kernel_size
        self.padding = (kw // 2, kw // 2, kh // 2, kh // 2, kt - 1 + 1 - stride[0], 0)
        self.conv = nn.Conv3d(in_channels, out_channels, (kt, kh, kw), stride=stride, bias=bias)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.conv(F.pad(x, self.padding))


class ResBlock(nn.Module):
    def __init__(self, in_channels: int, out_channels: int, num_groups: int):
        super().__init__()
        self.norm1 = nn.GroupNorm(num_groups, in_channels)
        self.conv1 = CausalConv3d(in_channels, out_channels, 3, bias=False)
        self.norm2 = nn.GroupNorm(num_groups, out_channels)
        self.conv2 = CausalConv3d(out_channels, out_channels, 3, bias=False)
        if in_channels != out_channels:
            self.conv3 = CausalConv3d(in_channels, out_channels, 1, bias=False)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        h = self.conv1(F.silu(self.norm1(x)))
        h = self.conv2(F.silu(self.norm2(h)))
        return h + (self.conv3(x) if hasattr(self, "conv3") else x)


class Encoder(nn.Module):
    def __init__(self, in_channels: int, out_channels: int, filters: int, num_res_blocks: int,
                 channel_multipliers: tuple[int, ...], temporal_downsample: tuple[bool, ...], num_groups: int):
        super().__init__()
        self.conv_in = CausalConv3d(in_channels, filters, 3, bias=False)
        self.block_res_blocks = nn.ModuleList()
        self.conv_blocks = nn.ModuleList()
        prev = filters
        for i, multiplier in enumerate(channel_multipliers):
            width = filters * multiplier
            blocks = nn.ModuleList()
            for _ in range(num_res_blocks):
                blocks.append(ResBlock(prev, width, num_groups))
                prev = width
            self.block_res_blocks.append(blocks)
            if i < len(channel_multipliers) - 1:
                downsample = temporal_downsample[i]
                self.conv_blocks.append(CausalConv3d(prev, width, 3, stride=(2, 1, 1)) if downsample else nn.Identity())
        self.res_blocks = nn.ModuleList(ResBlock(prev, prev, num_groups) for _ in range(num_res_blocks))
        self.norm1 = nn.GroupNorm(num_groups, prev)
        self.conv2 = CausalConv3d(prev, out_channels, 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.conv_in(x)
        for i, blocks in enumerate(self.block_res_blocks):
            for block in blocks:
                x = block(x)
            if i < len(self.conv_blocks):
                x = self.conv_blocks[i](x)
        for block in self.res_blocks:
            x = block(x)
        return self.conv2(F.silu(self.norm1(x)))


class Decoder(nn.Module):
    def __init__(self, latent_channels: int, out_channels: int, filters: int, num_res_blocks: int,
                 channel_multipliers: tuple[int, ...], temporal_downsample: tuple[bool, ...], num_groups: int):
        super().__init__()
        self.temporal_upsample = temporal_downsample
        prev = filters * channel_multipliers[-1]
        self.conv1 = CausalConv3d(latent_channels, prev, 3)
        self.res_blocks = nn.ModuleList(ResBlock(prev, prev, num_groups) for _ in range(num_res_blocks))
        blocks_reversed, convs_reversed = [], []
        for i in reversed(range(len(channel_multipliers))):
            width = filters * channel_multipliers[i]
            blocks = nn.ModuleList()
            for _ in range(num_res_blocks):
                blocks.append(ResBlock(prev, width, num_groups))
                prev = width
            blocks_reversed.append(blocks)
            if i > 0:  # depth-to-time upsampling: channels x2, then channel 2c+t -> time offset t
                upsample = temporal_downsample[i - 1]
                convs_reversed.append(CausalConv3d(prev, prev * 2, 3) if upsample else nn.Identity())
        self.block_res_blocks = nn.ModuleList(reversed(blocks_reversed))
        self.conv_blocks = nn.ModuleList(reversed(convs_reversed))
        self.norm1 = nn.GroupNorm(num_groups, prev)
        self.conv_out = CausalConv3d(prev, out_channels, 3)

    def forward(self, z: torch.Tensor) -> torch.Tensor:
        x = self.conv1(z)
        for block in self.res_blocks:
            x = block(x)
        for i in reversed(range(len(self.block_res_blocks))):
            for block in self.block_res_blocks[i]:
                x = block(x)
            if i > 0:
                x = self.conv_blocks[i - 1](x)
                if self.temporal_upsample[i - 1]:
                    B, C2, T, H, W = x.shape
                    x = x.view(B, C2 // 2, 2, T, H, W).permute(0, 1, 3, 2, 4, 5).reshape(B, C2 // 2, 2 * T, H, W)
        return self.conv_out(F.silu(self.norm1(x)))


class TemporalVAE(nn.Module):
    """Encodes [B, 4, T, H, W] spatial latents to a Gaussian over [B, 4, ceil(T / 4), H, W] and back."""

    def __init__(self, channels: int = 4, latent_channels: int = 4, filters: int = 128, num_res_blocks: int = 4,
                 channel_multipliers: tuple[int, ...] = (1, 2, 2, 4),
                 temporal_downsample: tuple[bool, ...] = (False, True, True), num_groups: int = 32):
        super().__init__()
        self.time_factor = 2 ** sum(temporal_downsample)
        args = (filters, num_res_blocks, tuple(channel_multipliers), tuple(temporal_downsample), num_groups)
        self.encoder = Encoder(channels, 2 * latent_channels, *args)
        self.quant_conv = CausalConv3d(2 * latent_channels, 2 * latent_channels, 1)
        self.post_quant_conv = CausalConv3d(latent_channels, latent_channels, 1)
        self.decoder = Decoder(latent_channels, channels, *args)

    def _front_padding(self, num_frames: int) -> int:
        return -num_frames % self.time_factor

    def encode(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """x [B, C, T, H, W] -> (mean, logvar), each [B, latent, ceil(T / 4), H, W]."""
        x = F.pad(x, (0, 0, 0, 0, self._front_padding(x.shape[2]), 0))
        moments = self.quant_conv(self.encoder(x)).to(x.dtype)
        mean, logvar = moments.chunk(2, dim=1)
        return mean, logvar.clamp(-30.0, 20.0)

    def decode(self, z: torch.Tensor, num_frames: int) -> torch.Tensor:
        """z [B, latent, T', H, W] -> [B, C, num_frames, H, W] (the front padding of encoding removed)."""
        x = self.decoder(self.post_quant_conv(z))
        return x[:, :, self._front_padding(num_frames):]
