"""Reading clips: a window of video frames decoded with PyAV (seek, then decode only what the window
needs), and audio from a sound file or a video container, as mono 16 kHz float waveforms.
"""

from __future__ import annotations

import logging
import math
from dataclasses import dataclass
from fractions import Fraction
from pathlib import Path

import numpy as np
import torch

from javisdit.models import geometry
from javisdit.models.vae.mel import to_mono_16k

logger = logging.getLogger(__name__)

SOUND_FILES = (".wav", ".flac", ".ogg", ".aiff", ".aif")


class UnreadableClip(Exception):
    """A clip that cannot be used (missing, corrupt, too short); the loader skips it and counts it."""


@dataclass(frozen=True)
class VideoInfo:
    num_frames: int
    fps: float
    height: int
    width: int


def video_info(path: str | Path) -> VideoInfo:
    import av

    try:
        with av.open(str(path)) as container:
            stream = container.streams.video[0]
            fps = float(stream.average_rate or stream.guessed_rate or 0)
            frames = stream.frames
            if not frames and stream.duration is not None and fps:
                frames = int(round(float(stream.duration * stream.time_base) * fps))
            return VideoInfo(int(frames), fps, stream.codec_context.height, stream.codec_context.width)
    except (OSError, IndexError, ValueError) as err:  # av errors subclass OSError / ValueError
        raise UnreadableClip(f"{path}: cannot read video ({err})") from None


def temporal_window(total: int, num_frames: int, frame_interval: int, rng) -> tuple[int, int]:
    """A random window [begin, end) of ``num_frames·frame_interval`` frames (the original's rule:
    begin = randint(0, total - size - 1), so the last frame is never in a window that could move)."""
    size = num_frames * frame_interval
    begin = rng.randint(0, max(0, total - size - 1))
    end = min(begin + size, total)
    if end - begin < num_frames:
        raise UnreadableClip(f"too short: {total} frames, {num_frames} needed")
    return begin, end


def read_video_frames(path: str | Path, indices: np.ndarray) -> torch.Tensor:
    """Frames ``indices`` (sorted, 0-based) of a video -> uint8 [T, H, W, 3], decoding only from the
    keyframe before the first index up to the last index."""
    import av

    wanted = sorted(set(int(i) for i in indices))
    frames: dict[int, np.ndarray] = {}
    try:
        with av.open(str(path)) as container:
            stream = container.streams.video[0]
            stream.thread_type = "AUTO"
            rate = stream.average_rate or stream.guessed_rate
            base = stream.start_time or 0
            tb = stream.time_base
            first = wanted[0]
            if first > 0:
                target = base + int(Fraction(first) / Fraction(rate) / tb)
                container.seek(target, stream=stream, backward=True, any_frame=False)
            for frame in container.decode(stream):
                index = int(round(float((frame.pts - base) * tb * rate))) if frame.pts is not None else None
                if index is None or index < first:
                    continue
                if index in wanted:
                    frames[index] = frame.to_ndarray(format="rgb24")
                if index >= wanted[-1]:
                    break
    except (OSError, ValueError) as err:
        raise UnreadableClip(f"{path}: cannot decode video ({err})") from None
    missing = [i for i in wanted if i not in frames]
    if missing:
        raise UnreadableClip(f"{path}: frames {missing[:3]}... could not be decoded (the file is shorter than its header)")
    return torch.from_numpy(np.stack([frames[int(i)] for i in indices]))


def read_audio(path: str | Path) -> tuple[torch.Tensor, int]:
    """A waveform [C, S] float32 and its sample rate, from a sound file (soundfile) or any container
    PyAV reads (mp4, m4a, mp3, aac, ...)."""
    path = Path(path)
    if not path.is_file():
        raise UnreadableClip(f"{path}: no such file")
    try:
        if path.suffix.lower() in SOUND_FILES:
            import soundfile

            data, rate = soundfile.read(str(path), dtype="float32", always_2d=True)
            return torch.from_numpy(data.T.copy()), int(rate)
        import av

        with av.open(str(path)) as container:
            if not container.streams.audio:
                raise UnreadableClip(f"{path}: no audio stream")
            stream = container.streams.audio[0]
            chunks, rate = [], stream.rate
            for frame in container.decode(stream):
                array = frame.to_ndarray()
                if not frame.format.is_planar:  # interleaved [1, S·C] -> [C, S]
                    array = array.reshape(-1, len(frame.layout.channels)).T
                chunks.append(array.astype(np.float32))
            if not chunks:
                raise UnreadableClip(f"{path}: empty audio stream")
            data = np.concatenate(chunks, axis=1)
            if np.issubdtype(chunks[0].dtype, np.integer):
                data = data / float(np.iinfo(chunks[0].dtype).max)
            return torch.from_numpy(data), int(rate)
    except UnreadableClip:
        raise
    except Exception as err:
        raise UnreadableClip(f"{path}: cannot read audio ({err})") from None


def load_waveform(path: str | Path) -> torch.Tensor:
    """Mono 16 kHz waveform [S] of a file (mixed down / resampled with a log line when needed)."""
    data, rate = read_audio(path)
    return to_mono_16k(data, rate, str(path))


def align_to_video(wave: torch.Tensor, total_frames: int, fps: float) -> torch.Tensor:
    """Cut or zero-pad the waveform to the video's full length, ceil(total / fps · 16 kHz) samples."""
    target = math.ceil(total_frames / fps * geometry.SAMPLE_RATE)
    if wave.shape[-1] >= target:
        return wave[..., :target]
    return torch.nn.functional.pad(wave, (0, target - wave.shape[-1]))


def audio_window(wave: torch.Tensor, total_frames: int, begin: int, end: int, num_frames: int,
                 frame_interval: int) -> tuple[int, int]:
    """The sample range [start, stop) of a video window in a waveform aligned to the whole video."""
    per_frame = wave.shape[-1] / total_frames
    stop = int(round(end * per_frame))
    count = int(round(num_frames * per_frame))
    return max(0, stop - count * frame_interval), stop
