"""Rectified flow (``rflow``): the training objective and the Euler sampler of JavisDiT.

Noising interpolates linearly, ``x_t = (1 - t/1000)·x0 + (t/1000)·ε`` (t = 1000 is pure noise), and
the model predicts the velocity ``x0 - ε``. Timesteps are shifted towards the noisy end for larger or
longer clips (``timestep_transform``). Video and audio share one timestep per sample and one guidance
scale; the unconditional pass uses the null caption and the null prior. Latents are dicts
``{"video": [B, C, T, H, W], "audio": [B, C, Ta, M]}``; masks are ``{modality: [B, T]}``.

The original computes the timestep shift ratio from bf16 copies of the clip size; v0.1 here does it in
fp32 with the true latent frame count (the shift differs by < 0.2% at 240p). JavisDiT++ configs ask for
the original's arithmetic (``shift_formula="upstream"``): its published outputs were sampled with it.
``transform_scale`` scales the shift of training timesteps only; sampling uses scale 1, as the original
sampler did (JavisDiT++ trained with 5 and samples with 1: spec MODEL_V1.md §14.1, kept for parity).

``foreground_weight`` > 0 (training, not in the original; default 0: the plain mean) weights the video
loss towards what differs from the clip's background (see ``foreground_weights``): for small objects on
flat backgrounds, whose attributes otherwise weigh little in the mean over the latent.

Two sampling options trade accuracy for fewer denoiser calls; their defaults are the original sampler,
bit for bit. ``cache_threshold`` > 0 reuses the last model output on steps where the model's input
barely changed (``step_cache.StepCache``); ``timestep_spacing="cosine"`` places the steps for small
step counts (see ``RFlow.timesteps``).

Three guidance options, off by default (one scale for both modalities at every step, as the original):
``cfg_scale`` per modality, ``cfg_interval`` (guidance only in a range of noise levels), and
``sync_guidance`` (each modality pushed towards what the other one tells it through the video-audio
cross-attention, against the model's own prediction without that module).
"""

from __future__ import annotations

import logging
import math
from collections.abc import Callable, Mapping, Sequence
from typing import Any

import torch
from tqdm import tqdm

from javisdit.errors import ConfigError
from javisdit.models import geometry
from javisdit.schedulers.step_cache import StepCache
from javisdit.utils.seed import rand, randn

logger = logging.getLogger(__name__)

TIMESTEP_SPACINGS = ("linear", "cosine")


def timestep_transform(t: torch.Tensor, height: float, width: float, num_frames: int, num_timesteps: int = 1000,
                       base_size: int = 512, scale: float = 1.0) -> torch.Tensor:
    """Shift timesteps [B] in [0, num_timesteps] by ``r = sqrt(H·W / 512²)·sqrt(latent frames)``:
    ``τ' = r·τ / (1 + (r - 1)·τ)`` with ``τ = t / num_timesteps``.

    The original counted latent frames as ``(num_frames // 17) * 5``, which is the true count for
    whole 17-frame chunks (51, 102, 204, 408 frames: identical here) but 0 below 17 frames, where every
    timestep collapsed to 0 (or NaN at t = 1000); we use the true latent frame count.
    """
    ratio_space = math.sqrt(height * width) / base_size
    latent_frames = geometry.video_latent_frames(num_frames)
    r = ratio_space * math.sqrt(latent_frames) * scale
    tau = t / num_timesteps
    return num_timesteps * r * tau / (1 + (r - 1) * tau)


def upstream_timestep_transform(t: torch.Tensor, height: float, width: float, num_frames: int,
                                num_timesteps: int = 1000, base_size: int = 512, scale: float = 1.0) -> torch.Tensor:
    """The original's shift, operation by operation: the ratio from bf16 copies of the clip size and
    ``num_frames // 17 * 5`` latent frames (Open-Sora's VAE, also for JavisDiT++'s Wan VAE: 65 frames
    count as 15, not 17; spec MODEL_V1.md §9.2, §14.2), each step rounded to bf16; e.g. 240x426, 65
    frames: 2.421875. The timesteps stay fp32."""
    if 1 < num_frames < 17:
        raise ConfigError(f"shift_formula='upstream' counts num_frames // 17 * 5 latent frames: 0 for {num_frames} "
                          "frames, where every timestep collapses; use 17 frames or more, or 'latent_frames'")
    bf16 = torch.bfloat16
    h, w = torch.tensor(float(height), dtype=bf16), torch.tensor(float(width), dtype=bf16)
    ratio_space = ((h * w) / base_size**2).sqrt()
    frames = torch.tensor(float(num_frames), dtype=bf16)
    ratio_time = (torch.div(frames, 17, rounding_mode="floor") * 5).sqrt() if num_frames > 1 else torch.ones((), dtype=bf16)
    r = (ratio_space * ratio_time * scale).to(t.device)
    tau = t / num_timesteps
    return (r * tau / (1 + (r - 1) * tau) * num_timesteps).to(t.dtype)


