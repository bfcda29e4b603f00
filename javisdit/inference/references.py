"""References of X-conditional generation: the video, image and sound a sample is conditioned on, read
with the project's readers, shaped to the clip like training data (``resize_crop``, 16 kHz mono, trimmed
or padded with a log line), checked against what a condition keeps, and encoded deterministically (the
VAEs' posterior mean) into the latents the sampler keeps.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from typing import TYPE_CHECKING

import torch
import torch.nn.functional as F

from javisdit.errors import UserError
from javisdit.models import geometry

if TYPE_CHECKING:
    from javisdit.inference.conditioning import FrameMasks

logger = logging.getLogger(__name__)


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
        spans = geometry.video_latent_spans(num_frames, time_stride)
        kept = [(last + 1) / fps for (_, last), m in zip(spans, masks.video.tolist()) if m < 1]
        if kept and (self.video is None or max(kept) > self.video_seconds + 1e-6):
            have = "no video" if self.video is None else f"{self.video_seconds:.2f} s of video"
            raise UserError(f"{name}: holds {have}, but the condition keeps video up to {max(kept):.2f} s")
        seconds = geometry.AUDIO_LATENT_SECONDS
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
