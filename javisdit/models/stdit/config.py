"""Configuration of the STDiT3 / VASTDiT3 backbones and their size presets.

Field names are the original's constructor kwargs, so v0.1 configs and the ``config.json`` of the
published checkpoints map onto them one to one. Keys that steer training rather than the architecture
(freeze flags, ``weight_init_from``) are accepted by the registry entries and handled by
``javisdit.models.stdit.policy``.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from typing import Any

from javisdit.errors import ConfigError

#: Size presets: each registered name is a model family plus one of these.
PRESETS: dict[str, dict[str, Any]] = {
    "XL/2": dict(depth=28, hidden_size=1152, num_heads=16, patch_size=(1, 2, 2)),
    "tiny": dict(depth=2, hidden_size=64, num_heads=4, patch_size=(1, 2, 2), caption_channels=32, model_max_length=8),
}


@dataclass
class STDiT3Config:
    """Open-Sora 1.2's video DiT (Open-Sora STDiT-v3)."""

    depth: int = 28
    hidden_size: int = 1152
    num_heads: int = 16
    mlp_ratio: float = 4.0
    patch_size: tuple[int, int, int] = (1, 2, 2)
    in_channels: int = 4
    pred_sigma: bool = True
    caption_channels: int = 4096
    model_max_length: int = 300
    class_dropout_prob: float = 0.1
    input_sq_size: int = 512
    qk_norm: bool = True
    enable_flash_attn: bool = False
    enable_layernorm_kernel: bool = False

    @property
    def out_channels(self) -> int:
        return self.in_channels * 2 if self.pred_sigma else self.in_channels

    @property
    def head_dim(self) -> int:
        return self.hidden_size // self.num_heads

    def validate(self) -> None:
        if self.hidden_size % self.num_heads or self.head_dim % 2:
            raise ConfigError(
                f"hidden_size {self.hidden_size} must split into {self.num_heads} heads of an even size"
            )
        if self.hidden_size % 4:
            raise ConfigError(f"hidden_size {self.hidden_size} must be a multiple of 4 (2-D sin-cos positions)")
        if len(self.patch_size) != 3:
            raise ConfigError(f"patch_size must have 3 entries (T, H, W), got {self.patch_size}")


@dataclass
class VASTDiT3Config(STDiT3Config):
    """JavisDiT's joint audio-video DiT; the structure flags decide which parts exist.

    ``only_train_audio`` / ``only_infer_audio`` drop the video blocks (stage 1, text-to-audio);
    ``train_st_prior_attn`` / ``train_va_cross_attn`` keep the ST-prior and video-audio modules.
    ``prior_attn_batch_union`` lets each sample attend to the prior tokens of the whole batch, as the
    original did; the published weights were trained that way, so it is the default.
    Two options of the video-audio cross-attention, not in v0.1 (off for its weights; they add no weights).
    The original's towers carry no absolute time, so there a sound cannot find its frame by position. Both
    place the tokens on one clock in video latent frames (audio time patches spread evenly over the same
    span): ``va_cross_time_rope`` rotates queries and keys by their times, as JavisDiT++'s TA-RoPE does in
    its joint attention; ``va_cross_time_window`` lets a token see only the other tower's tokens within
    that many frames (at least up to the nearest one).
    """

    audio_in_channels: int = 8
    audio_patch_size: tuple[int, int] = (4, 1)
    audio_hidden_size: int | None = None
    spatial_prior_len: int = 32
    temporal_prior_len: int = 32
    st_prior_channel: int = 128
    only_train_audio: bool = False
    only_infer_audio: bool = False
    train_st_prior_attn: bool = True
    train_va_cross_attn: bool = True
    prior_attn_batch_union: bool = True
    va_cross_time_rope: bool = False
    va_cross_time_window: float | None = None

    @property
    def audio_out_channels(self) -> int:
        return self.audio_in_channels * 2 if self.pred_sigma else self.audio_in_channels

    @property
    def has_video_blocks(self) -> bool:
        return not (self.only_train_audio or self.only_infer_audio)

    def validate(self) -> None:
        super().validate()
        if self.audio_hidden_size not in (None, self.hidden_size):
            raise ConfigError(
                f"audio_hidden_size {self.audio_hidden_size} must equal hidden_size {self.hidden_size}"
            )
        self.audio_hidden_size = self.hidden_size
        if len(self.audio_patch_size) != 2:
            raise ConfigError(f"audio_patch_size must have 2 entries (time, mel), got {self.audio_patch_size}")


#: Kwargs of the original that only had one working value here; anything else is refused.
FIXED_KWARGS: dict[str, Any] = dict(
    drop_path=0.0, enable_sequence_parallelism=False, only_train_temporal=False, skip_y_embedder=False,
    st_prior_utilize="cross_attn", require_onset=False,
)
#: Kwargs that do not change the architecture: training policy (see ``policy.py``) and the input size,
#: which the model reads from its inputs.
POLICY_KWARGS = ("freeze_y_embedder", "freeze_video_branch", "freeze_audio_branch", "weight_init_from")
IGNORED_KWARGS = ("input_size", "audio_input_size")


def accepted_kwargs(config_cls: type[STDiT3Config]) -> frozenset[str]:
    """Every kwarg ``make_config`` takes for ``config_cls``: its fields, the policy keys and the original's
    ignored or fixed ones."""
    fields = {f.name for f in dataclasses.fields(config_cls)}
    return frozenset(fields) | frozenset(POLICY_KWARGS) | frozenset(IGNORED_KWARGS) | frozenset(FIXED_KWARGS)


def make_config(config_cls: type[STDiT3Config], preset: str, **kwargs: Any) -> tuple[STDiT3Config, dict[str, Any]]:
    """A validated config from a preset plus overrides, and the policy kwargs that were split off.

    Raises:
        ConfigError: an unknown kwarg (the valid ones are listed) or an unsupported value.
    """
    fields = {f.name for f in dataclasses.fields(config_cls)}
    values = dict(PRESETS[preset])
    policy: dict[str, Any] = {}
    for key, value in kwargs.items():
        if key in fields:
            values[key] = value
        elif key in POLICY_KWARGS:
            policy[key] = value
        elif key in IGNORED_KWARGS:
            continue
        elif key in FIXED_KWARGS:
            if value != FIXED_KWARGS[key]:
                raise ConfigError(f"{config_cls.__name__[:-6]}: {key}={value!r} is not supported "
                                  f"(only {FIXED_KWARGS[key]!r})")
        else:
            valid = sorted(fields | set(POLICY_KWARGS))
            raise ConfigError(f"{config_cls.__name__[:-6]}: unknown argument {key!r}; valid: {', '.join(valid)}")
    for key in ("patch_size", "audio_patch_size"):
        if key in values:
            values[key] = tuple(values[key])
    config = config_cls(**values)
    config.validate()
    return config, policy


def config_dict(config: STDiT3Config) -> dict[str, Any]:
    """The config as plain JSON-friendly values (for ``config.json``)."""
    return {k: list(v) if isinstance(v, tuple) else v for k, v in dataclasses.asdict(config).items()}

