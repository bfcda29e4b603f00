"""The inputs of the CAVP score and the score itself (``EVAL.md`` §1.3 "CAVP score", ``EVAL_MODELS.md`` §4.2).

Per sample, upstream takes ``T_s = int(duration)`` seconds and

* video: re-encodes ``[0, T_s)`` through ffmpeg's ``fps=4`` filter into an mp4, reads it back with OpenCV,
  resizes each frame to 224 x 224 (PIL bilinear, aspect not kept) and scales to [0, 1] (no mean/std);
* audio: loads 16 kHz mono, zero-pads or crops to ``16000 * T_s`` samples and drops the last one, takes
  |STFT| (n_fft 1024, hop 250, periodic Hann, centred with zero padding), a Slaney mel basis (128 bands,
  125-7600 Hz) and ``(20 * log10(max(x, 1e-5)) - 20 + 100) / 100`` clipped to [0, 1]: [128, 64 * T_s];
* score: the mean over time steps of the cosine between the video and the audio feature of each step.

Corrected by construction: we do not re-encode. ``cavp_frame_indices`` reproduces which decoded source
frame ffmpeg's ``fps`` filter outputs at each 4-fps step, and those frames are taken as decoded (PyAV),
without upstream's lossy re-encode (the default mp4 encoder, 4:2:0 chroma) and read-back. Upstream also scores a
failing sample 0.0 silently (pitfall 6); here a failure raises, and the caller counts it.
"""

from __future__ import annotations

import math
from fractions import Fraction
from functools import lru_cache

import numpy as np
import torch
import torch.nn.functional as F
from PIL import Image

SAMPLE_RATE = 16000
N_FFT = 1024
HOP_LENGTH = 250
N_MELS = 128
FMIN, FMAX = 125.0, 7600.0
TARGET_FPS = 4.0
FRAME_SIZE = 224
COSINE_EPS = 1e-6


def cavp_seconds(duration_s: float) -> int:
    """Seconds a sample is scored over: ``int(duration)`` (upstream's ``truncate_second``)."""
    return int(duration_s)


def _rational(rate: float | Fraction) -> Fraction:
    # 29.97... as a float becomes 30000/1001 again, so that ties fall exactly where ffmpeg's do
    return Fraction(rate).limit_denominator(1_000_000)


def _round_near(x: Fraction) -> int:
    return math.floor(x + Fraction(1, 2))  # halves away from zero (x >= 0): AV_ROUND_NEAR_INF


def cavp_frame_indices(num_frames: int, fps: float | Fraction, seconds: int,
                       target_fps: float | Fraction = TARGET_FPS) -> list[int]:
    """The source frame behind each output frame of ffmpeg ``-t seconds -i in -filter:v fps=target_fps``.

    What ffmpeg's ``fps`` filter does (default ``round=near``, checked against libavfilter's filter through
    PyAV): each input frame i (time i / fps, those before ``seconds`` only, as ``-t`` trims) gets the output
    slot ``round(i / fps * target_fps)``, halves rounded away from zero; output frame k is the LAST input
    frame whose slot is <= k (later frames of a slot replace earlier ones; a slot without a frame repeats
    the previous one). So it is not the frame nearest to k / target_fps: at 24 -> 4 fps slot k holds frames
    6k-3 .. 6k+2 and output k is frame 6k+2. The stream ends at ``seconds`` (or at the end of the last
    frame, when that comes first); the outputs are the slots before the end, rounded the same way:
    ``target_fps * seconds`` of them for a clip at least ``seconds`` long.

    Raises:
        ValueError: ``seconds`` < 1, or a clip so much shorter than ``seconds`` that ffmpeg would output
            fewer than ``target_fps * seconds`` frames.
    """
    fps, target = _rational(fps), _rational(target_fps)
    if seconds < 1:
        raise ValueError(f"CAVP scores whole seconds; the clip is shorter than 1 s (seconds={seconds})")
    count = _round_near(target * seconds)
    end = min(Fraction(seconds), Fraction(num_frames) / fps)  # where the trimmed stream ends
    if _round_near(end * target) < count:  # ffmpeg would stop early and the audio would have more steps
        raise ValueError(f"{num_frames} frames at {float(fps):g} fps are shorter than the {seconds} s to score")
    slots = [_round_near(Fraction(i) / fps * target) for i in range(min(num_frames, math.ceil(seconds * fps)))]
    indices, i = [], 0
    for k in range(count):
        while i + 1 < len(slots) and slots[i + 1] <= k:
            i += 1
        indices.append(i)
    return indices