SHIFT_FORMULAS = {"latent_frames": timestep_transform, "upstream": upstream_timestep_transform}


def check_nonnegative(name: str, value: Any, zero: str) -> float:
    """``value`` as a float when it is a finite number >= 0 (``zero`` says what 0 means); else a ValueError."""
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not 0 <= value < math.inf:
        raise ValueError(f"{name} must be a finite number >= 0 ({zero}), got {value!r}")
    return float(value)


def foreground_weights(x0: torch.Tensor, strength: float) -> torch.Tensor:
    """Per-element loss weights [B, 1, T, H, W] for clean video latents x0 [B, C, T, H, W]:
    ``1 + strength·d / mean(d)``, where d is the L1 distance over channels of each latent pixel from the
    clip's background (the per-channel median over the clip's T·H·W pixels) and the mean is the clip's.

    A flat clip (d = 0 everywhere) gets weight 1. The weights depend on x0 only, never on the model.
    """
    x = x0.float()
    background = x.flatten(2).median(dim=2).values[..., None, None, None]  # [B, C, 1, 1, 1]
    d = (x - background).abs().sum(dim=1, keepdim=True)
    mean = d.mean(dim=(2, 3, 4), keepdim=True)
    return 1 + strength * torch.where(mean > 0, d / mean.clamp(min=1e-12), torch.zeros_like(d))


def _frames_mask(mask: torch.Tensor, like: torch.Tensor) -> torch.Tensor:
    """[B, T] -> broadcastable over a latent [B, C, T, ...]."""
    return mask.reshape(mask.shape[0], 1, mask.shape[1], *([1] * (like.dim() - 3)))


