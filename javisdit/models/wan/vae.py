"""``Wan2_1_T2V_1_3B_VAE``: the Wan2.1 video VAE, JavisDiT++'s (v1.0) frozen video autoencoder (spec
MODEL_V1.md §6).

Pixels [B, 3, T, H, W] in [-1, 1] <-> latents [B, 16, 1 + (T-1)/4, H/8, W/8]. Every 3-D convolution is causal
in time (its padding is all on the past side), so frame t never sees frames after it: the first frame is encoded
alone and each later group of 4 frames becomes one latent frame; decoding turns the first latent frame into 1 frame
and each later one into 4. Encoding runs 1 frame, then 4 at a time, decoding one latent frame at a time; each causal
layer keeps the last frames it saw in a cache (``Cache``), so a 5 s 480p clip is processed in bounded memory and the
result equals one pass over the whole clip. Latents are the posterior mean, normalised per channel.

State-dict names equal ``Wan2.1_VAE.pth`` of ``Wan-AI/Wan2.1-T2V-1.3B`` (bare keys ``encoder.*``, ``conv1.*``,
``conv2.*``, ``decoder.*``; inside ``WanVideoVAE`` they carry the prefix ``model.``). The empty slots of the
``nn.Sequential`` containers (activations, dropout, padding, upsampling) keep the file's indices.

Shape legend: B batch, C channels, T frames (pixel or latent), H W height and width, t frames of one chunk.
"""

from __future__ import annotations

import itertools
import logging
from pathlib import Path

import torch
import torch.nn.functional as F
from torch import nn
from torch.nn.modules.utils import _triple

from javisdit.errors import ConfigError, MissingWeightsError
from javisdit.models.loading import load_state_dict_checked, read_state_dict
from javisdit.registry import MODELS
from javisdit.utils.dtype import torch_dtype

logger = logging.getLogger(__name__)

#: Per-channel statistics of the Wan2.1 latents: encode gives (mu - mean) / std, decode inverts it.
LATENT_MEAN = (-0.7571, -0.7089, -0.9113, 0.1075, -0.1745, 0.9653, -0.1517, 1.5508,
               0.4134, -0.0715, 0.5517, -0.3632, -0.1922, -0.9497, 0.2503, -0.2921)
LATENT_STD = (2.8184, 1.4541, 2.3275, 2.6558, 1.2196, 1.7708, 2.6052, 2.0743,
              3.2687, 2.1526, 2.8652, 1.5579, 1.6382, 1.1253, 2.8251, 1.9160)
VAE_STRIDE = (4, 8, 8)  # (time, height, width) compression, fixed by the architecture
DIT_PATCH_SIZE = (1, 2, 2)  # the DiT's patch: latent H and W are rounded up to its multiples
HUB_REPO, HUB_FILE = "Wan-AI/Wan2.1-T2V-1.3B", "Wan2.1_VAE.pth"

#: A causal layer -> what it keeps between the chunks of one clip (its last input frames, or a flag).
Cache = dict[nn.Module, object]


def _like(param: torch.Tensor | None, x: torch.Tensor) -> torch.Tensor | None:
    """``param`` in ``x``'s dtype: weights stored in bf16 compute in the activations' dtype (fp32)."""
    return param if param is None or param.dtype == x.dtype else param.to(x.dtype)


# ----- layers -------------------------------------------------------------------------------------------


class RMSNorm(nn.Module):
    """x / ||x|| over channels, times sqrt(C) and a learnt ``gamma`` [C, 1, 1(, 1)] (no bias)."""

    def __init__(self, channels: int, spatial_dims: int = 3):
        super().__init__()
        self.scale = channels**0.5
        self.gamma = nn.Parameter(torch.ones(channels, *(1,) * spatial_dims))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return F.normalize(x, dim=1) * self.scale * _like(self.gamma, x)


