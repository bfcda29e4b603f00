"""X-conditional generation: which latent frames of a clip come from a reference and which are generated.

A condition is a pair of frame masks, one per modality, in the sampler's convention (``RFlow.sample``):
1 generates a latent frame, 0 keeps the reference's frame exactly, a value in between re-noises the
reference to that level and edits it from there (the edit strength). The named modes are the tasks
stage 3 was trained on (``javisdit.training.masks``, PIPELINE.md §5.6):

- ``v2a`` (``video_to_audio``): every video frame is kept; the audio is generated.
- ``a2v`` (``audio_to_video``): every audio frame is kept; the video is generated.
- ``i2av`` (``image_head``): the first video latent frame (an image) is kept.
- ``ia2v`` (``sound_image_animate``): the first video latent frame and every audio frame are kept.
- ``extend`` (``quarter_head``): the first ``n`` video latent frames and their audio are kept.
- ``interpolate`` (``intepolate``): every other video latent frame and its audio are kept.

Where both modalities keep the same time span (``extend``, ``interpolate``), the audio mask is the video
mask resized to the audio length by nearest interpolation, as in training. The general form keeps
per-modality time ranges in seconds (``keep_ranges``): a latent frame is kept when every pixel frame /
mel frame it encodes lies inside a kept range.

Latent frames and time: the video VAE encodes chunks of 17 frames; latent frame 0 of a chunk encodes its
first frame alone (the causal first frame), latent frame i > 0 the ``time_stride`` frames
``(i - 1) * time_stride + 1 ..  i * time_stride`` of the chunk. An audio latent frame encodes
``AUDIO_VAE_STRIDE`` mel frames of 10 ms each (``geometry.video_latent_spans``).

References are read and encoded in ``references``; extension (``--loop``) is ``extension``.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from dataclasses import dataclass

import torch
import torch.nn.functional as F

from javisdit.errors import UserError
from javisdit.inference.references import Reference, encode_references, load_reference
from javisdit.models import geometry
from javisdit.models.geometry import video_latent_spans

logger = logging.getLogger(__name__)

MODES = ("v2a", "a2v", "i2av", "ia2v", "extend", "interpolate")
# the stage-3 task each mode was trained as (javisdit.training.masks.VALID_STRATEGIES)
TRAINING_TASK = {"v2a": "video_to_audio", "a2v": "audio_to_video", "i2av": "image_head",
                 "ia2v": "sound_image_animate", "extend": "quarter_head", "interpolate": "intepolate"}
# which references a mode reads: video (frames, and for extend the sound), image, audio
NEEDS = {"v2a": ("video",), "a2v": ("audio",), "i2av": ("image",), "ia2v": ("image", "audio"),
         "extend": ("video", "audio"), "interpolate": ("video", "audio")}

Range = tuple[float, float]


@dataclass(frozen=True)
class FrameMasks:
    """Per-latent-frame masks of one sample: ``video`` [Tv], ``audio`` [Ta], float in [0, 1], 1 = generate."""

    video: torch.Tensor
    audio: torch.Tensor

    def with_strength(self, strength: float) -> FrameMasks:
        """Kept frames (0) become ``strength``: 0 keeps the reference, 1 regenerates it, between edits it."""
        if not 0.0 <= strength <= 1.0:
            raise UserError(f"the edit strength must be in [0, 1], got {strength}")
        return FrameMasks(self.video.clamp(min=strength), self.audio.clamp(min=strength))

    @property
    def keeps_video(self) -> bool:
        return bool((self.video < 1).any())

    @property
    def keeps_audio(self) -> bool:
        return bool((self.audio < 1).any())


def _inside(begin: float, end: float, ranges: Sequence[Range], eps: float = 1e-6) -> bool:
    return any(a - eps <= begin and end <= b + eps for a, b in ranges)


def _check_ranges(ranges: Sequence[Range], what: str) -> list[Range]:
    checked = []
    for r in ranges:
        if len(r) != 2 or not float(r[0]) < float(r[1]) or float(r[0]) < 0:
            raise UserError(f"{what} keep range {tuple(r)}: needs 0 <= start < end (seconds)")
        checked.append((float(r[0]), float(r[1])))
    return checked


def keep_ranges(num_frames: int, fps: float, num_audio_latents: int, video: Sequence[Range] = (),
                audio: Sequence[Range] = (), time_stride: int = geometry.VIDEO_TIME_STRIDE) -> FrameMasks:
    """Masks that keep the latent frames lying wholly inside the given time ranges (seconds from the start)."""
    video, audio = _check_ranges(video, "video"), _check_ranges(audio, "audio")
    spans = video_latent_spans(num_frames, time_stride)
    v = torch.tensor([0.0 if _inside(a / fps, (b + 1) / fps, video) else 1.0 for a, b in spans])
    seconds = geometry.AUDIO_LATENT_SECONDS
    a = torch.tensor([0.0 if _inside(k * seconds, (k + 1) * seconds, audio) else 1.0
                      for k in range(num_audio_latents)])
    return FrameMasks(v, a)


def _follow(video: torch.Tensor, num_audio_latents: int) -> torch.Tensor:
    """The video mask resized to the audio length, nearest (training's mapping, PIPELINE.md §5.6)."""
    return F.interpolate(video.float()[None, None], size=num_audio_latents, mode="nearest")[0, 0]


def mode_masks(mode: str, num_video_latents: int, num_audio_latents: int, head_latents: int = 1) -> FrameMasks:
    """The masks of a named mode (``MODES``) for a clip of ``num_video_latents`` / ``num_audio_latents``.

    Args:
        head_latents: ``extend``: how many video latent frames of the head are kept.
    """
    if mode not in MODES:
        raise UserError(f"unknown conditioning mode {mode!r}; valid: {', '.join(MODES)}")
    tv, ta = num_video_latents, num_audio_latents
    video, audio = torch.ones(tv), torch.ones(ta)
    if mode == "v2a":
        video[:] = 0
    elif mode == "a2v":
        audio[:] = 0
    elif mode in ("i2av", "ia2v"):
        video[0] = 0
        if mode == "ia2v":
            audio[:] = 0
    elif mode == "extend":
        if not 1 <= head_latents < tv:
            raise UserError(f"extend keeps 1 to {tv - 1} video latent frames of the head, got {head_latents}")
        video[:head_latents] = 0
        audio = _follow(video, ta)
    else:  # interpolate
        video[::2] = 0
        audio = _follow(video, ta)
    return FrameMasks(video, audio)


@dataclass
class Condition:
    """What ``pipeline.generate`` conditions a batch on: reference ``latents`` (``encode_references``) and
    ``masks`` ``{"video": [B, Tv], "audio": [B, Ta]}`` (1 = generate, 0 = keep, between: edit)."""

    latents: dict[str, torch.Tensor | None]
    masks: dict[str, torch.Tensor]


def start_latents(noise: dict[str, torch.Tensor], reference: dict[str, torch.Tensor | None],
                  masks: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """The sampler's start: the reference's latent frames where a mask keeps or edits them (< 1), noise
    elsewhere; all-ones masks give the noise itself (unconditioned sampling, bit for bit)."""
    start = {}
    for key, z in noise.items():
        mask, ref = masks.get(key), reference.get(key)
        if mask is None or ref is None or bool((mask >= 1).all()):
            start[key] = z
            continue
        keep = (mask < 1).reshape(mask.shape[0], 1, mask.shape[1], *([1] * (z.dim() - 3))).to(z.device)
        start[key] = torch.where(keep, ref.to(z.device, z.dtype), z)
    return start


# ----- one call -----------------------------------------------------------------------------------------------

def _per_sample(value, batch: int, name: str) -> list:
    if isinstance(value, (list, tuple)):
        if len(value) != batch:
            raise UserError(f"{name}: {len(value)} references for {batch} prompts")
        return list(value)
    return [value] * batch


def parse_ranges(text: str | Sequence | None, what: str) -> list[Range]:
    """Time ranges from ``"0-1,2.5-4"`` (seconds) or a list of pairs; None or "" gives none."""
    if text is None or text == "":
        return []
    if not isinstance(text, str):
        return _check_ranges([tuple(r) for r in text], what)
    ranges = []
    for part in text.split(","):
        try:
            a, b = part.split("-")
            ranges.append((float(a), float(b)))
        except ValueError:
            raise UserError(f"--keep-{what} {text!r}: ranges are START-END in seconds, comma-separated, "
                            "e.g. 0-1,2-3.5") from None
    return _check_ranges(ranges, what)


def clip_masks(gen, clip: tuple[int, int, int], fps: float, mode: str | None = None,
               keep_video: Sequence[Range] = (), keep_audio: Sequence[Range] = (), strength: float = 0.0,
               head_latents: int = 1) -> FrameMasks:
    """One sample's masks for the models ``gen`` (``pipeline.Models``) and a clip of (T, H, W) pixels."""
    T = clip[0]
    if gen.vae is None and (mode is not None or keep_video):
        raise UserError(f"{mode or 'keep-video'} needs a video model; this config is audio-only")
    stride = gen.vae.time_stride if gen.vae is not None else geometry.VIDEO_TIME_STRIDE
    tv = geometry.video_latent_frames(T, stride)
    ta = gen.audio_vae.latent_size(T / fps)[1]
    masks = mode_masks(mode, tv, ta, head_latents) if mode is not None else \
        keep_ranges(T, fps, ta, keep_video, keep_audio, stride)
    return masks.with_strength(strength)


def build_condition(gen, references: Sequence[Reference], masks: FrameMasks, clip: tuple[int, int, int],
                    fps: float, dtype: torch.dtype, device, names: Sequence[str]) -> Condition:
    """A batch's ``Condition``: every reference checked against the masks (errors name ``names[i]``), then
    encoded."""
    T = clip[0]
    stride = gen.vae.time_stride if gen.vae is not None else geometry.VIDEO_TIME_STRIDE
    for name, ref in zip(names, references):
        ref.check_covers(masks, T, fps, stride, name=name)
    latents = encode_references(gen.vae, gen.audio_vae, references, T / fps, device, dtype)
    B = len(references)
    out = {"audio": masks.audio.expand(B, -1)}
    if gen.vae is not None:
        out["video"] = masks.video.expand(B, -1)
    return Condition(latents, out)


def generate_conditioned(gen, texts: Sequence[str], clip: tuple[int, int, int], fps: int, dtype: torch.dtype,
                         seeds: Sequence[int], mode: str | None = None, video=None, audio=None, image=None,
                         keep_video: Sequence[Range] = (), keep_audio: Sequence[Range] = (), strength: float = 0.0,
                         head_latents: int = 1, device: torch.device | str | None = None):
    """X-conditional generation in one call: returns (video [B, 3, T, H, W] or None, audio [B, S]).

    Args:
        gen: ``pipeline.build_models``'s models. texts: processed prompts (``pipeline.process_prompt``).
        seeds: one per prompt (the generator of ``pipeline.generate``).
        mode: one of ``MODES``, or None for the general form ``keep_video`` / ``keep_audio`` (ranges in
            seconds from the start of the clip).
        video, audio, image: paths or ``Reference`` objects, one for all prompts or a list of one per prompt.
        strength: 0 keeps the kept frames exactly, 1 regenerates them, between re-noises them to that level.
        head_latents: ``extend``: video latent frames of the head to keep.
    """
    from javisdit.inference.pipeline import generate

    B = len(texts)
    if len(seeds) != B:
        raise UserError(f"{len(seeds)} seeds for {B} prompts")
    masks = clip_masks(gen, clip, fps, mode, keep_video, keep_audio, strength, head_latents)
    refs = [load_reference(clip, fps, v, a, i) for v, a, i in
            zip(_per_sample(video, B, "video"), _per_sample(audio, B, "audio"), _per_sample(image, B, "image"))]
    device = torch.device(device) if device is not None else next(gen.model.parameters()).device
    condition = build_condition(gen, refs, masks, clip, fps, dtype, device, [f"prompt {k}" for k in range(B)])
    generators = [torch.Generator().manual_seed(int(s)) for s in seeds]
    return generate(gen, list(texts), clip, fps, dtype, generators, device=device, condition=condition)


# ----- the inference script -------------------------------------------------------------------------------------

FLAG_OF = {"video": "--ref-video", "audio": "--ref-audio", "image": "--ref-image"}


@dataclass
class Plan:
    """X-conditional generation as the inference config asks for it: the masks of every sample and the
    references given for every prompt (a CSV row's ``video_path``/``audio_path``/``image_path`` win)."""

    masks: FrameMasks
    defaults: dict[str, str | None]

    def references(self, prompts, clip: tuple[int, int, int], fps: float, stride: int, skip_bad: bool = False):
        """(prompts, their references, one-line errors of the skipped ones); without ``skip_bad`` the
        first bad prompt raises its error."""
        kept, refs, errors = [], [], []
        for prompt in prompts:
            paths = {kind: prompt.references.get(f"{kind}_path") or self.defaults[kind] for kind in FLAG_OF}
            try:
                ref = load_reference(clip, fps, paths["video"], paths["audio"], paths["image"])
                ref.check_covers(self.masks, clip[0], fps, stride, name="the references")
            except UserError as err:
                files = ", ".join(p for p in paths.values() if p) or "no reference file"
                message = f"prompt {prompt.index} ({files}): {err}"
                if not skip_bad:
                    raise UserError(message) from None
                logger.warning("skipped %s", message)
                errors.append(message)
                continue
            kept.append(prompt)
            refs.append(ref)
        return kept, refs, errors


def check_flags(cfg) -> None:
    """The config's conditioning keys, checked before any model is built (one-line UserErrors)."""
    from pathlib import Path

    mode, given = cfg.get("condition"), {k: cfg.get(f"ref_{k}") for k in FLAG_OF}
    ranges = [parse_ranges(cfg.get("keep_video"), "video"), parse_ranges(cfg.get("keep_audio"), "audio")]
    if mode is not None and mode not in MODES:
        raise UserError(f"--condition {mode!r}: valid modes are {', '.join(MODES)}")
    loop = int(cfg.get("loop", 1))
    if loop < 1:
        raise UserError(f"--loop must be >= 1, got {loop}")
    if mode == "extend" and (loop < 2 or not given["video"] and not given["image"]):
        raise UserError("--condition extend continues a reference: give --ref-video and --loop N (N >= 2 segments)")
    if loop > 1 and bool(cfg.get("audio_only", False)):
        raise UserError("--loop extends a sounding video; this config is audio-only")
    if mode is not None and any(ranges):
        raise UserError("--condition and --keep-video/--keep-audio are exclusive: a mode fixes what is kept")
    if mode is None and not any(ranges) and any(given.values()):
        raise UserError("a reference needs --condition MODE or --keep-video/--keep-audio to say what is kept")
    if given["video"] and given["image"]:
        raise UserError("--ref-video and --ref-image are exclusive")
    if not 0.0 <= float(cfg.get("edit_strength", 0.0)) <= 1.0:
        raise UserError(f"--edit-strength must be in [0, 1], got {cfg.get('edit_strength')}")
    for kind, path in given.items():
        if path and not Path(path).is_file():
            raise UserError(f"{FLAG_OF[kind]} {path}: no such file")
    if bool(cfg.get("audio_only", False)) and (mode is not None or ranges[0]):
        raise UserError("this config is audio-only: only --keep-audio can condition it")


def plan_from_config(cfg, gen, clip: tuple[int, int, int]) -> Plan | None:
    """The run's ``Plan``, or None when the config asks for plain text-to-sounding-video."""
    check_flags(cfg)
    mode = cfg.get("condition")
    keep_video, keep_audio = parse_ranges(cfg.get("keep_video"), "video"), parse_ranges(cfg.get("keep_audio"), "audio")
    if mode is None and not keep_video and not keep_audio:
        return None
    strength = float(cfg.get("edit_strength", 0.0))
    if mode == "extend":  # the first segment is the reference itself, sound included
        whole = clip_masks(gen, clip, float(cfg.fps), "v2a")
        masks = FrameMasks(whole.video, torch.zeros_like(whole.audio)).with_strength(strength)
    else:
        masks = clip_masks(gen, clip, float(cfg.fps), mode, keep_video, keep_audio, strength)
    return Plan(masks, {kind: cfg.get(f"ref_{kind}") for kind in FLAG_OF})
