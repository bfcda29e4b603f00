"""AV-Align's peak detectors, as the upstream evaluator runs them (EVAL.md §1.3): audio onsets from
librosa (``onset_strength`` then ``onset_detect``, at the audio's own sample rate) and video motion peaks
from OpenCV's Farnebäck optical flow between consecutive grey frames (pyramid scale 0.5, 3 levels,
window 15, 3 iterations, poly_n 5, poly_sigma 1.2), one mean flow magnitude per frame (the first value
repeated), strict local maxima at ``i / fps``. ``av_align`` scores a clip with ``metrics.av_align_score``.
"""

from __future__ import annotations

import numpy as np

from javisdit.eval.metrics import av_align_score, local_maxima

FARNEBACK = (0.5, 3, 15, 3, 5, 1.2, 0)  # pyr_scale, levels, winsize, iterations, poly_n, poly_sigma, flags


def audio_peaks(wave: np.ndarray, sample_rate: int) -> list[float]:
    """Onset times in seconds of a mono waveform."""
    import librosa

    wave = np.asarray(wave, dtype=np.float32)
    if wave.ndim != 1:
        raise ValueError(f"the waveform must be mono [S], got shape {list(wave.shape)}")
    envelope = librosa.onset.onset_strength(y=wave, sr=sample_rate)
    frames = librosa.onset.onset_detect(onset_envelope=envelope, sr=sample_rate)
    return [float(t) for t in librosa.frames_to_time(frames, sr=sample_rate)]


def motion_magnitudes(frames: np.ndarray) -> list[float]:
    """Mean Farnebäck flow magnitude per frame of grey frames ``[T, H, W]`` uint8 (frame 0 repeats frame 1's)."""
    import cv2

    frames = np.asarray(frames)
    if frames.ndim != 3 or frames.shape[0] < 2:
        raise ValueError(f"need grey frames [T >= 2, H, W], got shape {list(frames.shape)}")
    frames = frames.astype(np.uint8, copy=False)
    values = []
    for previous, current in zip(frames[:-1], frames[1:]):
        flow = cv2.calcOpticalFlowFarneback(previous, current, None, *FARNEBACK)
        magnitude, _ = cv2.cartToPolar(flow[..., 0], flow[..., 1])
        values.append(float(magnitude.mean()))
    return [values[0], *values]


def video_peaks(frames: np.ndarray, fps: float) -> list[float]:
    """Times in seconds of the motion peaks of grey frames ``[T, H, W]``."""
    return [i / fps for i in local_maxima(motion_magnitudes(frames))]


def to_grey(frames_rgb: np.ndarray) -> np.ndarray:
    """RGB frames ``[T, H, W, 3]`` uint8 -> grey ``[T, H, W]`` (OpenCV's luma weights, as upstream)."""
    import cv2

    return np.stack([cv2.cvtColor(np.ascontiguousarray(f), cv2.COLOR_RGB2GRAY) for f in frames_rgb])


def av_align(frames_rgb: np.ndarray, fps: float, wave: np.ndarray, sample_rate: int, symmetric: bool = False,
             tolerance_frames: float = 3.0) -> float:
    """AV-Align of one clip: RGB frames ``[T, H, W, 3]`` uint8 at ``fps`` and its mono audio."""
    return av_align_score(audio_peaks(wave, sample_rate), video_peaks(to_grey(frames_rgb), fps), fps,
                          symmetric=symmetric, tolerance_frames=tolerance_frames)
