"""The autoencoder stage (``scripts/train_vae.py``): ``OpenSoraVAE_V1_2`` (video) or ``AudioLDM2``'s mel
VAE (audio) trained from scratch, the first stage of a recipe that builds its own latent spaces.

The config's ``autoencoder`` (``"video"`` or ``"audio"``) picks the one that trains, built from ``vae`` or
``audio_vae`` exactly as the inference configs build it; one run per autoencoder. The objective is
LDM's: an L1 reconstruction (``reconstruction_loss="l2"``: the mean squared error) plus ``kl_weight`` times the KL divergence of the posterior to N(0, I), both
per input element (LDM sums both over the sample; dividing both by its element count keeps their ratio,
so LDM's weight of 1e-6 means the same here, and keeps the loss of order one).

* video: pixels [B, 3, T, H, W] -> spatial VAE frame by frame -> posterior sample (x 0.18215) -> the
  temporal VAE chunk by chunk of 17 frames -> posterior sample -> temporal decoder -> spatial decoder ->
  pixels; L1 in pixel space, KL of both posteriors. Both VAEs train jointly, end to end: the chain is the
  one ``encode``/``decode`` run at inference, and every weight of both gets a gradient from the pixels.
  From scratch the two are better trained one after the other (``autoencoder_parts``): ``"spatial"``
  trains the spatial VAE alone as an image autoencoder (pixels -> latent -> pixels, frame by frame; the
  temporal VAE untouched), then ``"temporal"`` trains the temporal VAE alone to reconstruct the frozen
  spatial VAE's latents (x 0.18215, chunk by chunk; no pixels decoded, so a step is cheap), starting from
  the first run's ``model/`` (``vae.from_pretrained``). ``"all"`` (default) trains both through pixels.
  The frozen spatial encoder dominates a temporal step, so ``"temporal"`` can instead read spatial latents
  extracted once (``load_va_features=True``: a ``BatchFeatureDataset`` written by
  ``scripts/misc/extract_feat.py`` with ``video_latents="spatial"``, whose ``x`` are those latents).
  ``foreground_weight`` > 0 (not in LDM; default 0) weights each element of the video reconstruction by
  ``rflow.foreground_weights`` of its target (the pixels; the spatial latents for ``"temporal"``): small
  objects on flat backgrounds then weigh more than their area. The weighted errors are averaged over the
  whole batch (sum of weighted errors over sum of weights, as the shipped JavisDiT-mini VAEs were trained),
  so with it a step depends on how the batch is split over processes, unlike the plain mean.
* audio: the log-mel [B, 1, T, 64] of the 16 kHz waveform (the dataset's ``MelFrontEnd``) -> mel VAE ->
  posterior sample -> decoder; L1 on the mel, KL of the posterior. The vocoder is not trained.

Posterior noise is drawn in the order and shapes of the modules' own ``encode``, from each sample's
generator, so a step is independent of batch mates and of the number of processes. An autoencoder built
with ``sample_posterior=False`` trains on the posterior means instead (a deterministic autoencoder, as it
then encodes): from scratch this learns much faster, because the untrained temporal VAE's posterior noise
(std ~1) otherwise drowns the spatial latents it receives (scaled by 0.18215); the KL term stays.

After training the latents must have unit variance for the diffusion stages. Every saved model folder
(each checkpoint's ``model/``) therefore re-encodes the last ``latent_stats_batches`` batches of this
process (rank 0's, under data parallelism) with the weights being saved, through the module's public
``encode`` with the posterior noise of their training step, and stores the statistics where the loaders
read them: the video VAE's per-channel ``shift`` (mean) and ``scale`` (std) buffers in
``model.safetensors``; the audio VAE's ``scaling_factor`` (1 / std over all elements) in
``vae/config.json``. Standard deviations are population ones (no Bessel correction).

Saved layouts (what ``from_pretrained`` reads): video, ``config.json`` + ``model.safetensors`` with the
keys of ``OpenSoraVAE_V1_2``; audio, ``vae/`` (the trained mel VAE) and ``vocoder/`` (the vocoder of the
preset, unchanged: untrained when built from scratch; ``build_audioldm2`` requires the folder).
"""

from __future__ import annotations

import collections
import json
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
from javisdit.models.vae.video import SPATIAL_SCALING
from javisdit.registry import MODELS, build_module
from javisdit.schedulers.rflow import check_nonnegative, foreground_weights
from javisdit.utils.seed import randn

