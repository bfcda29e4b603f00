"""Reading one evaluated sample: every video frame (PyAV, RGB) and its audio, from a sound file beside the
video or from the video's own audio track.

Upstream reads frames with OpenCV and audio with librosa/torchaudio per metric; here a sample is decoded
once and each metric takes what it needs from the decoded arrays. Audio is resampled with librosa (soxr,
what ``librosa.load(sr=...)`` does in librosa >= 0.10); the protocol block records it.
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import cached_property
from pathlib import Path

import numpy as np

from javisdit.datasets.read import UnreadableClip, read_audio
from javisdit.errors import UserError


class SampleError(UserError):
    """A sample that cannot be evaluated (missing, corrupt, silent, too short); the message is one line."""


@dataclass
class Sample:
    """One decoded sounding video.

    Attributes:
        frames: uint8 [N, H, W, 3] RGB, every frame at the native rate.
        fps: frames per second of the video stream.
        audio: float32 [C, S] in [-1, 1] at ``sample_rate``.
    """

    frames: np.ndarray
    fps: float
    audio: np.ndarray
    sample_rate: int
    video_path: str = ""
    audio_path: str = ""

    @property
    def num_frames(self) -> int:
        return int(self.frames.shape[0])

    @property
    def duration(self) -> float:
        """Video duration in seconds (frames / fps)."""
        return self.num_frames / self.fps

    @property
    def audio_duration(self) -> float:
        return self.audio.shape[1] / self.sample_rate

    @cached_property
    def _resampled(self) -> dict[tuple[str, int], np.ndarray]:
        """Resampled audio by (``"mono"`` or ``"channels"``, rate), each computed once."""
        return {}

    def mono(self, sample_rate: int) -> np.ndarray:
        """float32 [S]: channels averaged, resampled to ``sample_rate`` (librosa, soxr_hq)."""
        key = ("mono", sample_rate)
        if key not in self._resampled:
            self._resampled[key] = resample(self.audio.mean(axis=0), self.sample_rate, sample_rate)
        return self._resampled[key]

    def channels(self, sample_rate: int) -> np.ndarray:
        """float32 [C, S] resampled to ``sample_rate`` with every channel kept (ImageBind's loader)."""
        if self.sample_rate == sample_rate:
            return self.audio
        key = ("channels", sample_rate)
        if key not in self._resampled:
            self._resampled[key] = np.stack([resample(c, self.sample_rate, sample_rate) for c in self.audio])
        return self._resampled[key]


def resample(wave: np.ndarray, orig_sr: int, target_sr: int) -> np.ndarray:
    """``wave`` [S] at ``target_sr`` (unchanged when the rates agree)."""
    wave = np.ascontiguousarray(wave, dtype=np.float32)
    if orig_sr == target_sr:
        return wave
    import librosa

    return librosa.resample(wave, orig_sr=orig_sr, target_sr=target_sr, res_type="soxr_hq").astype(np.float32)


def read_frames(path: str | Path) -> tuple[np.ndarray, float]:
    """Every frame of a video as uint8 [N, H, W, 3] RGB, and its frame rate."""
    import av

    try:
        with av.open(str(path)) as container:
            if not container.streams.video:
                raise SampleError(f"{path}: no video stream")
            stream = container.streams.video[0]
            stream.thread_type = "AUTO"
            fps = float(stream.average_rate or stream.guessed_rate or 0)
            frames = [frame.to_ndarray(format="rgb24") for frame in container.decode(stream)]
    except SampleError:
        raise
    except Exception as err:  # PyAV raises OSError/ValueError subclasses for corrupt files
        raise SampleError(f"{path}: cannot decode the video ({type(err).__name__}: {err})") from None
    if not frames:
        raise SampleError(f"{path}: the video has no frames")
    if not fps > 0:
        raise SampleError(f"{path}: the video stream has no frame rate")
    return np.stack(frames), fps


def load_sample(video_path: str | Path, audio_path: str | Path | None = None) -> Sample:
    """Decode a sample: frames from ``video_path``; audio from ``audio_path`` when given, else from the
    video's own audio track.

    Raises:
        SampleError: a file is missing, cannot be decoded, or has no audio.
    """
    video_path = Path(video_path)
    if not video_path.is_file():
        raise SampleError(f"{video_path}: no such file")
    frames, fps = read_frames(video_path)
    source = Path(audio_path) if audio_path else video_path
    if not source.is_file():
        raise SampleError(f"{source}: no such file")
    try:
        audio, rate = read_audio(source)
    except UnreadableClip as err:
        raise SampleError(str(err)) from None
    audio = audio.numpy().astype(np.float32, copy=False)
    if audio.size == 0 or not np.isfinite(audio).all():
        raise SampleError(f"{source}: the audio is empty or not finite")
    return Sample(frames, fps, audio, rate, str(video_path), str(source))


def is_silent(wave: np.ndarray, threshold: float = 1e-4) -> bool:
    """True when the peak amplitude is below ``threshold`` (about -80 dBFS)."""
    return not wave.size or float(np.abs(wave).max()) < threshold
