"""AV-Align's detectors on a synthetic clip: a square that jumps at known frames, clicks at known times."""

from __future__ import annotations

import numpy as np
import pytest

from javisdit.eval.av_align import audio_peaks, av_align, motion_magnitudes, to_grey, video_peaks
from javisdit.eval.metrics import av_align_score

FPS, SR, T = 24, 16000, 48
JUMPS = (12, 30)  # frames at which the square moves: 0.5 s and 1.25 s


def _frames() -> np.ndarray:
    frames = np.zeros((T, 64, 64, 3), np.uint8)
    x = 8
    for t in range(T):
        x += 20 if t in JUMPS else 0
        frames[t, 20:36, x : x + 12] = (255, 200, 40)
    return frames


def _clicks(delay_s: float = 0.0) -> np.ndarray:
    wave = np.zeros(int(SR * T / FPS), np.float32)
    burst = 0.8 * np.exp(-np.arange(1600) / 200.0) * np.sin(2 * np.pi * 1000 * np.arange(1600) / SR)
    for t in JUMPS:
        i = int((t / FPS + delay_s) * SR)
        wave[i : i + burst.size] += burst[: wave.size - i]
    return wave


def test_motion_peaks_are_the_jumps():
    grey = to_grey(_frames())
    magnitudes = motion_magnitudes(grey)
    assert len(magnitudes) == T and magnitudes[0] == magnitudes[1]
    assert [i for i, m in enumerate(magnitudes) if m > 0.5] == list(JUMPS)
    assert video_peaks(grey, FPS) == [t / FPS for t in JUMPS]


def test_onsets_are_the_clicks():
    peaks = audio_peaks(_clicks(), SR)
    clicks = [t / FPS for t in JUMPS]
    frame = 512 / SR  # librosa's onset frames (hop 512): 32 ms
    assert all(min(abs(p - c) for c in clicks) < 2 * frame for p in peaks)
    assert all(min(abs(p - c) for p in peaks) <= frame + 1e-9 for c in clicks)


def test_clip_score_and_a_late_soundtrack():
    frames = _frames()
    synced = av_align(frames, FPS, _clicks(), SR)
    expected = av_align_score(audio_peaks(_clicks(), SR), [t / FPS for t in JUMPS], FPS)
    assert synced == pytest.approx(expected) and synced > 0.3
    late = av_align(frames, FPS, _clicks(delay_s=0.25), SR)
    assert late == 0.0  # every click 6 frames after its jump
    assert av_align(frames, FPS, _clicks(delay_s=0.25), SR, symmetric=True, tolerance_frames=8) > 0.5


def test_bad_inputs():
    with pytest.raises(ValueError, match="need grey frames"):
        motion_magnitudes(np.zeros((1, 8, 8), np.uint8))
    with pytest.raises(ValueError, match="mono"):
        audio_peaks(np.zeros((2, 100)), SR)
