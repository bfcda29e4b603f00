"""Bouncing-ball sounding videos with exact ground truth: the training and benchmark data of
JavisDiT-mini (issue 14; the schema is in ``data/mini.md``).

One or two balls fall under constant gravity, bounce on a floor line (restitution ``e``: each arc
``e`` times shorter than the one before) and drift sideways, folding back at the frame's edges. Every
impact is a short decaying tone whose pitch and decay come from the ball's material. Impact times are
closed-form (continuous seconds), the frame at time ``t`` shows each ball at its true position at ``t``
(antialiased disc) and each tone starts at the first audio sample at or after its impact. Captions state
what a model must follow: colour, material (the sound), count, size, speed and background.

Units: heights, radii and gravity in frame heights (``H``); horizontal position as a fraction of the
ball's travel across the frame; times in seconds. Clip ``i`` of a set draws everything from
``np.random.default_rng([seed, i])``, so a set is the same for any number of workers.
"""

from __future__ import annotations

import logging
import math
import multiprocessing
import time
from pathlib import Path

import numpy as np
import pandas as pd

from javisdit.errors import ConfigError
from javisdit.inference.media import write_mp4, write_wav
from javisdit.models import geometry

logger = logging.getLogger(__name__)

COLOURS = {"red": (220, 40, 40), "green": (40, 190, 70), "blue": (50, 100, 235), "yellow": (235, 210, 40),
           "white": (240, 240, 240)}
BACKGROUNDS = {"black": (12, 12, 12), "dark grey": (70, 70, 70), "navy": (22, 28, 72), "brown": (86, 56, 34)}
MATERIALS = {"rubber": (200.0, 0.05), "metal": (1200.0, 0.35), "glass": (2500.0, 0.08)}  # (pitch Hz, decay s)
SOUNDS = {"rubber": "the low thud", "metal": "the ringing clang", "glass": "the high ping"}
SIZES = {"small": 0.10, "large": 0.16}  # ball radius in frame heights (+-10 % per clip)
SPEEDS = {"slow": (0.7, 0.9), "fast": (0.36, 0.48)}  # duration of a full bounce arc, 2 sqrt(2h/g), in s
ADVERBS = {"slow": "slowly", "fast": "quickly"}
RESTITUTION = (0.85, 1.0)
FLOOR = 0.875  # the floor line, in frame heights from the top; the strip below it is the floor
ONE_BALL_PROBABILITY = 0.6
# A clip with any of these (colour, material) balls is held out: it is written to heldout.csv, never to a
# training CSV. Every tenth clip (index 9, 19, ...) is drawn from the held-out combinations.
HELDOUT_PAIRS = frozenset({("red", "glass"), ("green", "metal"), ("blue", "rubber")})
HELDOUT_EVERY = 10
MIN_GAP_S = 0.125  # impacts of a clip (all balls) are at least this far apart (3 frames at 24 fps)
AMPLITUDE = 0.45  # of one impact tone; two overlapping rings stay within [-1, 1]
BURST_DECAYS = 7.0  # a tone is cut after 7 decay times (e^-7: -60 dB)
MOTION_TRIES = 100  # draws of the motion before restitution 1 is used (which always keeps MIN_GAP_S)
TEMPLATES = {  # by ball count; c1/m1: colour and material of the first ball
    1: ("a {size} {c1} {m1} ball bounces {adverb} against a {background} background",
        "against a {background} background, a {size} {c1} ball made of {m1} bounces {adverb}"),
    2: ("two {size} balls, a {c1} {m1} one and a {c2} {m2} one, bounce {adverb} against a {background} background",
        "against a {background} background, a {size} {c1} {m1} ball and a {size} {c2} {m2} ball bounce {adverb}"),
}
TRAINING_CSVS = ("stage1_audio", "stage2_prior", "stage3_jav", "video_text", "vae")


# --- physics ------------------------------------------------------------------------------------------

def _bounces(drop_height: float, gravity: float, restitution: float, release_time: float,
             until: float) -> tuple[np.ndarray, np.ndarray]:
    """Impact times from the release up to ``until`` and the upward speed just after each impact."""
    if drop_height <= 0 or gravity <= 0 or not 0 < restitution <= 1:
        raise ValueError(f"need drop_height > 0, gravity > 0, 0 < restitution <= 1; got {drop_height}, {gravity}, "
                         f"{restitution}")
    fall = math.sqrt(2 * drop_height / gravity)
    t, speed, times, speeds = release_time + fall, gravity * fall, [], []
    while t < until:
        speed *= restitution
        times.append(t)
        speeds.append(speed)
        arc = 2 * speed / gravity
        if arc < 1e-6:  # restitution < 1: the bounces have converged, the ball rests on the floor
            break
        t += arc
    return np.array(times), np.array(speeds)