class Conv2d(nn.Conv2d):
    """A 2-D convolution that computes in the input's dtype whatever its weights' dtype."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self._conv_forward(x, _like(self.weight, x), _like(self.bias, x))


class CausalConv3d(nn.Conv3d):
    """A 3-D convolution padded by ``2 * padding[0]`` frames on the past side only (zeros at the clip's start,
    the previous chunk's last frames after it, read from and written to the cache)."""

    def __init__(self, in_channels: int, out_channels: int, kernel_size: int | tuple[int, int, int],
                 stride: int | tuple[int, int, int] = 1, padding: int | tuple[int, int, int] = 0):
        super().__init__(in_channels, out_channels, kernel_size, stride=stride, padding=0)
        pad_t, pad_h, pad_w = _triple(padding)
        self.context = 2 * pad_t  # past frames each output frame reads beyond its own
        self.spatial_padding = (pad_w, pad_w, pad_h, pad_h)

    def forward(self, x: torch.Tensor, cache: Cache | None = None) -> torch.Tensor:
        past = cache.get(self) if cache is not None and self.context else None
        if past is not None:
            x = torch.cat([past, x], dim=2)
        if cache is not None and self.context:
            cache[self] = x[:, :, -self.context:].clone()  # a copy: a view would keep the whole chunk alive
        zeros = self.context - (past.shape[2] if past is not None else 0)
        if zeros or any(self.spatial_padding):
            x = F.pad(x, (*self.spatial_padding, zeros, 0))
        return self._conv_forward(x, _like(self.weight, x), _like(self.bias, x))


def _run(layers: nn.Sequential, x: torch.Tensor, cache: Cache) -> torch.Tensor:
    for layer in layers:
        x = layer(x, cache) if isinstance(layer, CausalConv3d) else layer(x)
    return x


class ResidualBlock(nn.Module):
    """(RMSNorm, SiLU, causal 3x3x3 conv) twice, dropout before the second conv; a 1x1x1 shortcut when the
    channels change."""

    def __init__(self, in_channels: int, out_channels: int, dropout: float = 0.0):
        super().__init__()
        self.residual = nn.Sequential(
            RMSNorm(in_channels), nn.SiLU(), CausalConv3d(in_channels, out_channels, 3, padding=1),
            RMSNorm(out_channels), nn.SiLU(), nn.Dropout(dropout), CausalConv3d(out_channels, out_channels, 3, padding=1),
        )
        self.shortcut = CausalConv3d(in_channels, out_channels, 1) if in_channels != out_channels else nn.Identity()

    def forward(self, x: torch.Tensor, cache: Cache) -> torch.Tensor:
        return _run(self.residual, x, cache) + self.shortcut(x)


class FrameAttention(nn.Module):
    """Single-head self-attention over the H x W positions of each frame (no mixing across time)."""

    def __init__(self, channels: int):
        super().__init__()
        self.norm = RMSNorm(channels, spatial_dims=2)
        self.to_qkv = Conv2d(channels, channels * 3, 1)
        self.proj = Conv2d(channels, channels, 1)

    def forward(self, x: torch.Tensor, cache: Cache | None = None) -> torch.Tensor:
        B, C, T, H, W = x.shape
        frames = x.transpose(1, 2).reshape(B * T, C, H, W)
        qkv = self.to_qkv(self.norm(frames)).flatten(2).transpose(1, 2).unsqueeze(1)  # [B*T, 1, H*W, 3C]
        out = F.scaled_dot_product_attention(*qkv.chunk(3, dim=-1))  # q, k, v: channels [0:C], [C:2C], [2C:3C]
        out = self.proj(out.squeeze(1).transpose(1, 2).reshape(B * T, C, H, W))
        return x + out.reshape(B, T, C, H, W).transpose(1, 2)


class Resample(nn.Module):
    """x2 spatial down- or upsampling of every frame, with a x2 temporal one for the ``*3d`` modes.

    ``down3d``: after the spatial step, a (3,1,1) conv of stride 2 over frames 0..T-1 (no padding), the first
    frame kept as it is: [B, C, 1 + 2t, H, W] -> [B, C, 1 + t, H/2, W/2].
    ``up3d``: before the spatial step, the first frame is kept as it is and the others go through a causal
    (3,1,1) conv to 2C channels, read as two frames of C: [B, C, 1 + t, H, W] -> [B, C/2, 1 + 2t, 2H, 2W].
    The upsampling modes halve the channels.
    """

    def __init__(self, channels: int, mode: str):
        super().__init__()
        self.mode = mode
        if mode in ("up2d", "up3d"):
            self.resample = nn.Sequential(nn.Upsample(scale_factor=(2.0, 2.0), mode="nearest-exact"),
                                          Conv2d(channels, channels // 2, 3, padding=1))
        elif mode in ("down2d", "down3d"):
            self.resample = nn.Sequential(nn.ZeroPad2d((0, 1, 0, 1)), Conv2d(channels, channels, 3, stride=2))
        else:
            raise ValueError(f"unknown resample mode {mode!r}")
        if mode == "up3d":
            self.time_conv = CausalConv3d(channels, channels * 2, (3, 1, 1), padding=(1, 0, 0))
        elif mode == "down3d":
            self.time_conv = CausalConv3d(channels, channels, (3, 1, 1), stride=(2, 1, 1))

    def forward(self, x: torch.Tensor, cache: Cache) -> torch.Tensor:
        if self.mode == "up3d":
            x = self._upsample_time(x, cache)
        B, T = x.shape[0], x.shape[2]
        x = self.resample(x.transpose(1, 2).flatten(0, 1)).unflatten(0, (B, T)).transpose(1, 2)
        if self.mode == "down3d":
            x = self._downsample_time(x, cache)
        return x

    def _upsample_time(self, x: torch.Tensor, cache: Cache) -> torch.Tensor:
        first = x[:, :, :0] if cache.get(self) else x[:, :, :1]  # the clip's first frame is not doubled
        cache[self] = True
        rest = x[:, :, first.shape[2]:]
        if rest.shape[2] == 0:
            return first
        y = self.time_conv(rest, cache)  # [B, 2C, t, H, W]; its causal context starts at frame 1
        B, C2, t, H, W = y.shape
        y = y.unflatten(1, (2, C2 // 2)).permute(0, 2, 3, 1, 4, 5).reshape(B, C2 // 2, 2 * t, H, W)
        return torch.cat([first, y], dim=2)

    def _downsample_time(self, x: torch.Tensor, cache: Cache) -> torch.Tensor:
        past = cache.get(self)
        first, frames = (x[:, :, :1], x) if past is None else (x[:, :, :0], torch.cat([past, x], dim=2))
        n = (frames.shape[2] - 1) // 2  # windows of 3 frames at stride 2
        cache[self] = frames[:, :, 2 * n:].clone()  # the next window starts there
        if n == 0:
            return first
        return torch.cat([first, self.time_conv(frames[:, :, :2 * n + 1])], dim=2)


# ----- encoder, decoder, network ------------------------------------------------------------------------


class Encoder(nn.Module):
    """[B, 3, 1 + 4t, H, W] -> [B, 2 * z_dim, 1 + t, H/8, W/8] (mean and log-variance, before ``conv1``)."""

    def __init__(self, dim: int, z_dim: int, dim_mult: tuple[int, ...], num_res_blocks: int,
                 temporal_downsample: tuple[bool, ...], dropout: float = 0.0):
        super().__init__()
        dims = [dim * m for m in (1, *dim_mult)]
        self.conv1 = CausalConv3d(3, dims[0], 3, padding=1)
        blocks: list[nn.Module] = []
        for level, (channels, out_channels) in enumerate(itertools.pairwise(dims)):
            for _ in range(num_res_blocks):
                blocks.append(ResidualBlock(channels, out_channels, dropout))
                channels = out_channels
            if level < len(dim_mult) - 1:
                blocks.append(Resample(out_channels, "down3d" if temporal_downsample[level] else "down2d"))
        self.downsamples = nn.Sequential(*blocks)
        C = dims[-1]
        self.middle = nn.Sequential(ResidualBlock(C, C, dropout), FrameAttention(C), ResidualBlock(C, C, dropout))
        self.head = nn.Sequential(RMSNorm(C), nn.SiLU(), CausalConv3d(C, 2 * z_dim, 3, padding=1))

    def forward(self, x: torch.Tensor, cache: Cache) -> torch.Tensor:
        x = self.conv1(x, cache)
        for block in (*self.downsamples, *self.middle):
            x = block(x, cache)
        return _run(self.head, x, cache)


class Decoder(nn.Module):
    """[B, z_dim, 1 + t, h, w] -> [B, 3, 1 + 4t, 8h, 8w]."""

    def __init__(self, dim: int, z_dim: int, dim_mult: tuple[int, ...], num_res_blocks: int,
                 temporal_downsample: tuple[bool, ...], dropout: float = 0.0):
        super().__init__()
        dims = [dim * m for m in (dim_mult[-1], *dim_mult[::-1])]
        temporal_upsample = temporal_downsample[::-1]
        C = dims[0]
        self.conv1 = CausalConv3d(z_dim, C, 3, padding=1)
        self.middle = nn.Sequential(ResidualBlock(C, C, dropout), FrameAttention(C), ResidualBlock(C, C, dropout))
        blocks: list[nn.Module] = []
        channels = C
        for level, out_channels in enumerate(dims[1:]):
            for _ in range(num_res_blocks + 1):
                blocks.append(ResidualBlock(channels, out_channels, dropout))
                channels = out_channels
            if level < len(dim_mult) - 1:
                blocks.append(Resample(out_channels, "up3d" if temporal_upsample[level] else "up2d"))
                channels = out_channels // 2
        self.upsamples = nn.Sequential(*blocks)
        self.head = nn.Sequential(RMSNorm(channels), nn.SiLU(), CausalConv3d(channels, 3, 3, padding=1))

    def forward(self, z: torch.Tensor, cache: Cache) -> torch.Tensor:
        x = self.conv1(z, cache)
        for block in (*self.middle, *self.upsamples):
            x = block(x, cache)
        return _run(self.head, x, cache)


class WanVAENetwork(nn.Module):
    """The Wan2.1 VAE network (keys of ``Wan2.1_VAE.pth``): encoder, ``conv1`` (1x1x1 on mean ‖ log-variance),
    ``conv2`` (1x1x1 on the latent), decoder. Unnormalised latents; see ``WanVideoVAE`` for the interface.

    ``encode``/``decode`` process the frames they are given as the continuation of what the same ``cache`` saw
    before (a fresh cache: the clip's start). A whole clip in one call equals the same clip in chunks of 1 frame
    then multiples of 4 (encode) or of any size (decode).
    """

    def __init__(self, dim: int = 96, z_dim: int = 16, dim_mult: tuple[int, ...] = (1, 2, 4, 4),
                 num_res_blocks: int = 2, temporal_downsample: tuple[bool, ...] = (False, True, True),
                 dropout: float = 0.0):
        super().__init__()
        if len(temporal_downsample) != len(dim_mult) - 1:
            raise ValueError(f"temporal_downsample needs {len(dim_mult) - 1} entries, got {temporal_downsample}")
        arch = (dim, z_dim, tuple(dim_mult), num_res_blocks, tuple(temporal_downsample), dropout)
        self.z_dim = z_dim
        self.encoder = Encoder(*arch)
        self.conv1 = CausalConv3d(2 * z_dim, 2 * z_dim, 1)
        self.conv2 = CausalConv3d(z_dim, z_dim, 1)
        self.decoder = Decoder(*arch)

    def encode(self, x: torch.Tensor, cache: Cache | None = None) -> tuple[torch.Tensor, torch.Tensor]:
        """Frames [B, 3, t, H, W] -> posterior (mean, log-variance), each [B, z_dim, t', H/8, W/8]."""
        return self.conv1(self.encoder(x, {} if cache is None else cache)).chunk(2, dim=1)

    def decode(self, z: torch.Tensor, cache: Cache | None = None) -> torch.Tensor:
        """Latent frames [B, z_dim, t, h, w] -> frames [B, 3, t'', 8h, 8w] (unclamped)."""
        return self.decoder(self.conv2(z), {} if cache is None else cache)

    def encode_chunked(self, x: torch.Tensor) -> torch.Tensor:
        """[B, 3, 1 + 4k, H, W] -> posterior mean [B, z_dim, 1 + k, H/8, W/8], the first frame alone then 4 at a
        time (trailing frames beyond 1 + 4k are ignored)."""
        cache: Cache = {}
        chunks = [x[:, :, :1]] + [x[:, :, start:start + 4] for start in range(1, x.shape[2] - 3, 4)]
        return torch.cat([self.encode(chunk, cache)[0] for chunk in chunks], dim=2)

    def decode_chunked(self, z: torch.Tensor) -> torch.Tensor:
        """[B, z_dim, Tv, h, w] -> [B, 3, 1 + 4(Tv-1), 8h, 8w], one latent frame at a time."""
        cache: Cache = {}
        return torch.cat([self.decode(frame, cache) for frame in z.split(1, dim=2)], dim=2)


#: Architectures: Wan2.1's, and a tiny one of the same structure (fewer channels, still 16 latent channels so
#: the real normalisation constants apply) for tests.
WAN_VAE_PRESETS: dict[str, dict] = {
    "wan2.1": dict(dim=96, z_dim=16, dim_mult=(1, 2, 4, 4), num_res_blocks=2, temporal_downsample=(False, True, True)),
    "tiny": dict(dim=8, z_dim=16, dim_mult=(1, 2, 4, 4), num_res_blocks=2, temporal_downsample=(False, True, True)),
}


# ----- wrapper and builder ------------------------------------------------------------------------------


class WanVideoVAE(nn.Module):
    """The pipeline's video VAE: pixels [B, 3, T, H, W] in [-1, 1] <-> normalised latents [B, 16, Tv, Hl, Wl].

    Weights may be stored in bf16 (JavisDiT moves the whole VAE to bf16); the convolutions always compute in
    ``compute_dtype`` (fp32, as upstream's fp32 autocast). The normalisation constants are fp32 tensors that
    are not part of the state dict, so ``.to(bf16)`` leaves them fp32.

    Args:
        preset: a key of ``WAN_VAE_PRESETS``.
        dit_patch_size: the DiT's (t, h, w) patch; latent H and W are rounded up to its multiples.
        compute_dtype: the dtype activations and convolutions run in.
    """

    time_stride = VAE_STRIDE[0]  # frames per latent frame after the first
    spatial_stride = VAE_STRIDE[1]

    def __init__(self, preset: str = "wan2.1", dit_patch_size: tuple[int, int, int] = DIT_PATCH_SIZE,
                 compute_dtype: torch.dtype = torch.float32):
        super().__init__()
        if preset not in WAN_VAE_PRESETS:
            raise ConfigError(f"unknown Wan VAE preset {preset!r}; valid: {', '.join(WAN_VAE_PRESETS)}")
        self.model = WanVAENetwork(**WAN_VAE_PRESETS[preset])
        self.dit_patch_size = tuple(dit_patch_size)
        self.compute_dtype = compute_dtype
        # explicit CPU: a model built under torch.device("meta") still gets real constants
        self.latent_mean = torch.tensor(LATENT_MEAN, dtype=torch.float32, device="cpu")
        self.latent_inv_std = 1.0 / torch.tensor(LATENT_STD, dtype=torch.float32, device="cpu")  # r = 1/std

    @property
    def out_channels(self) -> int:
        """Latent channels (16)."""
        return self.model.z_dim

    def get_latent_size(self, size: tuple[int, int, int]) -> tuple[int, int, int]:
        """(T, H, W) -> (Tv, Hl, Wl): ``Tv = ceil((T-1)/4) + 1``, ``Hl = ceil(H/8)`` rounded up to the DiT patch,
        ``Wl`` likewise; e.g. (81, 480, 854) -> (21, 60, 108), (65, 360, 640) -> (17, 46, 80)."""
        T, H, W = size
        _, ph, pw = self.dit_patch_size
        up = lambda n, m: -(-n // m) * m
        return 1 + -(-(T - 1) // self.time_stride), up(-(-H // self.spatial_stride), ph), up(-(-W // self.spatial_stride), pw)

    def _stats(self, like: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        shape = (1, self.out_channels, 1, 1, 1)
        return self.latent_mean.to(like.device).view(shape), self.latent_inv_std.to(like.device).view(shape)

    @torch.no_grad()
    def encode(self, x: torch.Tensor, generator=None) -> torch.Tensor:
        """Pixels [B, 3, T, H, W] in [-1, 1] -> normalised posterior means [B, 16, Tv, Hl, Wl] (fp32).

        The clip is padded to ``get_latent_size``'s grid first: frames to 1 + 4(Tv-1) and rows and columns to
        8 Hl and 8 Wl, by repeating the last frame, row and column (upstream drops the frames beyond the last
        full group of 4 instead; the recipe's clips are all 1 + 4k frames of multiples of 16 pixels, where
        both agree). ``generator`` is accepted for the pipeline's interface and unused: there is no sampling.
        """
        if x.dim() != 5 or x.shape[1] != 3 or min(x.shape[2:]) < 1:
            raise ValueError(f"video must be [B, 3, T, H, W] with T, H, W >= 1, got {list(x.shape)}")
        T, H, W = x.shape[2:]
        Tv, Hl, Wl = self.get_latent_size((T, H, W))
        pad = (0, Wl * self.spatial_stride - W, 0, Hl * self.spatial_stride - H, 0, 1 + (Tv - 1) * self.time_stride - T)
        x = x.to(self.compute_dtype)
        if any(pad):
            x = F.pad(x, pad, mode="replicate")
        mu = self.model.encode_chunked(x).float()  # [B, 16, Tv, Hl, Wl]
        mean, inv_std = self._stats(mu)
        return (mu - mean) * inv_std

    @torch.no_grad()
    def decode(self, z: torch.Tensor, num_frames: int | None = None) -> torch.Tensor:
        """Normalised latents [B, 16, Tv, h, w] -> pixels [B, 3, num_frames, 8h, 8w] (fp32, clamped to [-1, 1]).

        The decoder makes 1 + 4(Tv-1) frames; the first ``num_frames`` are returned (all when None, upstream's
        output), and ``Tv`` must be ``get_latent_size``'s for ``num_frames`` (102 frames: Tv = 27, 105 decoded).
        """
        if z.dim() != 5 or z.shape[1] != self.out_channels:
            raise ValueError(f"latents must be [B, {self.out_channels}, Tv, h, w], got {list(z.shape)}")
        if num_frames is not None and z.shape[2] != (expected := self.get_latent_size((num_frames, 1, 1))[0]):
            raise ValueError(f"latents for {num_frames} frames must have {expected} frames, got {list(z.shape)}")
        mean, inv_std = self._stats(z)
        z = (z.float() / inv_std + mean).to(self.compute_dtype)  # a division by the stored 1/std (upstream's)
        video = self.model.decode_chunked(z).float().clamp(-1, 1)  # [B, 3, 1 + 4(Tv-1), 8h, 8w]
        return video if num_frames is None else video[:, :, :num_frames]


def _checkpoint_path(from_pretrained: str | Path, vae_checkpoint: str) -> Path:
    folder = Path(from_pretrained)
    path = folder if folder.is_file() else folder / vae_checkpoint
    if not path.is_file():
        raise MissingWeightsError(
            f"vae.from_pretrained: no {path}; download {HUB_FILE} from the hub repo {HUB_REPO} into {folder} "
            f"(`huggingface-cli download {HUB_REPO} {HUB_FILE} --local-dir {folder}`)")
    return path


def build_wan_vae(from_pretrained: str | Path | None = None, vae_checkpoint: str = HUB_FILE,
                  vae_stride: tuple[int, int, int] = VAE_STRIDE, dit_patch_size: tuple[int, int, int] = DIT_PATCH_SIZE,
                  preset: str = "wan2.1", dtype: torch.dtype | str | None = None,
                  device: torch.device | str | None = None) -> WanVideoVAE:
    """The frozen Wan2.1 video VAE.

    Args:
        from_pretrained: a folder holding ``vae_checkpoint`` (or the file itself), loaded strictly; None builds
            random weights.
        vae_checkpoint: the weights file in that folder (bare keys, as published).
        vae_stride, dit_patch_size: must be (4, 8, 8) and (1, 2, 2), the values the network implements.
        preset: a key of ``WAN_VAE_PRESETS``.
        dtype: the weights' storage dtype (``bf16`` as JavisDiT runs it); computation stays fp32.
        device: where the weights go (default: the CPU).

    Raises:
        ConfigError: an unsupported stride, patch size, preset or dtype.
        MissingWeightsError: the folder or file does not exist (the message says what to download where).
        WeightsMismatchError: keys or shapes of the file that do not fit, named.
    """
    if tuple(vae_stride) != VAE_STRIDE:
        raise ConfigError(f"vae_stride must be {VAE_STRIDE} (the Wan2.1 VAE's compression), got {tuple(vae_stride)}")
    if tuple(dit_patch_size) != DIT_PATCH_SIZE:
        raise ConfigError(f"dit_patch_size must be {DIT_PATCH_SIZE} (the Wan2.1 DiT's patch), got {tuple(dit_patch_size)}")
    if isinstance(dtype, str):
        dtype = torch_dtype(dtype, key="vae.dtype")
    if from_pretrained is None:
        vae = WanVideoVAE(preset, dit_patch_size)
        if dtype is not None or device is not None:
            vae.to(device=device, dtype=dtype)
    else:
        path = _checkpoint_path(from_pretrained, vae_checkpoint)
        with torch.device("meta"):
            vae = WanVideoVAE(preset, dit_patch_size)
        load_state_dict_checked(vae.model, read_state_dict(path), source=str(path), assign=True, dtype=dtype,
                                device=device)
        logger.info("Wan2.1 VAE loaded from %s", path)
    return vae.requires_grad_(False).eval()


MODELS.register_module(name="Wan2_1_T2V_1_3B_VAE", module=build_wan_vae)
