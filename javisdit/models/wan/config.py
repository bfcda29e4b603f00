"""Configuration of JavisDiT++'s DiT (``WanModel`` with the dual FFN) and its size presets.

Field names are the original constructor kwargs (``configs/javisdit-v1-0/*``), so upstream configs map
one to one. ``model_type`` decides which parts exist: ``t2av`` (the published model: video and audio
tokens in one sequence, a second FFN for audio), ``t2a`` (stage 1: audio only) and ``t2v`` (plain
Wan2.1-T2V with ``dual_ffn=False``). Values the original accepts but never implemented are refused.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from typing import Any

from javisdit.errors import ConfigError

#: Size presets: ``1.3B`` is Wan2.1-T2V-1.3B (the published JavisDiT++), ``tiny`` is for tests.
PRESETS: dict[str, dict[str, Any]] = {
    "1.3B": dict(dim=1536, ffn_dim=8960, num_heads=12, num_layers=30),
    "tiny": dict(dim=64, ffn_dim=128, num_heads=2, num_layers=2, text_dim=32, freq_dim=32),
}

MODEL_TYPES = ("t2av", "t2a", "t2v")

# accepted with one value only: the other values are dead or broken code upstream (spec §3.6, §14.20, §14.23)
FIXED_KWARGS = {"window_size": (-1, -1), "audio_special_token": False, "audio_pe_type": "interleave_offset",
                "audio_specific_text_embedding": False}


@dataclass
class WanConfig:
    """JavisDiT++'s DiT. ``enable_flash_attn``: flash-attn (or
    xformers) where it can run, else SDPA. The scripts no longer inject v0.1's ``in_channels`` /
    ``caption_channels`` / ``model_max_length``, which upstream's WanModel silently ignored (§14.21)."""

    model_type: str = "t2av"
    patch_size: tuple[int, int, int] = (1, 2, 2)
    text_len: int = 512
    in_dim: int = 16
    dim: int = 1536
    ffn_dim: int = 8960
    freq_dim: int = 256
    text_dim: int = 4096
    out_dim: int = 16
    num_heads: int = 12
    num_layers: int = 30
    qk_norm: bool = True
    cross_attn_norm: bool = True
    eps: float = 1e-6
    audio_patch_size: tuple[int, int] = (2, 2)
    audio_in_dim: int = 8
    audio_out_dim: int = 8
    dual_ffn: bool = True
    class_drop_prob: float = 0.1
    enable_flash_attn: bool = False

    @property
    def use_video(self) -> bool:
        return self.model_type in ("t2av", "t2v")

    @property
    def use_audio(self) -> bool:
        return self.model_type in ("t2av", "t2a")

    @property
    def head_dim(self) -> int:
        return self.dim // self.num_heads

    def to_dict(self) -> dict[str, Any]:
        """Plain values (also how peft reads a model's ``config`` when it wraps the model with a LoRA)."""
        return dataclasses.asdict(self)

    def validate(self) -> None:
        if self.model_type not in MODEL_TYPES:
            raise ConfigError(f"WanModel: model_type {self.model_type!r} is not supported; valid: {', '.join(MODEL_TYPES)}")
        if self.dim % self.num_heads or self.head_dim % 2:
            raise ConfigError(f"WanModel: dim {self.dim} must split into {self.num_heads} heads of an even size")
        if self.use_audio and not self.dual_ffn:
            raise ConfigError("WanModel: audio tokens need their own FFN (dual_ffn=True) for model_type "
                              f"{self.model_type!r}")
        if self.model_type == "t2v" and self.dual_ffn:
            raise ConfigError("WanModel: model_type 't2v' is plain Wan2.1 (dual_ffn=False)")
        if len(self.patch_size) != 3 or len(self.audio_patch_size) != 2:
            raise ConfigError(f"WanModel: patch_size needs 3 entries and audio_patch_size 2, got {self.patch_size} "
                              f"and {self.audio_patch_size}")


def make_config(preset: str = "1.3B", **kwargs: Any) -> WanConfig:
    """A validated config from a preset plus the original's kwargs.

    Raises:
        ConfigError: an unknown preset or kwarg (the valid ones are listed) or an unsupported value.
    """
    if preset not in PRESETS:
        raise ConfigError(f"WanModel: unknown preset {preset!r}; valid: {', '.join(PRESETS)}")
    fields = {f.name for f in dataclasses.fields(WanConfig)}
    values = dict(PRESETS[preset])
    for key, value in kwargs.items():
        if key in fields:
            values[key] = tuple(value) if key in ("patch_size", "audio_patch_size") else value
        elif key in FIXED_KWARGS:
            fixed = FIXED_KWARGS[key]
            if (tuple(value) if isinstance(fixed, tuple) else value) != fixed:
                raise ConfigError(f"WanModel: {key}={value!r} is not supported (only {fixed!r})")
        else:
            raise ConfigError(f"WanModel: unknown argument {key!r}; valid: {', '.join(sorted(fields | set(FIXED_KWARGS)))}")
    config = WanConfig(**values)
    config.validate()
    return config


def accepted_kwargs() -> frozenset[str]:
    """Every kwarg ``make_config`` takes (checked by name while configs are parsed)."""
    return frozenset({f.name for f in dataclasses.fields(WanConfig)}) | set(FIXED_KWARGS)