def impact_times(drop_height: float, gravity: float, restitution: float = 1.0, seconds: float = 2.0,
                 release_time: float = 0.0) -> np.ndarray:
    """When a ball released at rest ``drop_height`` above the floor at ``release_time`` hits the floor.

    The first impact is at ``release_time + sqrt(2 h / g)``; the arc after impact ``k`` (1-based) lasts
    ``2 e^k sqrt(2 h / g)``.

    Returns:
        float64 [N]: the impact times in [0, seconds), ascending.
    """
    times, _ = _bounces(drop_height, gravity, restitution, release_time, seconds)
    return times[times >= 0]


def ball_height(times: np.ndarray, drop_height: float, gravity: float, restitution: float = 1.0,
                release_time: float = 0.0) -> np.ndarray:
    """Height of the ball's lowest point above the floor at each time (same units as ``drop_height``)."""
    times = np.asarray(times, dtype=np.float64)
    impacts, speeds = _bounces(drop_height, gravity, restitution, release_time, float(times.max(initial=0)) + 1e-9)
    falling = np.clip(times - release_time, 0, None)
    height = drop_height - gravity / 2 * falling**2
    if len(impacts):
        k = np.searchsorted(impacts, times, side="right") - 1  # the last impact at or before each time
        s = times - impacts[k.clip(0)]
        height = np.where(k >= 0, speeds[k.clip(0)] * s - gravity / 2 * s**2, height)
    return np.maximum(height, 0.0)


def ball_impacts(attributes: dict, seconds: float) -> list[np.ndarray]:
    """The impact times of each ball of a clip."""
    return [impact_times(b["drop_height"], b["gravity"], b["restitution"], seconds, b["release_time"])
            for b in attributes["balls"]]


def ball_positions(ball: dict, times: np.ndarray, height: int, width: int) -> tuple[np.ndarray, np.ndarray]:
    """Pixel centre (x, y) of a ball at each time; pixel (i, j) covers [j, j+1) x [i, i+1)."""
    radius = ball["radius"] * height
    travel = width - 2 * radius
    x = (ball["x0"] + ball["vx"] * np.asarray(times)) % 2.0  # fold back at the frame's edges
    x = radius + travel * np.where(x <= 1, x, 2 - x)
    z = ball_height(times, ball["drop_height"], ball["gravity"], ball["restitution"], ball["release_time"])
    y = floor_row(height) - radius - z * height
    return x, y


def floor_row(height: int) -> int:
    """The first pixel row of the floor strip; a ball on the floor covers the rows above it."""
    return round(FLOOR * height)


# --- rendering ----------------------------------------------------------------------------------------

def num_frames(seconds: float, fps: int) -> int:
    return int(round(seconds * fps))


def render_frames(attributes: dict, seconds: float = 2.0, fps: int = 24, height: int = 64,
                  width: int = 64) -> np.ndarray:
    """The clip's frames, frame ``k`` showing time ``k / fps``.

    Returns:
        uint8 [T, H, W, 3], T = round(seconds * fps).
    """
    times = np.arange(num_frames(seconds, fps)) / fps
    background = np.array(BACKGROUNDS[attributes["background"]], dtype=np.float32)
    frames = np.empty((len(times), height, width, 3), dtype=np.float32)
    frames[:] = background
    frames[:, floor_row(height):] = 0.6 * background + 0.4 * 150.0  # the floor: the backdrop, lighter
    rows = np.arange(height, dtype=np.float32)[None, :, None] + 0.5
    cols = np.arange(width, dtype=np.float32)[None, None, :] + 0.5
    for ball, colour in zip(attributes["balls"], attributes["colours"]):
        x, y = ball_positions(ball, times, height, width)
        distance = np.sqrt((cols - x[:, None, None].astype(np.float32)) ** 2
                           + (rows - y[:, None, None].astype(np.float32)) ** 2)
        cover = np.clip(ball["radius"] * height + 0.5 - distance, 0, 1)[..., None]  # [T, H, W, 1]
        frames += cover * (np.array(COLOURS[colour], dtype=np.float32) - frames)
    return np.round(frames).astype(np.uint8)


