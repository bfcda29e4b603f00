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
``AUDIO_VAE_STRIDE`` mel frames of 10 ms each.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from contextlib import contextmanager
from dataclasses import dataclass

import torch
import torch.nn.functional as F

from javisdit.errors import UserError
from javisdit.models import geometry

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


def video_latent_spans(num_frames: int, time_stride: int = geometry.VIDEO_TIME_STRIDE) -> list[tuple[int, int]]:
    """The pixel frames ``[first, last]`` (inclusive) that each latent frame of a ``num_frames`` clip encodes."""
    spans = []
    for start in range(0, num_frames, geometry.VIDEO_CHUNK_FRAMES):
        length = min(geometry.VIDEO_CHUNK_FRAMES, num_frames - start)
        spans.append((start, start))
        for first in range(1, length, time_stride):
            spans.append((start + first, start + min(first + time_stride, length) - 1))
    return spans


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
    seconds = geometry.MEL_HOP * geometry.AUDIO_VAE_STRIDE / geometry.SAMPLE_RATE  # one audio latent frame
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


# ----- references ---------------------------------------------------------------------------------------------


@dataclass
class Reference:
    """What a sample is conditioned on, read and shaped to the clip.

    ``video``: [3, T, H, W] in [-1, 1] (the clip's frames; an image fills frame 0), ``audio``: [S] at
    16 kHz (the clip's length); either may be None. ``video_seconds`` / ``audio_seconds``: how much of
    the clip the file really covers (the rest is padding, which no kept frame may use).
    """

    video: torch.Tensor | None = None
    audio: torch.Tensor | None = None
    video_seconds: float = 0.0
    audio_seconds: float = 0.0

    def check_covers(self, masks: FrameMasks, num_frames: int, fps: float,
                     time_stride: int = geometry.VIDEO_TIME_STRIDE, name: str = "reference") -> None:
        """A one-line UserError when a kept latent frame lies beyond what the reference holds."""
        spans = video_latent_spans(num_frames, time_stride)
        kept = [(last + 1) / fps for (_, last), m in zip(spans, masks.video.tolist()) if m < 1]
        if kept and (self.video is None or max(kept) > self.video_seconds + 1e-6):
            have = "no video" if self.video is None else f"{self.video_seconds:.2f} s of video"
            raise UserError(f"{name}: holds {have}, but the condition keeps video up to {max(kept):.2f} s")
        seconds = geometry.MEL_HOP * geometry.AUDIO_VAE_STRIDE / geometry.SAMPLE_RATE
        # audio latent frames past the clip encode the mel padding (as in training): they need no reference
        kept = [min((k + 1) * seconds, num_frames / fps) for k, m in enumerate(masks.audio.tolist()) if m < 1]
        if kept and (self.audio is None or max(kept) > self.audio_seconds + seconds / 2):
            have = "no audio" if self.audio is None else f"{self.audio_seconds:.2f} s of audio"
            raise UserError(f"{name}: holds {have}, but the condition keeps audio up to {max(kept):.2f} s")


def read_video(path: str, num_frames: int, fps: float, height: int, width: int) -> Reference:
    """The first ``num_frames / fps`` seconds of a video file at ``fps``, resized and cropped like the
    training data; its sound too when it has one. Shorter files are padded (last frame, silence) with a
    log line; the padding is recorded so that no kept frame can use it."""
    from javisdit.datasets.read import UnreadableClip, read_video_frames, video_info
    from javisdit.datasets.transforms import resize_crop

    try:
        info = video_info(path)
        if info.num_frames < 1 or info.fps <= 0:
            raise UserError(f"{path}: no video frames")
        available = max(1, min(num_frames, int(info.num_frames * fps / info.fps + 1e-6)))
        indices = [min(info.num_frames - 1, round(i * info.fps / fps)) for i in range(available)]
        frames = read_video_frames(path, indices)
    except UnreadableClip as err:
        raise UserError(str(err)) from None
    if available < num_frames:
        logger.info("%s: %d of %d frames; the last frame is repeated", path, available, num_frames)
        frames = torch.cat([frames, frames[-1:].expand(num_frames - available, -1, -1, -1)])
    ref = Reference(video=resize_crop(frames, height, width), video_seconds=available / fps)
    try:
        sound = read_audio_file(path, num_frames / fps)
        ref.audio, ref.audio_seconds = sound.audio, sound.audio_seconds
    except UserError:
        pass  # a silent video: a condition that keeps audio says so (check_covers)
    return ref