class RFlow:
    def __init__(self, num_sampling_steps: int = 10, num_timesteps: int = 1000,
                 cfg_scale: float | Mapping[str, float] = 4.0,
                 use_discrete_timesteps: bool = False, use_timestep_transform: bool = False,
                 sample_method: str = "uniform", loc: float = 0.0, scale: float = 1.0, transform_scale: float = 1.0,
                 shift_formula: str = "latent_frames", cache_threshold: float = 0.0,
                 timestep_spacing: str = "linear", foreground_weight: float = 0.0,
                 cfg_interval: Sequence[float] | Mapping[str, Sequence[float] | None] | None = None,
                 sync_guidance: float | Mapping[str, float] = 0.0):
        """The arguments are the ``scheduler`` config keys; the five below are not in the original.

        Args:
            cfg_scale: the guidance scale, one for every modality (the original), or one per modality,
                e.g. ``{"video": 1.0, "audio": 7.0}`` (every generated modality must be named).
            cfg_interval: ``(low, high)`` in noise level ``t/num_timesteps``: guidance applies only at steps
                with low <= t/T <= high, the other steps take the conditional prediction alone (guidance in a
                limited interval); None (default) guides every step. Or one per modality, e.g.
                ``{"video": (0.0, 0.5)}``; a modality not named is guided at every step.
            sync_guidance: guidance towards the other modality through the video-audio cross-attention:
                each step adds ``g·(cond - cond without it)`` to a modality's velocity, the second term from
                one more call of the model with ``skip_sync`` naming ``va_cross`` (twice the denoiser
                work, except at steps where the masks keep every frame of the guided modalities). One
                scale for every modality, or one per modality (a modality not named gets 0); 0
                (default) is the original sampler.
            foreground_weight: training: each latent pixel's weight in the video loss is
                ``1 + foreground_weight·d/mean(d)`` (``foreground_weights``); 0 (default) is the plain mean.
            cache_threshold: step caching (sampling): the accumulated relative change of the model's
                cache signal at which a step calls the denoiser again; 0 calls it at every step.
            timestep_spacing: where the sampling steps go before the shift: ``linear`` (the original)
                or ``cosine`` (denser at both ends; for few steps).
        """
        if shift_formula not in SHIFT_FORMULAS:
            raise ValueError(f"shift_formula must be one of {', '.join(SHIFT_FORMULAS)}, got {shift_formula!r}")
        if sample_method not in ("uniform", "logit-normal"):
            raise ValueError(f"sample_method must be 'uniform' or 'logit-normal', got {sample_method!r}")
        if num_sampling_steps < 1:
            raise ValueError(f"num_sampling_steps must be >= 1, got {num_sampling_steps}")
        cache_threshold = check_nonnegative("cache_threshold", cache_threshold, "0 turns step caching off")
        foreground_weight = check_nonnegative("foreground_weight", foreground_weight, "0: the plain mean")
        if timestep_spacing not in TIMESTEP_SPACINGS:
            raise ValueError(f"timestep_spacing must be one of {', '.join(TIMESTEP_SPACINGS)}, "
                             f"got {timestep_spacing!r}")
        self.num_sampling_steps = num_sampling_steps
        self.num_timesteps = num_timesteps
        self.cfg_scale = check_cfg_scale(cfg_scale)
        self.sync_guidance = check_sync_guidance(sync_guidance)
        if isinstance(cfg_interval, Mapping):
            self.cfg_interval = {k: _check_interval(v) for k, v in cfg_interval.items()}
        else:
            self.cfg_interval = _check_interval(cfg_interval)
        self.use_discrete_timesteps = use_discrete_timesteps
        self.use_timestep_transform = use_timestep_transform
        self.sample_method, self.loc, self.scale = sample_method, loc, scale
        self.transform_scale = transform_scale
        self.shift_formula = shift_formula
        self.cache_threshold = float(cache_threshold)
        self.timestep_spacing = timestep_spacing
        self.foreground_weight = float(foreground_weight)
        # What the last ``sample`` did: per step, whether it called the denoiser; and the number of calls.
        self.last_computed: list[bool] = []
        self.last_calls = 0
        self._fallback_logged = False

    # ----- noising and training ----------------------------------------------------------------------------

    def add_noise(self, x0: torch.Tensor, noise: torch.Tensor, t: torch.Tensor) -> torch.Tensor:
        """(1 - t/T)·x0 + (t/T)·noise, with t [B] broadcast over the other dims."""
        tau = (t.float() / self.num_timesteps).reshape(-1, *([1] * (x0.dim() - 1)))
        return ((1 - tau) * x0 + tau * noise).to(x0.dtype)

    def transform(self, t: torch.Tensor, height, width, num_frames, scale: float = 1.0) -> torch.Tensor:
        """The timestep shift for a clip of (num_frames, height, width) pixels (element 0 of tensors)."""
        if not self.use_timestep_transform:
            return t
        shift = SHIFT_FORMULAS[self.shift_formula]
        return shift(t, float(_first(height)), float(_first(width)), int(_first(num_frames)), self.num_timesteps,
                     scale=scale)

    def sample_timesteps(self, batch_size: int, height, width, num_frames, device=None, generator=None) -> torch.Tensor:
        """Training timesteps [B]: uniform or logit-normal on (0, 1000), then shifted. ``generator``: a
        generator or one per sample."""
        if self.use_discrete_timesteps:
            t = (rand((batch_size,), generator, device) * self.num_timesteps).floor()
        elif self.sample_method == "uniform":
            t = rand((batch_size,), generator, device) * self.num_timesteps
        else:
            n = randn((batch_size,), generator, device) * self.scale + self.loc
            t = torch.sigmoid(n) * self.num_timesteps
        return self.transform(t, height, width, num_frames, scale=self.transform_scale)

    def training_losses(
        self,
        model: Callable[..., Mapping[str, torch.Tensor]],
        x0: Mapping[str, torch.Tensor],
        model_kwargs: Mapping,
        t: torch.Tensor,
        noise: Mapping[str, torch.Tensor] | None = None,
        masks: Mapping[str, torch.Tensor] | None = None,
        modalities: tuple[str, ...] | None = None,
        generator: torch.Generator | Sequence[torch.Generator] | None = None,
    ) -> dict[str, torch.Tensor]:
        """Per-sample losses: ``{modality: [B], "loss": [B]}`` (the sum over ``modalities``).

        Args:
            x0: clean latents. t: [B] timesteps (one per sample, shared by the modalities).
            masks: ``{modality: [B, T] bool}``, False for clean conditioning frames: they enter the
                model un-noised and are left out of that modality's mean.
            modalities: which losses count (default: all of ``x0``; stage 1 uses audio only).
        """
        noise = noise or {k: randn(v.shape, generator, device=v.device, dtype=v.dtype) for k, v in x0.items()}
        x_t = {}
        for k, v in x0.items():
            x_t[k] = self.add_noise(v, noise[k], t)
            if masks is not None and k in masks:
                x_t[k] = torch.where(_frames_mask(masks[k], v), x_t[k], v)
        extra = {}
        if masks is not None:
            extra = {"x_mask": masks.get("video"), "ax_mask": masks.get("audio")}
        out = model(x=x_t, timestep=t, **model_kwargs, **extra)
        losses = {}
        for k in modalities or tuple(x0):
            v = x0[k]
            pred = out[k][:, : v.shape[1]].float()
            err = (pred - (v.float() - noise[k].float())).pow(2)
            masked = masks is not None and k in masks
            foreground = k == "video" and self.foreground_weight > 0
            if not (masked or foreground):
                losses[k] = err.flatten(1).mean(1)  # the original's plain mean
                continue
            weight = foreground_weights(v, self.foreground_weight) if foreground else torch.ones_like(err[:, :1])
            if masked:  # a fully clean sample contributes 0 (the original reported a constant 1 there)
                weight = weight * _frames_mask(masks[k], v).float()
            weight = weight.expand_as(err)
            losses[k] = (err * weight).flatten(1).sum(1) / weight.flatten(1).sum(1).clamp(min=1e-12)
        losses["loss"] = sum(losses[k] for k in (modalities or tuple(x0)))
        return losses

    # ----- sampling ----------------------------------------------------------------------------------------

    def timesteps(self, height, width, num_frames, device=None) -> list[torch.Tensor]:
        """The sampling schedule: N timesteps ``τ_i·1000`` for i < N, each shifted; returned as [1] tensors.

        ``linear``: τ_i = 1 - i/N. ``cosine``: τ_i = (1 + cos(π·i/N)) / 2, the same endpoints with short
        steps near noise and near data. An Euler step of a rectified flow re-mixes its x0 and noise
        predictions at the new level (DDIM's update), so its error follows how far the log-SNR
        ``log((1 - τ)/τ)`` moves in one step, which changes fastest at both ends: equal steps in τ spend
        too little there when N is small (the last linear step jumps from 1000/N straight to data).
        """
        N = self.num_sampling_steps
        if self.timestep_spacing == "cosine":
            steps = [torch.tensor([(1.0 + math.cos(math.pi * i / N)) / 2 * self.num_timesteps], device=device)
                     for i in range(N)]
        else:
            steps = [torch.tensor([(1.0 - i / N) * self.num_timesteps], device=device) for i in range(N)]
        if self.use_discrete_timesteps:
            steps = [t.round() for t in steps]
        return [self.transform(t, height, width, num_frames) for t in steps]

    @torch.no_grad()
    def sample(
        self,
        model: Callable[..., Mapping[str, torch.Tensor]],
        z: Mapping[str, torch.Tensor],
        model_kwargs: Mapping,
        clip_size: tuple[int, int, int],
        cfg_scale: float | None = None,
        masks: Mapping[str, torch.Tensor] | None = None,
        generator: torch.Generator | Sequence[torch.Generator] | None = None,
        progress: bool = False,
    ) -> dict[str, torch.Tensor]:
        """Euler integration from noise ``z`` (B samples) to latents, with classifier-free guidance.

        Args:
            model_kwargs: the model's conditioning for 2B samples, the B conditional ones first, then
                their unconditional twins (null caption, null prior).
            clip_size: (frames, height, width) of the clip in pixels, for the timestep shift.
            masks: ``{modality: [B, T]}`` in [0, 1]: 1 generates a frame, 0 keeps the frame of ``z`` (a
                reference latent), in between starts editing it part-way. All-ones masks are the same as
                none and cost nothing.
            generator: random source for re-noising reference frames: a generator, or one per sample.

        Returns:
            The final latents, fp32. ``self.last_calls`` then holds the number of denoiser calls made
            (``num_sampling_steps`` unless ``cache_threshold`` > 0) and ``self.last_computed`` which steps
            made them.

        With ``cache_threshold`` > 0 a step whose cache signal (``model.cache_signal(x, timestep,
        **model_kwargs)``, else the timestep) moved little since the last call reuses that call's raw
        output (both guidance halves) with its own step size and guidance scale; steps where the
        masks change which frames are generated always call the model.
        """
        scale = check_cfg_scale(self.cfg_scale if cfg_scale is None else cfg_scale)
        if isinstance(scale, Mapping) and set(z) - set(scale):
            raise ValueError(f"cfg_scale names {', '.join(sorted(scale))} but the sampler generates "
                             f"{', '.join(sorted(z))}: give a scale for each")
        sync = self._sync_scales(model, z)
        z = {k: v.float() for k, v in z.items()}
        if masks is not None and all(bool((m >= 1).all()) for m in masks.values()):
            masks = None
        reference = dict(z) if masks is not None else {}
        started = {k: torch.zeros_like(m, dtype=torch.bool) for k, m in (masks or {}).items()}
        device = next(iter(z.values())).device
        num_frames, height, width = clip_size
        timesteps = self.timesteps(height, width, num_frames, device)
        cache = StepCache(self.cache_threshold) if self.cache_threshold > 0 else None
        if cache is not None:
            cache.start(len(timesteps))
        self.last_computed, previous_masks, out, free = [], None, None, None
        for i, t in enumerate(tqdm(timesteps, disable=not progress, desc="sampling", leave=False)):
            model_masks = {}
            if masks is not None:
                for k, m in masks.items():
                    active = m * self.num_timesteps >= t  # [B, T]: frames being generated from now on
                    fresh = active & ~started[k]
                    if fresh.any():  # start them at noise level t from the reference
                        noise = randn(z[k].shape, generator, device=device)
                        renoised = self.add_noise(reference[k], noise, t.expand(z[k].shape[0]))
                        z[k] = torch.where(_frames_mask(fresh, z[k]), renoised, z[k])
                    started[k] |= active
                    model_masks[k] = active
            t_in = t.expand(2 * next(iter(z.values())).shape[0])
            x_in = {k: torch.cat([v, v]) for k, v in z.items()}
            extra = {}
            if model_masks:
                extra = {key: torch.cat([model_masks[k], model_masks[k]]) for k, key in
                         (("video", "x_mask"), ("audio", "ax_mask")) if k in model_masks}
            if cache is None:
                out = model(x=x_in, timestep=t_in, **model_kwargs, **extra)
                free = _without_sync(model, x_in, t_in, model_kwargs, extra) \
                    if _generating(sync, model_masks) else None
            else:
                masks_changed = previous_masks is not None and any(
                    not torch.equal(m, previous_masks[k]) for k, m in model_masks.items())
                previous_masks = model_masks
                signal = self._cache_signal(model, x_in, t_in, model_kwargs)
                if cache.compute(i, signal, force=masks_changed):
                    out = model(x=x_in, timestep=t_in, **model_kwargs, **extra)
                    free = _without_sync(model, x_in, t_in, model_kwargs, extra) \
                        if _generating(sync, model_masks) else None
            self.last_computed.append(cache is None or cache.computed[-1])
            dt = (t - timesteps[i + 1] if i + 1 < len(timesteps) else t) / self.num_timesteps
            # the step's noise level, read back only for a guidance interval (a device sync per step on CUDA)
            level = None if self.cfg_interval is None else float(t.reshape(-1)[0]) / self.num_timesteps
            for k, v in z.items():
                cond, uncond = out[k][:, : v.shape[1]].float().chunk(2)
                interval = self.cfg_interval.get(k) if isinstance(self.cfg_interval, dict) else self.cfg_interval
                guided = interval is None or interval[0] <= level <= interval[1]
                step_scale = (scale[k] if isinstance(scale, Mapping) else scale) if guided else 1.0
                velocity = uncond + step_scale * (cond - uncond)
                if k in sync and free is not None:
                    velocity = velocity + sync[k] * (cond - free[k][: v.shape[0], : v.shape[1]].float())
                updated = v + velocity * dt
                if model_masks:  # frames not being generated keep their value
                    updated = torch.where(_frames_mask(model_masks[k], v), updated, v)
                z[k] = updated
        self.last_calls = sum(self.last_computed)
        if cache is not None:
            logger.debug("step cache (threshold %g): %d of %d steps called the denoiser", self.cache_threshold,
                         cache.calls, len(timesteps))
        return z

    def _sync_scales(self, model, z: Mapping[str, torch.Tensor]) -> dict[str, float]:
        """``sync_guidance`` per generated modality, the zero ones left out. A model without the video-audio
        cross-attention cannot take a nonzero one; with one modality only (audio-only generation), or the
        module already skipped (an ablation), there is nothing to guide with: none."""
        g = self.sync_guidance
        scales = {k: float(g.get(k, 0.0) if isinstance(g, Mapping) else g) for k in z}
        scales = {k: v for k, v in scales.items() if v != 0}
        if not scales:
            return {}
        if not (getattr(model, "has_va_cross", False) and hasattr(model, "skip_sync")):
            raise ConfigError(f"sync_guidance {g!r} guides through the video-audio cross-attention, which "
                              f"{type(model).__name__} does not have")
        if set(z) != {"video", "audio"} or "va_cross" in model.skip_sync:
            return {}
        return scales

    def _cache_signal(self, model, x: Mapping[str, torch.Tensor], t: torch.Tensor,
                      model_kwargs: Mapping) -> torch.Tensor:
        """The step cache's signal: the model's ``cache_signal`` (its first block's modulated input), or
        the timesteps [2B] for a model without one."""
        signal = getattr(model, "cache_signal", None)
        if signal is not None:
            return signal(x=x, timestep=t, **model_kwargs)
        if not self._fallback_logged:
            logger.info("%s has no cache_signal: step caching follows the relative change of the timestep",
                        type(model).__name__)
            self._fallback_logged = True
        return t.float()