def render_audio(impacts: list[np.ndarray], materials: list[str], seconds: float,
                 sample_rate: int = 16000) -> np.ndarray:
    """The impact sounds of a clip: for each ball's impacts a decaying tone of its material,
    ``AMPLITUDE exp(-dt / decay) cos(2 pi pitch dt)`` with ``dt`` the time since the impact, from the
    first sample at or after the impact. Silence between the tones: no noise floor (one made the
    mp4's AAC encoding, the cost of a clip, 40 % slower).

    Returns:
        float32 [S] in [-1, 1], S = round(seconds * sample_rate).
    """
    n = int(round(seconds * sample_rate))
    wave = np.zeros(n, dtype=np.float64)
    for times, material in zip(impacts, materials):
        pitch, decay = MATERIALS[material]
        length = int(BURST_DECAYS * decay * sample_rate)
        for t in times:
            start = math.ceil(t * sample_rate - 1e-7)  # the tolerance absorbs float error of exact samples
            if start >= n:
                continue
            dt = np.arange(start, min(n, start + length)) / sample_rate - t
            wave[start : start + len(dt)] += AMPLITUDE * np.exp(-dt / decay) * np.cos(2 * np.pi * pitch * dt)
    return np.clip(wave, -1, 1).astype(np.float32)


# --- attributes and captions --------------------------------------------------------------------------

def is_heldout(colours: list[str], materials: list[str]) -> bool:
    return any((c, m) in HELDOUT_PAIRS for c, m in zip(colours, materials))


def _choose(rng: np.random.Generator, table: dict) -> str:
    return list(table)[int(rng.integers(len(table)))]


def sample_motion(rng: np.random.Generator, count: int, size: str, speed: str, seconds: float = 2.0) -> list[dict]:
    """The physics of ``count`` balls of a size and speed class whose impacts are ``MIN_GAP_S`` apart.

    Two balls share the bounce period and restitution, the second released 0.35-0.65 period after the
    first, and their impacts alternate; drop height and sideways motion are each ball's own. A draw that
    breaks either rule is redrawn (restitution 1, the last resort, keeps both).
    """
    for attempt in range(MOTION_TRIES):
        period = rng.uniform(*SPEEDS[speed])
        fall = period / 2
        restitution = rng.uniform(*RESTITUTION) if attempt < MOTION_TRIES - 1 else 1.0
        release = -rng.uniform(0, period)  # the clip starts anywhere in the first drop or the first bounce
        offset = rng.uniform(0.35, 0.65) * period
        radius = SIZES[size] * rng.uniform(0.9, 1.1)
        balls = []
        for b in range(count):
            drop = rng.uniform(0.45, 0.95) * (FLOOR - 2 * radius)  # the top of the ball stays in the frame
            balls.append(dict(radius=radius, drop_height=drop, gravity=2 * drop / fall**2, restitution=restitution,
                              release_time=release - b * offset, x0=rng.uniform(0, 1),
                              vx=rng.uniform(0.15, 0.5) * rng.choice([-1.0, 1.0])))
        if _well_spaced(ball_impacts(dict(balls=balls), seconds)):
            return balls
    raise AssertionError("restitution 1 keeps the impacts apart")  # unreachable: the last try always fits


def _well_spaced(impacts: list[np.ndarray]) -> bool:
    """Impacts at least MIN_GAP_S apart and, with two balls, alternating between them."""
    merged = np.concatenate(impacts)
    order = np.argsort(merged)
    ball = np.repeat(np.arange(len(impacts)), [len(t) for t in impacts])[order]
    return bool(np.all(np.diff(merged[order]) >= MIN_GAP_S) and (len(impacts) == 1 or np.all(ball[1:] != ball[:-1])))


def sample_attributes(rng: np.random.Generator, seconds: float = 2.0, heldout: bool | None = None) -> dict:
    """A random clip description: ``count``, per-ball ``colours`` and ``materials``, ``size``, ``speed``,
    ``background``, caption ``template`` and per-ball physics ``balls`` (see ``sample_motion``).

    Args:
        heldout: True/False draw only clips with/without a held-out (colour, material) ball; None: any.
    """
    while True:
        count = 1 if rng.random() < ONE_BALL_PROBABILITY else 2
        colours = [list(COLOURS)[i] for i in rng.choice(len(COLOURS), size=count, replace=False)]
        materials = [_choose(rng, MATERIALS) for _ in range(count)]
        if heldout is None or is_heldout(colours, materials) == heldout:
            break
    size, speed, background = _choose(rng, SIZES), _choose(rng, SPEEDS), _choose(rng, BACKGROUNDS)
    template = int(rng.integers(len(TEMPLATES[count])))
    return dict(count=count, colours=colours, materials=materials, size=size, speed=speed, background=background,
                template=template, balls=sample_motion(rng, count, size, speed, seconds))