logger = logging.getLogger(__name__)


def _has_weights(module: nn.Module) -> bool:
    return any(True for _ in module.state_dict())

Batch = Mapping[str, Any]
#: config value -> (the config section built, the batch key trained on)
AUTOENCODERS = {"video": ("vae", "video"), "audio": ("audio_vae", "audio")}
#: ``autoencoder_parts`` of the video autoencoder: what trains (the rest is frozen)
VIDEO_PARTS = ("all", "spatial", "temporal")
#: ``reconstruction_loss``: LDM's L1 (default), or the mean squared error, which weighs large errors more:
#: small objects on flat backgrounds (JavisDiT-mini's balls) are learned far sooner
#: (the per-element error; the loss is its mean, or its weighted mean with ``foreground_weight``)
RECONSTRUCTION_LOSSES = {"l1": lambda a, b: (a - b).abs(), "l2": lambda a, b: (a - b).pow(2)}


# ----- helpers ---------------------------------------------------------------------------------------------


def _sample(mean: torch.Tensor, logvar: torch.Tensor, generators: Sequence[torch.Generator]) -> torch.Tensor:
    """A posterior sample, noise row i from generator i (as the VAEs' ``encode`` draws it)."""
    noise = randn(mean.shape, list(generators), device=mean.device, dtype=mean.dtype)
    return mean + torch.exp(0.5 * logvar) * noise


def _kl(mean: torch.Tensor, logvar: torch.Tensor) -> torch.Tensor:
    """KL(N(mean, exp(logvar)) || N(0, 1)) summed over everything but dim 0: [B]."""
    kl = 0.5 * (mean.float() ** 2 + logvar.float().exp() - 1.0 - logvar.float())
    return kl.flatten(1).sum(dim=1)


def _generators(states: Sequence[torch.Tensor]) -> list[torch.Generator]:
    out = []
    for state in states:
        generator = torch.Generator()
        generator.set_state(state)
        out.append(generator)
    return out


# ----- the objectives (what data parallelism wraps) ---------------------------------------------------------