def read_image(path: str, num_frames: int, height: int, width: int) -> Reference:
    """An image as the clip's first frame (the other frames repeat it; only frame 0 can be kept)."""
    import numpy as np
    from PIL import Image, UnidentifiedImageError

    from javisdit.datasets.transforms import resize_crop

    try:
        with Image.open(path) as image:
            frame = torch.from_numpy(np.asarray(image.convert("RGB")).copy())
    except (OSError, UnidentifiedImageError) as err:
        raise UserError(f"{path}: not a readable image ({err})") from None
    video = resize_crop(frame[None], height, width).expand(-1, num_frames, -1, -1).contiguous()
    return Reference(video=video, video_seconds=1.0 / geometry.FPS)


def read_audio_file(path: str, seconds: float) -> Reference:
    """The first ``seconds`` of a sound (any file PyAV or soundfile reads), mono 16 kHz; shorter sounds are
    padded with silence and a log line."""
    from javisdit.datasets.read import UnreadableClip, read_audio
    from javisdit.models.vae.mel import to_mono_16k

    try:
        data, rate = read_audio(path)
    except UnreadableClip as err:
        raise UserError(str(err)) from None
    wave = to_mono_16k(data, rate, str(path)).reshape(-1)
    target = geometry.audio_samples(seconds)
    have = min(wave.shape[0], target)
    if have < target:
        logger.info("%s: %.2f s of sound for a %.2f s clip; padded with silence", path, have / geometry.SAMPLE_RATE,
                    seconds)
    wave = F.pad(wave[:target], (0, target - have))
    return Reference(audio=wave, audio_seconds=have / geometry.SAMPLE_RATE)


# ----- latents ------------------------------------------------------------------------------------------------


@contextmanager
def _posterior_mean(vae):
    """Encode with the posterior mean (a reference is encoded deterministically, whatever the config)."""
    previous = getattr(vae, "sample_posterior", False)
    vae.sample_posterior = False
    try:
        yield vae
    finally:
        vae.sample_posterior = previous


@torch.no_grad()
def encode_references(video_vae, audio_vae, references: Sequence[Reference], seconds: float,
                      device: torch.device | str, dtype: torch.dtype) -> dict[str, torch.Tensor | None]:
    """The references' latents, ``{"video": [B, 4, T', h, w] or None, "audio": [B, 8, Ta, 16] or None}``
    (fp32), a modality None when no reference holds it; samples without it get zeros (never kept)."""
    out: dict[str, torch.Tensor | None] = {"video": None, "audio": None}
    videos = [r.video for r in references]
    if video_vae is not None and any(v is not None for v in videos):
        like = next(v for v in videos if v is not None)
        batch = torch.stack([v if v is not None else torch.zeros_like(like) for v in videos]).to(device, dtype)
        with _posterior_mean(video_vae):
            out["video"] = video_vae.encode(batch).float()
    audios = [r.audio for r in references]
    if any(a is not None for a in audios):
        like = next(a for a in audios if a is not None)
        batch = torch.stack([a if a is not None else torch.zeros_like(like) for a in audios]).to(device)
        with _posterior_mean(audio_vae):
            out["audio"] = audio_vae.encode_waveform(batch.to(dtype), seconds).float()
    return out


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

def load_reference(clip: tuple[int, int, int], fps: float, video=None, audio=None, image=None) -> Reference:
    """One sample's reference from paths (or ``Reference`` objects, e.g. built from tensors): a video
    file's frames (and sound, unless ``audio`` is given), an image as frame 0, an audio file's sound."""
    T, H, W = clip
    ref = Reference()
    if video is not None and image is not None:
        raise UserError("give a reference video or an image, not both")
    if video is not None:
        ref = video if isinstance(video, Reference) else read_video(str(video), T, fps, H, W)
    elif image is not None:
        ref = image if isinstance(image, Reference) else read_image(str(image), T, H, W)
    if audio is not None:
        sound = audio if isinstance(audio, Reference) else read_audio_file(str(audio), T / fps)
        ref = Reference(ref.video, sound.audio, ref.video_seconds, sound.audio_seconds)
    return ref


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