def caption(attributes: dict) -> tuple[str, str]:
    """(text, audio_text): the clip's caption and one of its sound alone. Neither counts the impacts (a
    training window may cut the clip)."""
    colours, materials, adverb = attributes["colours"], attributes["materials"], ADVERBS[attributes["speed"]]
    names = dict(size=attributes["size"], adverb=adverb, background=attributes["background"])
    for k, (colour, material) in enumerate(zip(colours, materials), start=1):
        names.update({f"c{k}": colour, f"m{k}": material})
    text = TEMPLATES[attributes["count"]][attributes["template"]].format(**names)
    if attributes["count"] == 1:
        audio = f"{SOUNDS[materials[0]]} of a {materials[0]} ball"
    elif materials[0] == materials[1]:
        audio = f"{SOUNDS[materials[0]]} of two {materials[0]} balls"
    else:
        audio = " and ".join(f"{SOUNDS[m]} of a {m} ball" for m in materials)
    return text, f"{audio} bouncing {adverb} on a hard floor"


# --- the data set -------------------------------------------------------------------------------------

def format_impacts(impacts: list[np.ndarray]) -> tuple[str, str]:
    """(``impacts``, ``impacts_by_ball``) CSV cells: all times sorted, space-separated, in seconds with 6
    decimals; by ball, the balls' lists joined by ``;`` in the order of ``colours``."""
    def cell(times: np.ndarray) -> str:
        return " ".join(f"{t:.6f}" for t in times)

    return cell(np.sort(np.concatenate(impacts))), ";".join(cell(t) for t in impacts)


def parse_impacts(cell: str) -> list[np.ndarray]:
    """An ``impacts_by_ball`` cell back to one array of times per ball (``impacts``: take element 0)."""
    return [np.array(part.split(), dtype=np.float64) for part in str(cell).split(";")]


def _make_clip(job: tuple) -> dict:
    index, out, seconds, fps, height, width, seed, heldout = job  # heldout None: every tenth clip
    rng = np.random.default_rng([seed, index])
    if heldout is None:
        heldout = index % HELDOUT_EVERY == HELDOUT_EVERY - 1
    T = num_frames(seconds, fps)
    duration = T / fps
    attributes = sample_attributes(rng, duration, heldout=heldout)
    impacts = ball_impacts(attributes, duration)
    wave = render_audio(impacts, attributes["materials"], duration, geometry.SAMPLE_RATE)
    # the stage-2 negative: the same caption's sound, timed by another draw of the motion
    other = sample_motion(rng, attributes["count"], attributes["size"], attributes["speed"], duration)
    unpaired = render_audio(ball_impacts(dict(balls=other), duration), attributes["materials"], duration,
                            geometry.SAMPLE_RATE)
    name = f"clip_{index:05d}"
    video, audio, negative = f"videos/{name}.mp4", f"audios/{name}.wav", f"audios/{name}_unpaired.wav"
    write_mp4(out / video, render_frames(attributes, duration, fps, height, width), fps, wave, geometry.SAMPLE_RATE,
              deterministic=True)
    write_wav(out / audio, wave, geometry.SAMPLE_RATE)
    write_wav(out / negative, unpaired, geometry.SAMPLE_RATE)
    text, audio_text = caption(attributes)
    all_impacts, by_ball = format_impacts(impacts)
    return dict(path=video, id=name, relpath=f"{name}.mp4", num_frames=T, height=height, width=width,
                aspect_ratio=height / width, fps=fps, resolution=height * width, audio_path=audio,
                audio_fps=geometry.SAMPLE_RATE, text=text, audio_text=audio_text, impacts=all_impacts,
                impacts_by_ball=by_ball, colours=" ".join(attributes["colours"]),
                materials=" ".join(attributes["materials"]), count=attributes["count"], size=attributes["size"],
                speed=attributes["speed"], background=attributes["background"], seed=seed,
                unpaired_audio_path=negative, heldout=heldout)


def _make_clips(jobs: list[tuple], workers: int) -> list[dict]:
    """``_make_clip`` of every job, in order, on ``workers`` processes."""
    if workers == 1:
        return [_make_clip(job) for job in jobs]
    # fork where there is one (workers run numpy and PyAV only); spawn re-imports torch per worker
    method = "fork" if "fork" in multiprocessing.get_all_start_methods() else "spawn"
    with multiprocessing.get_context(method).Pool(workers) as pool:
        return list(pool.imap(_make_clip, jobs, chunksize=8))