class VideoAutoencoderObjective(nn.Module):
    """``OpenSoraVAE_V1_2`` with its training loss as ``forward``."""

    def __init__(self, autoencoder: nn.Module, kl_weight: float, parts: str = "all", loss: str = "l1",
                 from_latents: bool = False, foreground_weight: float = 0.0):
        super().__init__()
        self.autoencoder = autoencoder
        self.kl_weight = kl_weight
        self.parts = parts
        self.error = RECONSTRUCTION_LOSSES[loss]
        self.from_latents = from_latents  # the inputs are spatial latents (parts "temporal" only)
        self.foreground_weight = foreground_weight

    def _reconstruction(self, output: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
        """The reconstruction loss of ``output`` against ``target`` (both [B, C, T, H, W]: pixels, or spatial
        latents for the temporal VAE alone). With ``foreground_weight`` > 0 each element's error is weighted
        by ``rflow.foreground_weights`` of the target (its distance from the clip's background colour)."""
        error = self.error(output.float(), target.float())
        if self.foreground_weight <= 0:
            return error.mean()
        weight = foreground_weights(target, self.foreground_weight)  # [B, 1, T, H, W]
        return (error * weight).sum() / (weight.sum() * error.shape[1])

    def forward(self, video: torch.Tensor, generators: Sequence[torch.Generator]
                ) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
        """video [B, 3, T, H, W] in [-1, 1] (``from_latents``: spatial latents [B, 4, T, h, w], x 0.18215)
        -> (loss, {``loss/reconstruction``, ``loss/kl``})."""
        if self.from_latents:
            return self._temporal_only(video.to(next(self.autoencoder.temporal_vae.parameters()).dtype), generators)
        B, _, T, _, _ = video.shape
        spatial = self.autoencoder.spatial_vae.module
        frames = video.transpose(1, 2).flatten(0, 1).to(spatial.dtype)  # [B·T, 3, H, W]
        posterior = spatial.encode(frames).latent_dist
        mean, logvar = posterior.mean.unflatten(0, (B, T)), posterior.logvar.unflatten(0, (B, T))  # [B, T, 4, h, w]
        kl = _kl(mean, logvar)
        sample = self.autoencoder.sample_posterior
        z = (_sample(mean, logvar, generators) if sample else mean).transpose(1, 2)  # [B, 4, T, h, w]
        if self.parts == "spatial":  # each frame through the spatial VAE alone (an image autoencoder)
            pixels = spatial.decode(z.transpose(1, 2).flatten(0, 1)).sample.unflatten(0, (B, T)).transpose(1, 2)
            reconstruction = self._reconstruction(pixels, video)
            kl = kl.mean() / video[0].numel()
            return reconstruction + self.kl_weight * kl, {"loss/reconstruction": reconstruction, "loss/kl": kl}
        z = z * SPATIAL_SCALING
        if self.parts == "temporal":  # the frozen spatial latents are the target (no pixels decoded)
            return self._temporal_only(z.detach(), generators)
        z_hat, chunk_kl = self._temporal_chain(z, generators)
        pixels = spatial.decode(z_hat.transpose(1, 2).flatten(0, 1) / SPATIAL_SCALING).sample  # [B·T, 3, H, W]
        pixels = pixels.unflatten(0, (B, T)).transpose(1, 2)
        reconstruction = self._reconstruction(pixels, video)
        kl = (kl + chunk_kl).mean() / video[0].numel()
        return reconstruction + self.kl_weight * kl, {"loss/reconstruction": reconstruction, "loss/kl": kl}

    def _temporal_chain(self, z: torch.Tensor, generators: Sequence[torch.Generator]
                        ) -> tuple[torch.Tensor, torch.Tensor]:
        """Spatial latents z [B, 4, T, h, w] (x 0.18215) -> the temporal VAE's reconstruction of them, chunk by
        chunk of 17 frames as ``encode``/``decode`` run, and the chunks' KL summed per sample [B]."""
        temporal, sample = self.autoencoder.temporal_vae, self.autoencoder.sample_posterior
        decoded, kl = [], torch.zeros(z.shape[0], device=z.device)
        for part in z.split(geometry.VIDEO_CHUNK_FRAMES, dim=2):
            chunk_mean, chunk_logvar = temporal.encode(part)  # [B, 4, T'_chunk, h, w]
            kl = kl + _kl(chunk_mean, chunk_logvar)
            chunk = _sample(chunk_mean, chunk_logvar, generators) if sample else chunk_mean
            decoded.append(temporal.decode(chunk, num_frames=part.shape[2]))
        return torch.cat(decoded, dim=2), kl

    def _temporal_only(self, z: torch.Tensor, generators: Sequence[torch.Generator]
                       ) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
        """The temporal VAE alone, against the frozen spatial latents z it reconstructs."""
        z_hat, kl = self._temporal_chain(z, generators)
        reconstruction = self._reconstruction(z_hat, z)
        kl = kl.mean() / z[0].numel()
        return reconstruction + self.kl_weight * kl, {"loss/reconstruction": reconstruction, "loss/kl": kl}


class AudioAutoencoderObjective(nn.Module):
    """``AudioLDM2`` (its mel VAE trains, its vocoder stays as built) with the training loss as ``forward``."""

    def __init__(self, autoencoder: nn.Module, kl_weight: float, loss: str = "l1"):
        super().__init__()
        self.autoencoder = autoencoder
        self.kl_weight = kl_weight
        self.error = RECONSTRUCTION_LOSSES[loss]

    def forward(self, mel: torch.Tensor, generators: Sequence[torch.Generator]
                ) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
        """log-mel [B, 1, T, 64] -> (loss, {``loss/reconstruction``, ``loss/kl``})."""
        vae = self.autoencoder.vae
        posterior = vae.encode(mel.to(vae.dtype)).latent_dist  # [B, 8, T/4, 16]
        z = _sample(posterior.mean, posterior.logvar, generators) if self.autoencoder.sample_posterior else posterior.mean
        reconstruction = self.error(vae.decode(z).sample.float(), mel.float()).mean()
        kl = _kl(posterior.mean, posterior.logvar).mean() / mel[0].numel()
        return reconstruction + self.kl_weight * kl, {"loss/reconstruction": reconstruction, "loss/kl": kl}


# ----- latent statistics -------------------------------------------------------------------------------------


@torch.no_grad()
def video_latent_statistics(autoencoder: nn.Module, batches: Sequence[tuple[torch.Tensor, list[torch.Tensor]]],
                            device: torch.device | None = None, from_latents: bool = False
                            ) -> tuple[torch.Tensor, torch.Tensor]:
    """Per-channel mean and std [4] of the un-normalised latents of ``OpenSoraVAE_V1_2``'s ``encode``.

    Args:
        batches: (video [B, 3, T, H, W], the states of the B per-sample generators) pairs; with
            ``from_latents``, spatial latents [B, 4, T, h, w] (x 0.18215) in place of the video.
    """
    shift, scale = autoencoder.shift.double(), autoencoder.scale.double()
    encode = autoencoder.encode_temporal if from_latents else autoencoder.encode
    latents = []
    for video, states in batches:
        z = encode(video.to(device), _generators(states)).double() * scale + shift  # [B, 4, T', h, w]
        latents.append(z.transpose(0, 1).flatten(1).cpu())
    z = torch.cat(latents, dim=1)  # [4, N]
    return z.mean(dim=1), z.std(dim=1, correction=0)


@torch.no_grad()
def audio_latent_std(autoencoder: nn.Module, batches: Sequence[tuple[torch.Tensor, list[torch.Tensor]]],
                     device: torch.device | None = None) -> float:
    """The std over all elements of the un-scaled latents of ``AudioLDM2``'s ``encode``.

    Args:
        batches: (log-mel [B, 1, T, 64], the states of the B per-sample generators) pairs.
    """
    latents = [(autoencoder.encode(mel.to(device), _generators(states)).double() / autoencoder.scaling_factor)
               .flatten().cpu() for mel, states in batches]
    return float(torch.cat(latents).std(correction=0))


# ----- the stage ----------------------------------------------------------------------------------------------


class AutoencoderStage:
    """Trains the autoencoder named by ``cfg.autoencoder`` through the shared loop."""

    uses_ema = True  # with ema_decay set; model/ holds the raw weights and their latent statistics

    def __init__(self, cfg: Config):
        self.cfg = cfg
        kind = cfg.get("autoencoder")
        if kind not in AUTOENCODERS:
            raise ConfigError(f"autoencoder must be one of {', '.join(map(repr, AUTOENCODERS))} (the one this run "
                              f"trains), got {kind!r}")
        self.kind = kind
        self.section, self.key = AUTOENCODERS[kind]
        if not isinstance(cfg.get(self.section), Mapping):
            raise ConfigError(f"autoencoder={kind!r} trains the config's {self.section}, which it lacks")
        if kind == "video" and cfg.get("dataset") is not None and cfg.dataset.get("audio_only"):
            raise ConfigError("autoencoder='video' trains on video clips: dataset.audio_only must be False")
        self.parts = cfg.get("autoencoder_parts", "all")
        if self.parts not in VIDEO_PARTS or (kind == "audio" and self.parts != "all"):
            raise ConfigError(f"autoencoder_parts must be one of {', '.join(map(repr, VIDEO_PARTS))} (the video "
                              f"autoencoder's; the audio one trains 'all'), got {self.parts!r}")
        self.from_latents = bool(cfg.get("load_va_features"))
        if self.from_latents and self.parts != "temporal":
            raise ConfigError("load_va_features=True trains the temporal VAE from extracted spatial latents: it needs "
                              f"autoencoder='video' and autoencoder_parts='temporal', got {kind!r} / {self.parts!r}")
        self.reconstruction_loss = cfg.get("reconstruction_loss", "l1")
        if self.reconstruction_loss not in RECONSTRUCTION_LOSSES:
            raise ConfigError(f"reconstruction_loss must be one of {', '.join(map(repr, RECONSTRUCTION_LOSSES))}, "
                              f"got {self.reconstruction_loss!r}")
        self.kl_weight = float(cfg.kl_weight)
        if not self.kl_weight >= 0:
            raise ConfigError(f"kl_weight must be >= 0, got {cfg.kl_weight}")
        try:
            self.foreground_weight = check_nonnegative("foreground_weight", cfg.get("foreground_weight", 0.0),
                                                       "0: the plain mean")
        except ValueError as error:
            raise ConfigError(str(error)) from None
        if self.foreground_weight and kind != "video":
            raise ConfigError("foreground_weight weights the video autoencoder's loss: it needs autoencoder='video'")
        if int(cfg.latent_stats_batches) < 1:
            raise ConfigError(f"latent_stats_batches must be >= 1, got {cfg.latent_stats_batches}")
        self.recent: collections.deque = collections.deque(maxlen=int(cfg.latent_stats_batches))
        self.model_type = cfg[self.section]["type"]  # names the run folder
        self.name = f"autoencoder ({kind}: {self.model_type})"

    # ----- models --------------------------------------------------------------------------------------------

    def build(self, device: torch.device, dtype: torch.dtype) -> nn.Module:
        """The objective around the autoencoder to train (fp32, CPU); only its VAE weights train."""
        self.device, self.dtype = device, dtype
        autoencoder = build_module(self.cfg[self.section], MODELS)
        if self.kind == "video":
            autoencoder.requires_grad_(False)
            trained = {"all": [autoencoder.spatial_vae, autoencoder.temporal_vae], "spatial": [autoencoder.spatial_vae],
                       "temporal": [autoencoder.temporal_vae]}[self.parts]
            for part in trained:
                part.requires_grad_(True)
            diffusers_parts = [autoencoder.spatial_vae.module] if self.parts != "temporal" else []
            objective: nn.Module = VideoAutoencoderObjective(autoencoder, self.kl_weight, self.parts,
                                                             self.reconstruction_loss, self.from_latents,
                                                             self.foreground_weight)
        else:
            autoencoder.vae.requires_grad_(True)
            diffusers_parts = [autoencoder.vae]
            objective = AudioAutoencoderObjective(autoencoder, self.kl_weight, self.reconstruction_loss)
        if self.cfg.grad_checkpoint:  # the loop's switch; diffusers models have their own (the temporal VAE none)
            for part in diffusers_parts:
                part.enable_gradient_checkpointing()
        trainable = sum(p.numel() for p in objective.parameters() if p.requires_grad)
        logger.info("%s: %s trainable of %s parameters, kl_weight %g", self.name, f"{trainable:,}",
                    f"{sum(p.numel() for p in objective.parameters()):,}", self.kl_weight)
        return objective

    def save_model(self, model: nn.Module, folder: Path) -> None:
        """The autoencoder in the layout its builder's ``from_pretrained`` reads, with the latent statistics
        of the weights saved (see the module docstring)."""
        autoencoder = model.autoencoder
        device = next(autoencoder.parameters()).device
        batches = list(self.recent)
        if self.kind == "video":
            state = dict(autoencoder.state_dict())
            if batches:
                mean, std = video_latent_statistics(autoencoder, batches, device, self.from_latents)
                state["shift"] = mean.view_as(autoencoder.shift).to(autoencoder.shift.dtype)
                state["scale"] = std.view_as(autoencoder.scale).to(autoencoder.scale.dtype)
                logger.info("video latents over %d batch(es): shift %s, scale %s", len(batches),
                            [round(v, 4) for v in mean.tolist()], [round(v, 4) for v in std.tolist()])
            else:
                logger.warning("no batch seen yet: %s keeps the latent shift and scale it had", folder)
            config = dict(type=self.model_type, preset=self.cfg.vae.get("preset", "v1.2"))
            save_pretrained(autoencoder, folder, config=config, state_dict=state)
            return
        vae_config = json.loads(autoencoder.vae.to_json_string())
        if batches:
            std = audio_latent_std(autoencoder, batches, device)
            vae_config["scaling_factor"] = 1.0 / std
            logger.info("audio latents over %d batch(es): std %.4f, scaling factor %.4f", len(batches), std, 1.0 / std)
        else:
            logger.warning("no batch seen yet: %s keeps the scaling factor it had", folder)
        save_pretrained(autoencoder.vae, folder / "vae", config=vae_config)
        if _has_weights(autoencoder.vocoder):  # Griffin-Lim has none: the folder is then vae/ alone
            vocoder_config = json.loads(autoencoder.vocoder.config.to_json_string())
            save_pretrained(autoencoder.vocoder, folder / "vocoder", config=vocoder_config)

    def load_weights(self, model: nn.Module, folder: Path) -> None:
        autoencoder = model.autoencoder
        if self.kind == "video":
            load_state_dict_checked(autoencoder, open_state_dict(folder), source=str(folder))
            return
        for part in ("vae", "vocoder") if _has_weights(autoencoder.vocoder) else ("vae",):
            load_state_dict_checked(getattr(autoencoder, part), open_state_dict(folder / part),
                                    source=str(folder / part))

    # ----- one batch -------------------------------------------------------------------------------------------

    def loss(self, model: nn.Module, batch: Batch, generators: Sequence[torch.Generator]
             ) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
        """Mean loss of the batch and its parts (``loss/reconstruction``, ``loss/kl``)."""
        x = batch[self.key]
        # kept (with the noise of this step) for the latent statistics of the next saved model
        self.recent.append((x.detach().cpu(), [g.get_state() for g in generators]))
        return model(x.to(self.device, non_blocking=True), list(generators))
