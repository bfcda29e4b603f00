"""Synthetic sounding videos: clips whose sound is tied to what moves, for tests, CPU demos and
synchronisation checks.

Each clip shows a coloured ball bouncing along the floor of a grey frame; every time it touches the
floor a click sounds (a 25 ms decaying 1.5 kHz burst), over a quiet hum whose pitch encodes the ball's
colour. Written as an mp4 (H.264 + AAC) and a 16 kHz wav, with CSV files for each training stage.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd

from javisdit.inference.media import write_mp4, write_wav
from javisdit.models import geometry

COLOURS = {"red": (220, 40, 40), "green": (40, 200, 60), "blue": (50, 80, 230), "yellow": (230, 210, 40)}
HUM = {"red": 220.0, "green": 262.0, "blue": 330.0, "yellow": 392.0}


@dataclass(frozen=True)
class Clip:
    video: Path
    audio: Path
    text: str
    num_frames: int
    height: int
    width: int
    fps: int
    bounce_frames: tuple[int, ...]  # frames at which the ball touches the floor (and a click starts)


def render_clip(seconds: float, fps: int, height: int, width: int, colour: str, period_s: float,
                radius: int, phase: float = 0.0) -> tuple[np.ndarray, np.ndarray, list[int]]:
    """Frames uint8 [T, H, W, 3], a 16 kHz waveform [S] and the bounce frames of one clip."""
    T = int(round(seconds * fps))
    ys, xs = np.mgrid[0:height, 0:width]
    floor = height - radius - 1
    amplitude = max(1.0, height * 0.6)
    frames = np.full((T, height, width, 3), 110, dtype=np.uint8)
    bounces = []
    for i in range(T):
        t = i / fps + phase
        cx = (radius + (t / seconds) * (width - 2 * radius)) % width
        cy = floor - amplitude * abs(math.sin(math.pi * t / period_s))
        frames[i][(xs - cx) ** 2 + (ys - cy) ** 2 <= radius**2] = COLOURS[colour]
        k = t / period_s
        if abs(k - round(k)) * period_s * fps < 0.5:  # this frame is the contact frame
            bounces.append(i)
    n = geometry.audio_samples(T / fps)
    time = np.arange(n) / geometry.SAMPLE_RATE
    wave = 0.05 * np.sin(2 * math.pi * HUM[colour] * time)
    click_len = int(0.025 * geometry.SAMPLE_RATE)
    burst = np.sin(2 * math.pi * 1500 * np.arange(click_len) / geometry.SAMPLE_RATE) * np.exp(-np.arange(click_len) / 60)
    for i in bounces:
        start = int(i / fps * geometry.SAMPLE_RATE)
        stop = min(n, start + click_len)
        wave[start:stop] += 0.8 * burst[: stop - start]
    return frames, wave.astype(np.float32), bounces


def make_synthetic_dataset(out_dir: str | Path, num_clips: int = 4, seconds: float = 2.0, fps: int = 24,
                           height: int = 144, width: int = 256, seed: int = 0) -> dict[str, Path]:
    """Write ``num_clips`` clips and the stage CSVs (``stage1_audio.csv``, ``stage2_prior.csv``,
    ``stage3_jav.csv``) under ``out_dir``; returns the CSV paths by stage name (and ``clips``: the
    clip list as a CSV with bounce frames)."""
    out = Path(out_dir)
    (out / "videos").mkdir(parents=True, exist_ok=True)
    (out / "audios").mkdir(exist_ok=True)
    rng = np.random.default_rng(seed)
    clips = []
    for i in range(num_clips):
        colour = list(COLOURS)[i % len(COLOURS)]
        period = float(rng.uniform(0.4, 0.9))
        radius = int(max(2, min(height, width) * rng.uniform(0.06, 0.12)))
        frames, wave, bounces = render_clip(seconds, fps, height, width, colour, period, radius,
                                            phase=float(rng.uniform(0, period)))
        name = f"clip_{i:04d}"
        video, audio = out / "videos" / f"{name}.mp4", out / "audios" / f"{name}.wav"
        write_mp4(video, frames, fps, wave, geometry.SAMPLE_RATE, deterministic=True)
        write_wav(audio, wave, geometry.SAMPLE_RATE)
        text = f"a {colour} ball bounces across the floor, clicking each time it lands"
        clips.append(Clip(video, audio, text, len(frames), height, width, fps, tuple(bounces)))
    common = pd.DataFrame(dict(
        path=[str(c.video.relative_to(out)) for c in clips], id=[c.video.stem for c in clips],
        relpath=[c.video.name for c in clips], num_frames=[c.num_frames for c in clips],
        height=[c.height for c in clips], width=[c.width for c in clips],
        aspect_ratio=[c.height / c.width for c in clips], fps=[c.fps for c in clips],
        resolution=[c.height * c.width for c in clips], audio_path=[str(c.audio.relative_to(out)) for c in clips],
        audio_fps=geometry.SAMPLE_RATE, text=[c.text for c in clips],
    ))
    paths = {"stage3_jav": out / "stage3_jav.csv", "stage2_prior": out / "stage2_prior.csv",
             "stage1_audio": out / "stage1_audio.csv", "clips": out / "clips.csv"}
    common.to_csv(paths["stage3_jav"], index=False)
    prior = common.copy()
    prior["unpaired_audio_path"] = list(np.roll(common["audio_path"].to_numpy(), 1))  # another clip's sound
    prior.to_csv(paths["stage2_prior"], index=False)
    audio = common.copy()
    audio["audio_text"] = [f"clicks of a bouncing ball over a {HUM[c.text.split()[1]]:.0f} Hz hum" for c in clips]
    audio["path"] = audio["relpath"] = "placeholder.mp4"
    audio["id"], audio["text"] = "placeholder", "placeholder"
    audio["height"], audio["width"], audio["aspect_ratio"], audio["resolution"] = 720, 1280, 0.5625, 921600
    audio.to_csv(paths["stage1_audio"], index=False)
    pd.DataFrame(dict(path=common["path"], bounce_frames=[" ".join(map(str, c.bounce_frames)) for c in clips])
                 ).to_csv(paths["clips"], index=False)
    return paths
