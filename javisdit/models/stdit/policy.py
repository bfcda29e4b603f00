"""Training-side policy for the backbones: which parameters train in each stage, and which checkpoint
seeds which submodule. Kept out of the model classes; driven by the stage config's flags.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field

import torch
from torch import nn

logger = logging.getLogger(__name__)

VIDEO_BRANCH = ("x_embedder", "spatial_blocks", "temporal_blocks", "final_layer")
AUDIO_BRANCH = ("ax_embedder", "audio_spatial_blocks", "audio_temporal_blocks", "audio_final_layer")
SYNC_MODULES = ("st_t_block", "st_prior_embedder", "video_st_prior_blocks", "audio_st_prior_blocks", "va_cross_blocks")
TEXT_EMBEDDERS = ("y_embedder", "audio_y_embedder")

# Source prefix -> audio-branch prefix: stage 1 starts the audio tower from Open-Sora's video tower.
VIDEO_TO_AUDIO = (("spatial_blocks.", "audio_spatial_blocks."), ("temporal_blocks.", "audio_temporal_blocks."),
                  ("y_embedder.", "audio_y_embedder."))


def _set(model: nn.Module, names: Sequence[str], trainable: bool) -> None:
    for name in names:
        module = getattr(model, name, None)
        if module is not None:
            module.requires_grad_(trainable)


def select_trainable(
    model: nn.Module,
    freeze_y_embedder: bool = False,
    freeze_video_branch: bool = False,
    freeze_audio_branch: bool = False,
) -> int:
    """Set ``requires_grad`` as the original's stage flags do; returns the trainable parameter count.

    Freezing either branch freezes everything but the text embedders and the sync modules (ST-prior
    and video-audio blocks), plus whichever branch is not frozen. The embedders shared by both towers
    (timestep, fps) then stay frozen. A model without video blocks (stage 1) also freezes the video
    text embedder and final layer. RoPE frequencies never train.
    """
    model.requires_grad_(True)
    if freeze_video_branch or freeze_audio_branch:
        model.requires_grad_(False)
        _set(model, TEXT_EMBEDDERS + SYNC_MODULES, True)
        if not freeze_video_branch:
            _set(model, VIDEO_BRANCH, True)
        if not freeze_audio_branch:
            _set(model, AUDIO_BRANCH, True)
    if freeze_y_embedder:
        _set(model, TEXT_EMBEDDERS, False)
    if not getattr(model, "has_video_blocks", True):
        _set(model, ("y_embedder", "final_layer"), False)
    model.rope.freqs.requires_grad_(False)
    return sum(p.numel() for p in model.parameters() if p.requires_grad)


@dataclass
class InitReport:
    """What ``initialize_from`` did, by state-dict key."""

    loaded: list[str] = field(default_factory=list)
    kept_init: list[str] = field(default_factory=list)
    ignored: list[str] = field(default_factory=list)


def initialize_from(
    model: nn.Module,
    state_dicts: Sequence[Mapping[str, torch.Tensor]],
    copy_video_to_audio: bool = False,
) -> InitReport:
    """Seed ``model`` from checkpoints by key name, later ones winning (``weight_init_from``).

    With ``copy_video_to_audio`` (stage 1), the video spatial/temporal blocks and text embedder of the
    sources also seed the audio tower and audio text embedder. Keys the sources do not cover keep their
    initialisation; source keys the model does not have are ignored. All three lists are reported.

    Raises:
        ValueError: a source tensor whose shape differs from the model's (all of them are listed).
    """
    merged: dict[str, torch.Tensor] = {}
    for state_dict in state_dicts:
        merged.update(state_dict)
    if copy_video_to_audio:
        for key, value in list(merged.items()):
            for source, target in VIDEO_TO_AUDIO:
                if key.startswith(source):
                    merged[target + key[len(source):]] = value
    own = model.state_dict()
    mismatched = [f"{k}: checkpoint {list(v.shape)} vs model {list(own[k].shape)}"
                  for k, v in merged.items() if k in own and own[k].shape != v.shape]
    if mismatched:
        raise ValueError("initialisation checkpoints do not fit the model:\n  " + "\n  ".join(mismatched))
    report = InitReport()
    with torch.no_grad():
        for key, target in own.items():
            if key in merged:
                target.copy_(merged[key])
                report.loaded.append(key)
            else:
                report.kept_init.append(key)
    report.ignored = sorted(set(merged) - set(own))
    logger.info("initialised %d tensors from %d checkpoint(s); %d keep their init, %d ignored",
                len(report.loaded), len(state_dicts), len(report.kept_init), len(report.ignored))
    return report

