"""What differs between the training stages: the models each one builds and the loss of one batch.

* The video branch (``scripts/train.py``, ``video_only``): STDiT3 trained text-to-video, the role
  Open-Sora 1.2's published STDiT-v3 plays for v0.1 (the mini recipe trains its own); rectified-flow loss
  on the video latent.
* Stage 1 (``scripts/train.py``, ``audio_only``): the audio branch of VASTDiT3, initialised from
  Open-Sora's video branch; rectified-flow loss on the audio latent only.
* Stage 3 (``scripts/train.py``): the synchronisation modules of VASTDiT3 on the frozen towers,
  conditioned on the frozen ST-prior; joint loss with the X-conditional training masks.
* Stage 2 (``scripts/train_prior.py``): the ST-prior estimator's contrastive loss against
  asynchronous negatives.

Every random number of a sample (VAE posterior, prior sample, timestep, noise, caption dropout,
masks) comes from that sample's own generator, so the loss of a sample does not depend on its batch
mates or on the number of processes, and a resumed run repeats an uninterrupted one exactly.
"""

from __future__ import annotations

import dataclasses
import functools
import logging
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import torch
from mmengine.config import Config
from torch import nn

from javisdit.errors import ConfigError
from javisdit.models import geometry
from javisdit.models.loading import load_state_dict_checked, open_state_dict, save_pretrained
from javisdit.models.prior.losses import prior_loss
from javisdit.models.stdit.config import config_dict
from javisdit.models.stdit.policy import build_initialized, select_trainable
from javisdit.models.text.t5 import t5_dtype
from javisdit.registry import MODELS, SCHEDULERS, build_module
from javisdit.training.masks import VAMaskGenerator
from javisdit.training.negatives import encode_with_negatives, row_generators
from javisdit.utils.seed import rand

logger = logging.getLogger(__name__)

Batch = Mapping[str, Any]


def _frozen(module: nn.Module | None, device: torch.device, dtype: torch.dtype) -> nn.Module | None:
    if module is None:
        return None
    return module.to(device, dtype).eval().requires_grad_(False)


def _to(value: Any, device: torch.device) -> Any:
    return value.to(device, non_blocking=True) if isinstance(value, torch.Tensor) else value


def _drops(names: Sequence[str], p: float, generators: Sequence[torch.Generator], device) -> dict[str, torch.Tensor]:
    """Classifier-free-guidance dropout: per embedder, which samples see the null condition."""
    return {name: rand((len(generators),), generators).to(device) < p for name in names}


class _VideoOnly(nn.Module):
    """STDiT3 behind the joint models' interface (``x``/output ``{"video": ...}``), for the scheduler."""

    def __init__(self, model: nn.Module):
        super().__init__()
        self.model = model

    def forward(self, x: Mapping[str, torch.Tensor], timestep: torch.Tensor, x_mask: torch.Tensor | None = None,
                ax_mask: torch.Tensor | None = None, **kwargs: Any) -> dict[str, torch.Tensor]:
        return {"video": self.model(x["video"], timestep, x_mask=x_mask, **kwargs)}


