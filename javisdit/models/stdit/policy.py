"""Training-side policy for the backbones: which parameters train in each stage, and which checkpoint
seeds which submodule. Kept out of the model classes; driven by the stage config's flags.

``build_initialized`` builds a model seeded from its ``weight_init_from`` checkpoints without a random
init of what they cover: the covered submodules are built on the meta device and their tensors streamed
from the files one at a time; only the rest is allocated and initialised by the model's own code.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field

import torch
from torch import nn

from javisdit.models.loading import (
    StoredTensor,
    build_partly_on_meta,
    check_materialized,
    close_files,
    open_state_dict,
    resolve_weights,
    set_tensor,
)

logger = logging.getLogger(__name__)

VIDEO_BRANCH = ("x_embedder", "spatial_blocks", "temporal_blocks", "final_layer")
AUDIO_BRANCH = ("ax_embedder", "audio_spatial_blocks", "audio_temporal_blocks", "audio_final_layer")
SYNC_MODULES = ("st_t_block", "st_prior_embedder", "video_st_prior_blocks", "audio_st_prior_blocks", "va_cross_blocks")
TEXT_EMBEDDERS = ("y_embedder", "audio_y_embedder")

# Source prefix -> audio-branch prefix: stage 1 starts the audio tower from Open-Sora's video tower.
VIDEO_TO_AUDIO = (("spatial_blocks.", "audio_spatial_blocks."), ("temporal_blocks.", "audio_temporal_blocks."),
                  ("y_embedder.", "audio_y_embedder."))
# Submodule -> the one its initialisation reads: VASTDiT3 starts the audio null caption as a copy of the
# video one, so building the first needs the second allocated too.
INIT_READS = {"audio_y_embedder": "y_embedder"}


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


def _plan(own: Mapping[str, torch.Tensor], state_dicts: Sequence[Mapping[str, torch.Tensor | StoredTensor]],
          copy_video_to_audio: bool) -> tuple[dict[str, torch.Tensor | StoredTensor], InitReport]:
    """The source tensor of every model key the checkpoints cover, and the report; nothing is read."""
    merged: dict[str, torch.Tensor | StoredTensor] = {}
    for state_dict in state_dicts:
        merged.update(state_dict)
    if copy_video_to_audio:
        for key, value in list(merged.items()):
            for source, target in VIDEO_TO_AUDIO:
                if key.startswith(source):
                    merged[target + key[len(source):]] = value
    mismatched = [f"{k}: checkpoint {list(v.shape)} vs model {list(own[k].shape)}"
                  for k, v in merged.items() if k in own and own[k].shape != v.shape]
    if mismatched:
        raise ValueError("initialisation checkpoints do not fit the model:\n  " + "\n  ".join(mismatched))
    report = InitReport()
    for key in own:
        (report.loaded if key in merged else report.kept_init).append(key)
    report.ignored = sorted(set(merged) - set(own))
    return {k: merged[k] for k in report.loaded}, report


def initialize_from(
    model: nn.Module,
    state_dicts: Sequence[Mapping[str, torch.Tensor | StoredTensor]],
    copy_video_to_audio: bool = False,
) -> InitReport:
    """Seed ``model`` from checkpoints by key name, later ones winning (``weight_init_from``).

    With ``copy_video_to_audio`` (stage 1), the video spatial/temporal blocks and text embedder of the
    sources also seed the audio tower and audio text embedder. Keys the sources do not cover keep their
    initialisation; source keys the model does not have are ignored. All three lists are reported.
    Sources may be ``open_state_dict`` results: each covered tensor is then read once, when it is
    copied in (meta tensors of the model are replaced, in the model's dtype on the CPU).

    Raises:
        ValueError: a source tensor whose shape differs from the model's (all of them are listed).
    """
    sources, report = _plan(model.state_dict(), state_dicts, copy_video_to_audio)
    for key, value in sources.items():
        set_tensor(model, key, value)
    for state_dict in state_dicts:
        close_files(state_dict)
    logger.info("initialised %d tensors from %d checkpoint(s); %d keep their init, %d ignored",
                len(report.loaded), len(state_dicts), len(report.kept_init), len(report.ignored))
    return report


def build_initialized(build: Callable[[], nn.Module], copy_video_to_audio: bool = False,
                      config_key: str = "model.weight_init_from") -> tuple[nn.Module, InitReport | None]:
    """``build()`` seeded from its ``training_policy["weight_init_from"]`` checkpoints (see ``initialize_from``).

    The model is first built on the meta device to see which top-level submodules the checkpoints cover
    entirely; those are built on the meta device and filled by streaming, the others are allocated and
    initialised by the model's own code (random values from the global RNG), then overwritten where a
    checkpoint covers them. Without ``weight_init_from`` this is ``build()``. Returns the model and the
    report (None without checkpoints).

    Raises:
        ValueError: a checkpoint tensor whose shape differs from the model's.
        MissingWeightsError: a checkpoint that is not there.
    """
    with torch.device("meta"):
        layout = build()
    sources = list(getattr(layout, "training_policy", {}).get("weight_init_from") or [])
    if not sources:
        return build(), None
    states = [open_state_dict(resolve_weights(s, config_key=config_key)) for s in sources]
    covered = set(_plan(layout.state_dict(), states, copy_video_to_audio)[1].loaded)
    real = {name for name, child in layout.named_children()
            if any(f"{name}.{key}" not in covered for key in child.state_dict())}
    real |= {INIT_READS[name] for name in real if name in INIT_READS}
    on_meta = {name for name, _ in layout.named_children()} - real
    model = build_partly_on_meta(build, layout, on_meta)
    report = initialize_from(model, states, copy_video_to_audio)
    check_materialized(model, source=f"{config_key} {sources}")
    logger.info("built %s on the meta device (filled from the checkpoints); initialised %s",
                ", ".join(sorted(on_meta)) or "nothing", ", ".join(sorted(real)) or "nothing")
    return model, report