def make_unseen_clips(out_dir: str | Path, first_index: int, num_clips: int, seconds: float = 2.0, fps: int = 24,
                      height: int = 64, width: int = 64, seed: int = 0, workers: int = 1) -> Path:
    """Write ``num_clips`` clips numbered from ``first_index`` whose balls are all of (colour, material) pairs
    that training sees, and ``unseen.csv`` listing them (the columns of ``heldout.csv``). Numbered from the
    data set's ``num_clips`` on, they are never trained on: the in-distribution test set beside the novel
    pairs of ``heldout.csv``. Returns the CSV's path."""
    if num_clips < 1:
        raise ConfigError(f"--unseen must be at least 1, got {num_clips}")
    if first_index < 0:
        raise ConfigError(f"the first unseen clip index must be >= 0, got {first_index}")
    check_settings(num_clips, seconds, fps, height, width, workers)
    out = Path(out_dir)
    (out / "videos").mkdir(parents=True, exist_ok=True)
    (out / "audios").mkdir(exist_ok=True)
    jobs = [(i, out, seconds, fps, height, width, seed, False) for i in range(first_index, first_index + num_clips)]
    table = pd.DataFrame(_make_clips(jobs, workers)).drop(columns=["heldout", "unpaired_audio_path"])
    path = out / "unseen.csv"
    table.to_csv(path, index=False)
    logger.info("%d unseen clips of seen (colour, material) pairs in %s", len(table), path)
    return path


def check_settings(num_clips: int, seconds: float, fps: int, height: int, width: int, workers: int) -> None:
    """One ConfigError line for a setting the data cannot have."""
    if num_clips < 1:
        raise ConfigError(f"--num-clips must be at least 1, got {num_clips}")
    if fps < 1 or seconds <= 0 or num_frames(seconds, fps) < 1:
        raise ConfigError(f"--seconds {seconds} at --fps {fps} gives no frame; both must be positive")
    if height % 8 or width % 8 or min(height, width) < 32:
        raise ConfigError(f"--size {height} {width}: height and width must be multiples of 8 (the video VAE's "
                          f"stride) and at least 32")
    if workers < 1:
        raise ConfigError(f"--workers must be at least 1, got {workers}")


def make_mini_dataset(out_dir: str | Path, num_clips: int = 3000, seconds: float = 2.0, fps: int = 24,
                      height: int = 64, width: int = 64, seed: int = 0, workers: int = 1) -> dict[str, Path]:
    """Write ``num_clips`` clips (``videos/*.mp4`` with AAC, ``audios/*.wav``, ``audios/*_unpaired.wav``)
    and the CSVs under ``out_dir``; returns their paths by name: ``stage1_audio``, ``stage2_prior``,
    ``stage3_jav``, ``video_text``, ``vae`` (the training clips) and ``heldout``. Clips last
    round(seconds * fps) / fps s. The same arguments give byte-identical files, whatever ``workers``."""
    check_settings(num_clips, seconds, fps, height, width, workers)
    out = Path(out_dir)
    (out / "videos").mkdir(parents=True, exist_ok=True)
    (out / "audios").mkdir(exist_ok=True)
    jobs = [(i, out, seconds, fps, height, width, seed, None) for i in range(num_clips)]
    start = time.perf_counter()
    rows = _make_clips(jobs, workers)
    elapsed = time.perf_counter() - start
    logger.info("%d clips in %.1f s (%.3f s a clip, %d worker(s))", num_clips, elapsed, elapsed / num_clips, workers)
    table = pd.DataFrame(rows)
    heldout = table.pop("heldout").to_numpy(bool)
    unpaired = table.pop("unpaired_audio_path")
    train = table[~heldout].reset_index(drop=True)
    paths = {name: out / f"{name}.csv" for name in (*TRAINING_CSVS, "heldout")}
    for name in ("stage3_jav", "video_text", "vae"):
        train.to_csv(paths[name], index=False)
    table[heldout].to_csv(paths["heldout"], index=False)
    prior = train.copy()
    prior["unpaired_audio_path"] = unpaired[~heldout].to_numpy()
    prior.to_csv(paths["stage2_prior"], index=False)
    audio = train.copy()  # audio-only rows (data/README.md): a placeholder video, the sound's own caption
    audio["path"] = audio["relpath"] = "placeholder.mp4"
    audio["id"], audio["text"] = "placeholder", "placeholder"
    audio["height"], audio["width"], audio["aspect_ratio"], audio["resolution"] = 720, 1280, 0.5625, 921600
    audio["num_frames"] = [num_frames(n / fps, 24) for n in train["num_frames"]]  # audio-only rows count 24 fps
    audio["fps"] = 24
    audio.to_csv(paths["stage1_audio"], index=False)
    logger.info("%d training clips, %d held out, in %s", len(train), int(heldout.sum()), out)
    return paths