def _generating(sync: Mapping[str, float], model_masks: Mapping[str, torch.Tensor]) -> bool:
    """Whether a step needs ``sync_guidance``'s second call: a guided modality has frames being generated
    (not when the condition keeps all of them, e.g. the given sound of a2v)."""
    return any(k not in model_masks or bool(model_masks[k].any()) for k in sync)


def _without_sync(model, x: Mapping[str, torch.Tensor], t: torch.Tensor, model_kwargs: Mapping,
                  extra: Mapping) -> dict[str, torch.Tensor]:
    """The same 2B call with the model's video-audio cross-attention skipped: the reference of
    ``sync_guidance`` (its conditional half is used). The whole batch runs again, not only its conditional
    half, because a sample's output may depend on its batch (v0.1's ST-prior attention sees the priors of
    the whole batch, conditional and null)."""
    previous = model.skip_sync
    model.skip_sync = frozenset(previous) | {"va_cross"}
    try:
        return model(x=x, timestep=t, **model_kwargs, **extra)
    finally:
        model.skip_sync = previous


def check_sync_guidance(scale: float | Mapping[str, float]) -> float | dict[str, float]:
    """A ``sync_guidance`` scale: a finite number, or one per modality (video, audio)."""
    if not _finite_scales(scale) or (isinstance(scale, Mapping) and set(scale) - {"video", "audio"}):
        raise ConfigError(f"sync_guidance must be a finite number or one per modality, e.g. {{'audio': 2.0}}, "
                          f"got {scale!r}")
    return {k: float(v) for k, v in scale.items()} if isinstance(scale, Mapping) else float(scale)