class DiffusionStage:
    """The video branch and stages 1 and 3: the rectified-flow objective of STDiT3 / VASTDiT3."""

    uses_ema = True

    def __init__(self, cfg: Config):
        self.cfg = cfg
        self.audio_only = bool(cfg.get("audio_only", False))
        self.video_only = bool(cfg.get("video_only", False))
        if self.audio_only and self.video_only:
            raise ConfigError("audio_only and video_only are exclusive: the first trains stage 1, the second "
                              "the video branch")
        if self.video_only and cfg.get("mask_ratios"):
            raise ConfigError("mask_ratios are the joint stage's audio-video conditioning masks; the video branch "
                              "(video_only) trains without them")
        self.features = bool(cfg.get("load_va_features", False))
        self.text_features = bool(cfg.get("load_text_features", False))
        self.masks = VAMaskGenerator(cfg.mask_ratios) if cfg.get("mask_ratios") else None
        self.scheduler = build_module(cfg.scheduler, SCHEDULERS)

    @property
    def name(self) -> str:
        if self.video_only:
            return "video branch (text-to-video)"
        return "stage 1 (audio branch)" if self.audio_only else "stage 3 (synchronisation modules)"

    # ----- models --------------------------------------------------------------------------------------

    def build(self, device: torch.device, dtype: torch.dtype) -> nn.Module:
        """Build the frozen encoders (kept on the stage) and return the model to train (fp32, CPU)."""
        cfg = self.cfg
        self.device, self.dtype = device, dtype
        if self.text_features:
            self.text_encoder = None
            caption_channels = int(cfg.get("text_encoder_output_dim", 4096))
            max_length = int(cfg.get("text_encoder_model_max_length", 300))
        else:
            if cfg.get("text_encoder") is None:
                raise ConfigError("the config has no text_encoder (or set load_text_features=True)")
            self.text_encoder = _frozen(build_module(cfg.text_encoder, MODELS, dtype=dtype), device, t5_dtype(dtype))
            caption_channels, max_length = self.text_encoder.output_dim, self.text_encoder.model_max_length
        need_vaes = not self.features
        self.vae = _frozen(build_module(cfg.vae, MODELS), device, dtype) if need_vaes and not self.audio_only else None
        self.audio_vae = (_frozen(build_module(cfg.audio_vae, MODELS), device, dtype)
                          if need_vaes and not self.video_only else None)
        self.prior = None
        if cfg.get("prior_encoder") is not None and not self.audio_only and not self.video_only:
            self.prior = _frozen(build_module(cfg.prior_encoder, MODELS), device, dtype)

        # weight_init_from is streamed into a model whose covered parts are built on the meta device: they
        # are neither randomly initialised nor held twice. The model stays fp32 on the CPU for the booster.
        build = functools.partial(build_module, cfg.model, MODELS, in_channels=geometry.VIDEO_LATENT_CHANNELS,
                                  caption_channels=caption_channels, model_max_length=max_length)
        model, _ = build_initialized(build, copy_video_to_audio=self.audio_only)
        policy = dict(getattr(model, "training_policy", {}))
        trainable = select_trainable(model, freeze_y_embedder=bool(policy.get("freeze_y_embedder", False)),
                                     freeze_video_branch=bool(policy.get("freeze_video_branch", False)),
                                     freeze_audio_branch=bool(policy.get("freeze_audio_branch", False)))
        if getattr(model, "has_st_prior", False) and self.prior is None:
            raise ConfigError("the model has ST-prior blocks but the config has no prior_encoder")
        logger.info("%s: %s trainable of %s parameters", self.name, f"{trainable:,}",
                    f"{sum(p.numel() for p in model.parameters()):,}")
        if self.video_only:
            if hasattr(model, "audio_y_embedder"):
                raise ConfigError(f"video_only trains the video branch alone: model.type must be an STDiT3, "
                                  f"got {cfg.model.get('type')}")
            self.drop_names, self.drop_p = ["y_embedder"], float(model.config.class_dropout_prob)
            return model
        self.drop_names = ["audio_y_embedder"] + (["y_embedder"] if model.has_video_blocks else [])
        self.drop_names += ["st_prior_embedder"] if getattr(model, "has_st_prior", False) else []
        self.drop_p = float(model.config.class_dropout_prob)
        return model

    def save_model(self, model: nn.Module, folder: Path) -> None:
        save_pretrained(model, folder, config=config_dict(model.config))

    def load_weights(self, model: nn.Module, folder: Path) -> None:
        load_state_dict_checked(model, open_state_dict(folder), source=str(folder))

    # ----- one batch -----------------------------------------------------------------------------------

    @torch.no_grad()
    def _latents(self, batch: Batch, generators: Sequence[torch.Generator]) -> dict[str, torch.Tensor]:
        device, dtype = self.device, self.dtype
        if self.features and self.video_only:
            return {"video": batch["video"].to(device, torch.float32)}
        if self.features:
            x0 = {"audio": batch["audio"].to(device, torch.float32)}
            if not self.audio_only:
                x0["video"] = batch["video"].to(device, torch.float32)
            return x0
        if self.video_only:
            return {"video": self.vae.encode(batch["video"].to(device, dtype), generators).float()}
        x0 = {"audio": self.audio_vae.encode(batch["audio"].to(device, dtype), generators).float()}
        if not self.audio_only:
            x0["video"] = self.vae.encode(batch["video"].to(device, dtype), generators).float()
        return x0

    def loss(self, model: nn.Module, batch: Batch, generators: Sequence[torch.Generator]
             ) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
        """Mean loss of the batch and its parts (``loss/audio``, ``loss/video``)."""
        device = self.device
        texts = list(batch["text"])
        x0 = self._latents(batch, generators)
        B = len(texts)
        with torch.no_grad():
            if self.text_features:
                y, mask = batch["text_features"].to(device, self.dtype), batch["text_mask"].to(device)
            else:
                encoded = self.text_encoder.encode(texts, device=device)  # raw CSV captions, as the original
                y, mask = encoded["y"].to(self.dtype), encoded["mask"]
            kwargs: dict[str, Any] = dict(y=y, mask=mask, fps=_to(batch["fps"], device),
                                          height=_to(batch["height"], device), width=_to(batch["width"], device))
            if self.prior is not None:
                prior = self.prior(texts, generator=list(generators))
                kwargs.update(spatial_prior=prior["spatial_prior"], temporal_prior=prior["temporal_prior"])
        kwargs["condition_drop"] = _drops(self.drop_names, self.drop_p, generators, device)
        masks = None
        if self.masks is not None and "video" in x0:
            video_mask, audio_mask, _ = self.masks.get_masks(x0["video"].shape[2], x0["audio"].shape[2], generators,
                                                             device=device)
            masks = {"video": video_mask, "audio": audio_mask}
        t = self.scheduler.sample_timesteps(B, batch["height"], batch["width"], batch["num_frames"], device=device,
                                            generator=list(generators))
        if self.video_only:
            model = _VideoOnly(model)
        losses = self.scheduler.training_losses(model, x0, kwargs, t, masks=masks,
                                                modalities=("audio",) if self.audio_only else None,
                                                generator=list(generators))
        terms = {f"loss/{k}": losses[k].mean() for k in x0 if k in losses}
        return losses["loss"].mean(), terms


