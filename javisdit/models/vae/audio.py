"""``AudioLDM2``: AudioLDM2's mel VAE and HiFi-GAN vocoder, the audio side of JavisDiT.

log-mel [B, 1, T, 64] <-> latents [B, 8, T/4, 16] (scaled by the checkpoint's scaling factor,
0.4110932946205139 for ``cvssp/audioldm2``); latents -> mel -> waveform [B, S] at 16 kHz, cropped to
the exact sample count. Only the ``vae/`` and ``vocoder/`` parts of the hub repository are read.
``AudioLDM2`` builds layers; ``build_audioldm2`` (the registered ``AudioLDM2``) loads the weights.

The vocoder is a choice of ``VOCODERS``: ``hifigan`` (the default, AudioLDM2's ``SpeechT5HifiGan``) or
``griffin_lim`` (``GriffinLimVocoder``: weight-free mel inversion, so only ``vae/`` is read), named by a
string or by ``dict(type=<name>, **options)``.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import torch
from torch import nn

from javisdit.errors import ConfigError
from javisdit.models import geometry
from javisdit.models.loading import load_state_dict_checked, read_state_dict, resolve_weights
from javisdit.models.vae.griffin_lim import GriffinLimVocoder
from javisdit.models.vae.mel import MelFrontEnd
from javisdit.registry import accepted_kwargs
from javisdit.utils.seed import randn

logger = logging.getLogger(__name__)

AUDIO_VAE_PRESETS: dict[str, dict[str, Any]] = {
    "audioldm2": dict(
        vae=dict(in_channels=1, out_channels=1, latent_channels=8, block_out_channels=(128, 256, 512),
                 down_block_types=("DownEncoderBlock2D",) * 3, up_block_types=("UpDecoderBlock2D",) * 3,
                 layers_per_block=2, norm_num_groups=32, sample_size=1024, scaling_factor=0.4110932946205139),
        vocoder=dict(model_in_dim=64, sampling_rate=16000, upsample_initial_channel=1024,
                     upsample_rates=[5, 4, 2, 2, 2], upsample_kernel_sizes=[16, 16, 8, 4, 4],
                     resblock_kernel_sizes=[3, 7, 11], resblock_dilation_sizes=[[1, 3, 5]] * 3,
                     normalize_before=False),
    ),
    "tiny": dict(
        vae=dict(in_channels=1, out_channels=1, latent_channels=8, block_out_channels=(8, 8, 8),
                 down_block_types=("DownEncoderBlock2D",) * 3, up_block_types=("UpDecoderBlock2D",) * 3,
                 layers_per_block=1, norm_num_groups=4, sample_size=64, scaling_factor=0.4110932946205139),
        vocoder=dict(model_in_dim=64, sampling_rate=16000, upsample_initial_channel=32,
                     upsample_rates=[5, 4, 2, 2, 2], upsample_kernel_sizes=[16, 16, 8, 4, 4],
                     resblock_kernel_sizes=[3], resblock_dilation_sizes=[[1, 3, 5]], normalize_before=False),
    ),
    # JavisDiT-mini's mel VAE (configs/mini, with the Griffin-Lim vocoder; the HiFi-GAN is tiny's)
    "mini": dict(
        vae=dict(in_channels=1, out_channels=1, latent_channels=8, block_out_channels=(16, 32, 64),
                 down_block_types=("DownEncoderBlock2D",) * 3, up_block_types=("UpDecoderBlock2D",) * 3,
                 layers_per_block=1, norm_num_groups=1, sample_size=64, scaling_factor=1.0),
        vocoder=dict(model_in_dim=64, sampling_rate=16000, upsample_initial_channel=32,
                     upsample_rates=[5, 4, 2, 2, 2], upsample_kernel_sizes=[16, 16, 8, 4, 4],
                     resblock_kernel_sizes=[3], resblock_dilation_sizes=[[1, 3, 5]], normalize_before=False),
    ),
}


# name -> the options its ``dict(type=name, ...)`` may carry (the HiFi-GAN's size is the preset's or checkpoint's)
VOCODERS: dict[str, frozenset[str]] = {"hifigan": frozenset(), "griffin_lim": accepted_kwargs(GriffinLimVocoder)}


def vocoder_choice(vocoder: str | Mapping[str, Any]) -> tuple[str, dict[str, Any]]:
    """``audio_vae.vocoder`` -> (name, options): a name of ``VOCODERS`` or ``dict(type=name, **options)``.

    Raises:
        ConfigError: an unknown name or option (the valid ones listed).
    """
    if isinstance(vocoder, Mapping):
        options = dict(vocoder)
        name = options.pop("type", None)
    else:
        name, options = vocoder, {}
    if not isinstance(name, str) or name not in VOCODERS:
        raise ConfigError(f"audio_vae.vocoder: unknown vocoder {name!r}; valid: {', '.join(sorted(VOCODERS))}")
    unknown = sorted(set(options) - VOCODERS[name])
    if unknown:
        raise ConfigError(f"audio_vae.vocoder: {name} has no option {', '.join(map(repr, unknown))}; valid: "
                          f"{', '.join(sorted(VOCODERS[name])) or 'none'}")
    return name, options


def build_parts(vae_config: dict, vocoder_config: dict | None,
                vocoder: str | Mapping[str, Any] = "hifigan") -> tuple[nn.Module, nn.Module]:
    """AudioLDM2's mel VAE (diffusers ``AutoencoderKL``) from its config, randomly initialised, and the
    ``vocoder``: a ``SpeechT5HifiGan`` of ``vocoder_config`` (randomly initialised) or a Griffin-Lim one
    (``vocoder_config`` unused)."""
    from diffusers import AutoencoderKL

    name, options = vocoder_choice(vocoder)
    vae = AutoencoderKL.from_config(vae_config)
    if name == "griffin_lim":
        try:
            return vae, GriffinLimVocoder(**options)
        except ValueError as err:
            raise ConfigError(f"audio_vae.vocoder: {err}") from None
    from transformers import SpeechT5HifiGan, SpeechT5HifiGanConfig

    return vae, SpeechT5HifiGan(SpeechT5HifiGanConfig(**vocoder_config))


class AudioLDM2(nn.Module):
    """The frozen audio VAE + vocoder and the mel front-end, from their parts (``from_preset`` builds
    them from a preset; ``build_audioldm2``, the registered ``AudioLDM2``, loads a checkpoint)."""

    def __init__(self, vae: nn.Module, vocoder: nn.Module, sample_posterior: bool = True):
        super().__init__()
        self.vae = vae.requires_grad_(False).eval()
        self.vocoder = vocoder.requires_grad_(False).eval()
        self.mel = MelFrontEnd()
        self.sample_posterior = sample_posterior

    @classmethod
    def from_preset(cls, preset: str = "audioldm2", sample_posterior: bool = True,
                    vocoder: str | Mapping[str, Any] = "hifigan") -> AudioLDM2:
        """Randomly initialised parts of a size of ``AUDIO_VAE_PRESETS``, with the ``vocoder`` chosen."""
        if preset not in AUDIO_VAE_PRESETS:
            raise ValueError(f"unknown audio VAE preset {preset!r}; valid: {', '.join(AUDIO_VAE_PRESETS)}")
        return cls(*build_parts(AUDIO_VAE_PRESETS[preset]["vae"], AUDIO_VAE_PRESETS[preset]["vocoder"], vocoder),
                   sample_posterior=sample_posterior)

    @property
    def latent_channels(self) -> int:
        return self.vae.config.latent_channels

    vae_out_channels = latent_channels

    @property
    def scaling_factor(self) -> float:
        return self.vae.config.scaling_factor

    @staticmethod
    def latent_size(seconds: float) -> tuple[int, int, int]:
        """(8, T', 16) of the latent of a clip, e.g. 4.25 s -> (8, 112, 16)."""
        return geometry.audio_latent_size(seconds)

    def prepare_latents(self, seconds: float, batch_size: int, generator: torch.Generator | None = None,
                        device=None, dtype=torch.float32) -> tuple[torch.Tensor, int]:
        """Noise [B, 8, T', 16] for a clip of ``seconds`` and its waveform length in samples."""
        noise = torch.randn(batch_size, *self.latent_size(seconds), generator=generator, device=device, dtype=dtype)
        return noise, geometry.audio_samples(seconds)

    @torch.no_grad()
    def encode(self, mel: torch.Tensor, generator=None) -> torch.Tensor:
        """log-mel [B, 1, T, 64] (T a multiple of 4) -> latents [B, 8, T/4, 16]; ``generator``: a generator
        or one per sample."""
        if mel.dim() != 4 or mel.shape[1] != 1 or mel.shape[2] % geometry.AUDIO_VAE_STRIDE:
            raise ValueError(f"mel must be [B, 1, T, 64] with T a multiple of 4, got {list(mel.shape)}")
        dist = self.vae.encode(mel.to(self.vae.dtype)).latent_dist
        z = dist.mean
        if self.sample_posterior:
            z = z + dist.std * randn(z.shape, generator, device=z.device, dtype=z.dtype)
        return z * self.scaling_factor

    @torch.no_grad()
    def encode_waveform(self, waveform: torch.Tensor, duration: float | None = None,
                        generator: torch.Generator | None = None) -> torch.Tensor:
        """16 kHz mono waveform [B, S] -> latents of the clip of ``duration`` seconds."""
        mel = self.mel(waveform, duration)
        return self.encode(mel, generator)

    @torch.no_grad()
    def decode(self, latents: torch.Tensor, num_samples: int) -> torch.Tensor:
        """latents [B, 8, T', 16] -> fp32 waveform [B, num_samples] at 16 kHz (cropped, never padded
        beyond what the vocoder gives: 160·4·T' samples, plus a few for the HiFi-GAN)."""
        mel = self.vae.decode(latents.to(self.vae.dtype) / self.scaling_factor).sample
        weight = next(self.vocoder.parameters(), None)  # None: Griffin-Lim, which takes any dtype
        wave = self.vocoder(mel.squeeze(1) if weight is None else mel.squeeze(1).to(weight.dtype))
        if wave.shape[-1] < num_samples:
            raise ValueError(f"asked for {num_samples} samples but {latents.shape[2]} latent frames give "
                             f"{wave.shape[-1]}")
        return wave[..., :num_samples].float()


_VOCODER_KEYS = {"model_in_dim", "sampling_rate", "upsample_initial_channel", "upsample_rates", "upsample_kernel_sizes",
                 "resblock_kernel_sizes", "resblock_dilation_sizes", "leaky_relu_slope", "normalize_before"}


def build_audioldm2(from_pretrained: str | None = None, preset: str = "audioldm2", sample_posterior: bool = True,
                    vocoder: str | Mapping[str, Any] = "hifigan") -> AudioLDM2:
    """The ``AudioLDM2`` config entry: with ``from_pretrained`` (hub id or folder with ``vae/`` and
    ``vocoder/`` sub-folders) the parts are built on the meta device from their ``config.json`` and
    loaded strictly; with None, a randomly initialised ``preset``. ``vocoder``: a name of ``VOCODERS``
    or ``dict(type=name, **options)``; with ``griffin_lim`` only ``vae/`` is read."""
    name, _ = vocoder_choice(vocoder)  # before anything is read
    if from_pretrained is None:
        return AudioLDM2.from_preset(preset, sample_posterior=sample_posterior, vocoder=vocoder)
    parts = ("vae",) if name == "griffin_lim" else ("vae", "vocoder")
    path = resolve_weights(from_pretrained, config_key="audio_vae.from_pretrained", subfolders=parts)
    configs = []
    for part in parts:
        file = Path(path) / part / "config.json"
        if not file.is_file():
            expected = " and ".join(f"{p}/" for p in parts)
            raise ValueError(f"audio_vae.from_pretrained: {file} is missing (expected AudioLDM2's {expected})")
        configs.append({k: v for k, v in json.loads(file.read_text()).items() if not k.startswith("_")})
    vocoder_config = {k: v for k, v in configs[1].items() if k in _VOCODER_KEYS} if len(configs) > 1 else None
    with torch.device("meta"):  # (Griffin-Lim makes its few tensors on the CPU)
        vae, vocoder_module = build_parts(configs[0], vocoder_config, vocoder)
    load_state_dict_checked(vae, read_state_dict(Path(path) / "vae"), source=f"{from_pretrained}/vae", assign=True)
    if name == "hifigan":
        load_state_dict_checked(vocoder_module, read_state_dict(Path(path) / "vocoder"),
                                source=f"{from_pretrained}/vocoder", assign=True)
    return AudioLDM2(vae, vocoder_module, sample_posterior=sample_posterior)