def _check_interval(interval) -> tuple[float, float] | None:
    """A guidance interval ``(low, high)`` of noise levels in [0, 1], or None (every step)."""
    if interval is None:
        return None
    try:
        low, high = (float(v) for v in interval)
    except (TypeError, ValueError):
        low, high = math.nan, math.nan
    if not 0 <= low <= high <= 1:
        raise ValueError(f"cfg_interval must be (low, high) with 0 <= low <= high <= 1 (noise levels t/T), or one "
                         f"such pair per modality, got {interval!r}")
    return low, high


def check_cfg_scale(scale: float | Mapping[str, float]) -> float | dict[str, float]:
    """A guidance scale: a finite number, or a mapping of modality names to finite numbers."""
    if not _finite_scales(scale):
        raise ValueError(f"cfg_scale must be a finite number or a mapping of modality to finite number, e.g. "
                         f"{{'video': 1.0, 'audio': 7.0}}, got {scale!r}")
    return dict(scale) if isinstance(scale, Mapping) else float(scale)


def _finite_scales(scale) -> bool:
    """Whether ``scale`` is a finite number or a non-empty mapping of names to finite numbers."""
    values = list(scale.values()) if isinstance(scale, Mapping) else [scale]
    return bool(values) and all(not isinstance(v, bool) and isinstance(v, (int, float)) and math.isfinite(v)
                                for v in values)


def _first(value) -> float:
    """Element 0 of a tensor or sequence, or the number itself."""
    if isinstance(value, torch.Tensor):
        return value.reshape(-1)[0].item()
    if isinstance(value, (list, tuple)):
        return value[0]
    return value