class PriorStage:
    """Stage 2: the ST-prior estimator against spatially / temporally asynchronous negatives."""

    uses_ema = False

    def __init__(self, cfg: Config):
        self.cfg = cfg
        self.features = bool(cfg.get("load_va_features", False))
        self.name = "stage 2 (ST-prior)"

    def build(self, device: torch.device, dtype: torch.dtype) -> nn.Module:
        cfg = self.cfg
        self.device, self.dtype = device, dtype
        self.vae = None if self.features else _frozen(build_module(cfg.vae, MODELS), device, dtype)
        self.audio_vae = None if self.features else _frozen(build_module(cfg.audio_vae, MODELS), device, dtype)
        prior = build_module(cfg.model, MODELS)
        if not prior.config.encode_va:
            raise ConfigError("stage 2 trains the prior with its video-audio encoders: set model.encode_va=True")
        trainable = sum(p.numel() for p in prior.parameters() if p.requires_grad)
        logger.info("%s: %s trainable parameters (ImageBind text tower frozen)", self.name, f"{trainable:,}")
        return PriorObjective(prior)

    def save_model(self, model: nn.Module, folder: Path) -> None:
        # the ImageBind text tower is published separately (imagebind_huge.pth): not repeated here
        prior = model.prior
        config = {k: list(v) if isinstance(v, tuple) else v for k, v in dataclasses.asdict(prior.config).items()}
        save_pretrained(prior, folder, config=config, state_dict=prior.prior_state_dict())

    def load_weights(self, model: nn.Module, folder: Path) -> None:
        load_state_dict_checked(model.prior, open_state_dict(folder), source=str(folder),
                                allow_missing=("text_encoder.",))

    @torch.no_grad()
    def _encode(self, batch: Batch, generators: Sequence[torch.Generator]):
        """Latents of the clips and of their negatives: ``(video, audio, neg_videos, neg_audios)``."""
        device, dtype = self.device, self.dtype
        if self.features:
            def to(x: torch.Tensor) -> torch.Tensor:
                return x.to(device, torch.float32)

            return (to(batch["video"]), to(batch["audio"]), {k: to(v) for k, v in batch["neg_videos"].items()},
                    {k: to(v) for k, v in batch["neg_audios"].items()})
        latents = []
        for key, encoder in (("video", self.vae), ("audio", self.audio_vae)):
            negatives = batch[f"neg_{key}s"]
            z, neg = encode_with_negatives(encoder.encode, batch[key], negatives,
                                           lambda rows, n=negatives: row_generators(generators, n), device, dtype)
            latents += [z.float(), {k: v.float() for k, v in neg.items()}]
        return latents[0], latents[2], latents[1], latents[3]

    def loss(self, model: nn.Module, batch: Batch, generators: Sequence[torch.Generator]
             ) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
        for key in ("neg_videos", "neg_audios"):
            if key not in batch:
                raise ConfigError(f"stage 2 needs negatives ({key}): set dataset.neg_aug (or extract features with "
                                  "configs/javisdit-v0-1/misc/extract_st_prior_va.py)")
        video, audio, neg_videos, neg_audios = self._encode(batch, generators)
        total, terms = model(text=list(batch["text"]), video=video, audio=audio, neg_videos=neg_videos,
                             neg_audios=neg_audios, frame_height=float(batch["height"][0]),
                             frame_width=float(batch["width"][0]), generator=list(generators))
        return total, {f"prior/{k}": v for k, v in terms.items()}


class PriorObjective(nn.Module):
    """The prior with its stage-2 loss as ``forward``, so that data parallelism wraps one call."""

    def __init__(self, prior: nn.Module):
        super().__init__()
        self.prior = prior

    def forward(self, **kwargs: Any) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
        return prior_loss(self.prior, **kwargs)