# ----- extension --------------------------------------------------------------------------------------------------


def extension_overlap(num_frames: int, time_stride: int = geometry.VIDEO_TIME_STRIDE) -> tuple[int, int]:
    """(latent frames, pixel frames) a segment keeps from the end of the one before: the longest head
    stage 3 trained (``quarter_head``: up to a quarter of the latent frames), as whole latent frames."""
    spans = video_latent_spans(num_frames, time_stride)
    n = max(1, len(spans) // 4)
    if len(spans) < 2:
        raise UserError(f"extension needs at least 2 latent video frames; {num_frames} frames give {len(spans)}")
    return n, spans[n - 1][1] + 1


def extension_length(num_frames: int, loop: int, time_stride: int = geometry.VIDEO_TIME_STRIDE,
                     fps: float = geometry.FPS) -> tuple[int, int]:
    """(frames, audio samples) of ``loop`` segments of ``num_frames``: every segment after the first adds
    what follows its overlap with the one before."""
    _, overlap = extension_overlap(num_frames, time_stride)
    samples = geometry.audio_samples(num_frames / fps)
    skip = round(overlap / fps * geometry.SAMPLE_RATE)
    return num_frames + (loop - 1) * (num_frames - overlap), samples + (loop - 1) * (samples - skip)


def generate_extended(gen, texts: Sequence[str], clip: tuple[int, int, int], fps: int, dtype: torch.dtype,
                      generators: Sequence[torch.Generator], loop: int, first: Condition | None = None,
                      device=None, progress: bool = False, timings: dict | None = None):
    """``loop`` segments, each after the first conditioned on the last frames (``extension_overlap``) of
    the one before and the sound under them, joined into one clip: (video [B, 3, T_total, H, W], audio
    [B, S_total]). ``first`` conditions the first segment (e.g. a reference video); the generators
    carry on from segment to segment."""
    from javisdit.inference.pipeline import generate

    if gen.vae is None:
        raise UserError("extension (--loop) needs a video model; this config is audio-only")
    T = clip[0]
    stride = gen.vae.time_stride
    n, overlap = extension_overlap(T, stride)
    ta = gen.audio_vae.latent_size(T / fps)[1]
    samples = geometry.audio_samples(T / fps)
    skip = round(overlap / fps * geometry.SAMPLE_RATE)
    # video: the head latents, as quarter_head trained; audio: the overlap's own seconds (the nearest
    # mapping of training would also keep latent frames of the mel padding, which no segment holds)
    masks = FrameMasks(mode_masks("extend", len(video_latent_spans(T, stride)), ta, n).video,
                       keep_ranges(T, fps, ta, audio=[(0.0, overlap / fps)], time_stride=stride).audio)
    kwargs = dict(device=device, progress=progress, timings=timings)
    video, audio = generate(gen, list(texts), clip, fps, dtype, generators, condition=first, **kwargs)
    videos, audios = [video], [audio]
    device = video.device if device is None else device
    for _ in range(loop - 1):
        tail_video = video[:, :, -overlap:].clamp(-1, 1)
        tail_video = torch.cat([tail_video, tail_video[:, :, -1:].expand(-1, -1, T - overlap, -1, -1)], dim=2)
        tail_audio = F.pad(audio[:, samples - skip:samples], (0, samples - skip))
        refs = [Reference(tail_video[i], tail_audio[i].float(), overlap / fps, skip / geometry.SAMPLE_RATE)
                for i in range(len(texts))]
        condition = build_condition(gen, refs, masks, clip, fps, dtype, device,
                                    [f"segment tail {i}" for i in range(len(texts))])
        video, audio = generate(gen, list(texts), clip, fps, dtype, generators, condition=condition, **kwargs)
        videos.append(video[:, :, overlap:])
        audios.append(audio[:, skip:samples])
    return torch.cat(videos, dim=2), torch.cat(audios, dim=1)
