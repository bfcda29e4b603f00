"""A picture of one bouncing-ball clip's synchronisation, for a reader to check at a glance.

Three bands, one above the other, as wide as the first:

- a strip of frames taken evenly over the clip (each pixel repeated ``scale`` times);
- the ball's height over time (its detected centroid per frame, drawn in the ball's colour): each
  bounce is a minimum, marked by a tick where the picture's impact detector places it;
- the sound's envelope (peak amplitude per pixel column, grey), with white ticks at the detected
  audio onsets.

A clip in step has its white ticks under the ball's bounces. Only numpy is used; the caller writes
the array (``javisdit.inference.media.write_png``).
"""

from __future__ import annotations

from collections.abc import Sequence
from itertools import pairwise

import numpy as np

from javisdit.eval.sync import impact_times
from javisdit.eval.sync_detect import audio_onsets, ball_track

RGB = tuple[int, int, int]
GAP = 4  # pixels between frames of the strip and between bands
GREY, WHITE, BACKGROUND = (150, 150, 150), (255, 255, 255), (24, 24, 24)


def _column(t: float, duration: float, width: int) -> int:
    return int(np.clip(round(t / duration * (width - 1)), 0, width - 1))


def _frame_strip(frames: np.ndarray, count: int, scale: int) -> np.ndarray:
    T, H, W, _ = frames.shape
    picks = np.linspace(0, T - 1, count).round().astype(int)
    tiles = [frames[i].repeat(scale, 0).repeat(scale, 1) for i in picks]
    strip = np.full((H * scale, count * W * scale + (count - 1) * GAP, 3), BACKGROUND, np.uint8)
    for k, tile in enumerate(tiles):
        x = k * (W * scale + GAP)
        strip[:, x : x + tile.shape[1]] = tile
    return strip


def _height_band(frames: np.ndarray, fps: float, rgbs: Sequence[RGB], width: int, rows: int) -> np.ndarray:
    band = np.full((rows, width, 3), BACKGROUND, np.uint8)
    T, H = frames.shape[:2]
    duration = T / fps
    for rgb in rgbs:
        cy = ball_track(frames, rgb)[:, 0]
        known = ~np.isnan(cy)
        if known.sum() < 2:
            continue
        columns = np.arange(width)
        times = (columns + 0.5) / width * duration
        frame_times = np.arange(T)[known] / fps
        # the floor at the bottom of the band: a larger cy (lower in the frame) is drawn lower
        y = np.interp(times, frame_times, cy[known]) / (H - 1) * (rows - 1)
        y = np.clip(y.round().astype(int), 0, rows - 1)
        band[y, columns] = rgb
        band[np.clip(y + 1, 0, rows - 1), columns] = rgb
    for t in impact_times(frames, fps, list(rgbs)):
        band[rows - 6 :, _column(t, duration, width)] = WHITE
    return band


def _sound_band(wave: np.ndarray, sample_rate: int, duration: float, width: int, rows: int) -> np.ndarray:
    band = np.full((rows, width, 3), BACKGROUND, np.uint8)
    wave = np.asarray(wave, dtype=np.float32).reshape(-1)
    samples = min(len(wave), int(round(duration * sample_rate)))
    edges = np.linspace(0, samples, width + 1).astype(int)
    peak = np.array([np.abs(wave[a:b]).max() if b > a else 0.0 for a, b in pairwise(edges)])
    level = peak / max(float(peak.max()), 1e-6)
    middle = rows // 2
    for x, v in enumerate(level):
        half = int(round(v * (middle - 1)))
        band[middle - half : middle + half + 1, x] = GREY
    for t in audio_onsets(wave, sample_rate):
        band[:6, _column(t, duration, width)] = WHITE
        band[-6:, _column(t, duration, width)] = WHITE
    return band


def sync_figure(frames: np.ndarray, fps: float, wave: np.ndarray, sample_rate: int, rgbs: Sequence[RGB],
                num_frames: int = 8, scale: int = 2) -> np.ndarray:
    """uint8 [rows, width, 3]: the frame strip, the ball's height and the sound's envelope of one clip.

    Args:
        frames: uint8 [T, H, W, 3]; wave: mono [S] at ``sample_rate``.
        rgbs: the colours of the caption's balls (``bouncing.COLOURS`` values).
        num_frames: frames shown in the strip; scale: each frame pixel as ``scale`` x ``scale`` pixels.
    """
    if frames.ndim != 4 or frames.shape[-1] != 3 or len(frames) < 2:
        raise ValueError(f"sync_figure needs frames [T >= 2, H, W, 3], got {list(frames.shape)}")
    if num_frames < 1 or scale < 1:
        raise ValueError(f"num_frames and scale must be >= 1, got {num_frames} and {scale}")
    duration = len(frames) / fps
    strip = _frame_strip(frames, num_frames, scale)
    width = strip.shape[1]
    bands = [strip, _height_band(frames, fps, rgbs, width, 96), _sound_band(wave, sample_rate, duration, width, 96)]
    gap = np.full((GAP, width, 3), BACKGROUND, np.uint8)
    return np.concatenate([bands[0], gap, bands[1], gap, bands[2]])