def resize_frames(frames: np.ndarray) -> torch.Tensor:
    """``Resize((224, 224))`` on PIL images (bilinear, antialiased, aspect not kept), then ``ToTensor``.

    Args:
        frames: uint8 [N, H, W, 3] RGB.

    Returns:
        float32 [N, 3, 224, 224] in [0, 1], not normalised.
    """
    resized = [np.asarray(Image.fromarray(np.ascontiguousarray(f)).resize((FRAME_SIZE, FRAME_SIZE), Image.BILINEAR))
               for f in frames]
    out = np.stack(resized) if resized else np.zeros((0, FRAME_SIZE, FRAME_SIZE, 3), np.uint8)
    return torch.from_numpy(out).permute(0, 3, 1, 2).float().div(255)


def cavp_frames(frames: np.ndarray, fps: float, seconds: int) -> torch.Tensor:
    """The video-encoder input of one clip.

    Args:
        frames: uint8 [N, H, W, 3] RGB, every decoded frame at the native rate ``fps``.
        seconds: ``cavp_seconds(duration)``.

    Returns:
        float32 [4 * seconds, 3, 224, 224] in [0, 1].
    """
    return resize_frames(frames[cavp_frame_indices(len(frames), fps, seconds)])


@lru_cache(maxsize=1)
def cavp_mel_basis() -> np.ndarray:
    """float32 [128, 513]: librosa's Slaney mel filterbank (norm 'slaney'), 125-7600 Hz, n_fft 1024 at 16 kHz."""
    import librosa

    basis = librosa.filters.mel(sr=SAMPLE_RATE, n_fft=N_FFT, n_mels=N_MELS, fmin=FMIN, fmax=FMAX)
    basis.setflags(write=False)
    return basis


def cavp_mel(wave: np.ndarray, seconds: int) -> torch.Tensor:
    """The spectrogram-encoder input of one clip (upstream ``get_spectrogram(path, 16000 * seconds)``).

    Args:
        wave: [S] mono at 16 kHz.
        seconds: ``cavp_seconds(duration)``.

    Returns:
        float32 [128, 64 * seconds] in [0, 1].
    """
    import librosa

    if seconds < 1:
        raise ValueError(f"CAVP scores whole seconds; the clip is shorter than 1 s (seconds={seconds})")
    wave = np.asarray(wave, dtype=np.float32).reshape(-1)
    length = SAMPLE_RATE * seconds
    if wave.shape[0] < length:  # upstream's pad buffer is float64: a short clip goes on in float64
        padded = np.zeros(length)
        padded[: wave.shape[0]] = wave
        wave = padded
    wave = wave[: length - 1]
    magnitude = np.abs(librosa.stft(wave, n_fft=N_FFT, hop_length=HOP_LENGTH, win_length=N_FFT, window="hann",
                                    center=True, pad_mode="constant"))
    mel = np.dot(cavp_mel_basis(), magnitude)
    mel = (20 * np.log10(np.maximum(mel, 1e-5)) - 20 + 100) / 100
    return torch.from_numpy(np.clip(mel, 0.0, 1.0)).float()


def cavp_score(video_feats: torch.Tensor | np.ndarray, spec_feats: torch.Tensor | np.ndarray) -> float:
    """Mean over time steps of cos(video_t, spec_t) (``CosineSimilarity(dim=1, eps=1e-6)``).

    Args:
        video_feats: [T, D] from ``CAVP.encode_video``; spec_feats: [T, D] from ``CAVP.encode_spec``.

    Raises:
        ValueError: the two sequences differ in length or width (upstream raises too).
    """
    video, spec = torch.as_tensor(video_feats).float(), torch.as_tensor(spec_feats).float()
    if video.dim() != 2 or spec.dim() != 2 or video.shape[1] != spec.shape[1]:
        raise ValueError(f"CAVP features must be [T, D] each, got {list(video.shape)} and {list(spec.shape)}")
    if video.shape[0] != spec.shape[0]:
        raise ValueError(f"CAVP video and audio features differ in length: {video.shape[0]} video steps vs "
                         f"{spec.shape[0]} audio steps")
    return float(F.cosine_similarity(video, spec.to(video.device), dim=1, eps=COSINE_EPS).mean())
