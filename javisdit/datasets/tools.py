"""Data preparation: build and refine the CSV files the datasets read (the original's
``tools.datasets.convert`` / ``datautil`` / ``find_*_ds`` steps), with PyAV and soundfile instead of the
ffmpeg command line. Every function takes and returns a table; ``scripts/data/datautil.py`` chains them.
"""

from __future__ import annotations

import logging
import math
import os
from pathlib import Path

import numpy as np
import pandas as pd
import torch

from javisdit.datasets.read import UnreadableClip, load_waveform, read_audio, video_info
from javisdit.errors import UserError
from javisdit.models import geometry

logger = logging.getLogger(__name__)

VIDEO_EXTENSIONS = (".mp4", ".avi", ".mov", ".mkv", ".m2ts")
AUDIO_EXTENSIONS = (".wav", ".mp3", ".flac", ".aac", ".m4a")


def _require(table: pd.DataFrame, *columns: str) -> None:
    missing = [c for c in columns if c not in table.columns]
    if missing:
        raise UserError(f"the CSV lacks column(s) {', '.join(missing)} (has: {', '.join(table.columns)})")


def scan(kind: str, root: str | Path) -> pd.DataFrame:
    """A meta table of every video (``path, id, relpath``) or audio file (``id, relpath, audio_path``) under
    ``root``, sorted by path."""
    root = Path(root)
    if not root.is_dir():
        raise UserError(f"no such folder: {root}")
    extensions = {"video": VIDEO_EXTENSIONS, "audio": AUDIO_EXTENSIONS}[kind]
    files = sorted(p for p in root.rglob("*") if p.is_file() and p.suffix.lower() in extensions)
    if not files:
        raise UserError(f"no {kind} files ({', '.join(extensions)}) under {root}")
    rel = [str(p.relative_to(root)) for p in files]
    if kind == "video":
        return pd.DataFrame(dict(path=[str(p) for p in files], id=[p.stem for p in files], relpath=rel))
    return pd.DataFrame(dict(id=[p.stem for p in files], relpath=rel, audio_path=[str(p) for p in files]))


def add_video_info(table: pd.DataFrame) -> pd.DataFrame:
    """``num_frames, height, width, aspect_ratio (H/W), fps (rounded), resolution (H·W)`` of each ``path``;
    unreadable videos get zeros (drop them with ``filter_rows(fmin=1)``)."""
    _require(table, "path")
    rows = []
    for path in table["path"]:
        try:
            info = video_info(path)
            rows.append((info.num_frames, info.height, info.width, float(round(info.fps))))
        except UnreadableClip as err:
            logger.warning("%s", err)
            rows.append((0, 0, 0, 0.0))
    out = table.copy()
    out["num_frames"], out["height"], out["width"], out["fps"] = zip(*rows)
    out["aspect_ratio"] = [h / w if w else 0.0 for h, w in zip(out["height"], out["width"])]
    out["resolution"] = out["height"] * out["width"]
    return out


def add_audio_info(table: pd.DataFrame) -> pd.DataFrame:
    """``audio_length_s, audio_fps, audio_channels`` of each ``audio_path`` (zeros when unreadable)."""
    _require(table, "audio_path")
    rows = []
    for path in table["audio_path"]:
        try:
            data, rate = read_audio(path)
            rows.append((data.shape[1] / rate, rate, data.shape[0]))
        except UnreadableClip as err:
            logger.warning("%s", err)
            rows.append((0.0, 0, 0))
    out = table.copy()
    out["audio_length_s"], out["audio_fps"], out["audio_channels"] = zip(*rows)
    return out


def _write_wave(path: Path, wave: torch.Tensor) -> None:
    import soundfile

    tmp = path.with_name(f".{path.stem}.partial{path.suffix}")
    soundfile.write(str(tmp), wave.numpy(), geometry.SAMPLE_RATE, format="WAV")
    os.replace(tmp, path)


def extract_audio(table: pd.DataFrame, overwrite: bool = False) -> pd.DataFrame:
    """Write each video's sound as ``<video>.wav`` (16 kHz mono) and add ``audio_path, audio_id, audio_fps``;
    videos without sound are dropped with a warning."""
    _require(table, "path")
    keep, paths = [], []
    for i, path in enumerate(table["path"]):
        wav = Path(path).with_suffix(".wav")
        try:
            if overwrite or not wav.is_file():
                _write_wave(wav, load_waveform(path))
            keep.append(i)
            paths.append(str(wav))
        except UnreadableClip as err:
            logger.warning("no audio taken from %s", err)
    out = table.iloc[keep].copy()
    out["audio_path"], out["audio_id"], out["audio_fps"] = paths, [Path(p).stem for p in paths], geometry.SAMPLE_RATE
    return out.reset_index(drop=True)


def resample_audio(table: pd.DataFrame) -> pd.DataFrame:
    """Rewrite every ``audio_path`` that is not 16 kHz mono as 16 kHz mono (in place); unreadable files
    are dropped with a warning."""
    _require(table, "audio_path")
    table = table.copy()
    keep = []
    for i, path in enumerate(table["audio_path"]):
        try:
            data, rate = read_audio(path)
            if rate != geometry.SAMPLE_RATE or data.shape[0] != 1:
                target = Path(path) if Path(path).suffix.lower() == ".wav" else Path(path).with_suffix(".wav")
                _write_wave(target, load_waveform(path))
                table.iat[i, table.columns.get_loc("audio_path")] = str(target)
            keep.append(i)
        except UnreadableClip as err:
            logger.warning("%s", err)
    out = table.iloc[keep].copy()
    out["audio_fps"] = geometry.SAMPLE_RATE
    return out.reset_index(drop=True)


def trim_audio(table: pd.DataFrame, seconds: float) -> pd.DataFrame:
    """Cut every ``audio_path`` longer than ``seconds`` to its first ``seconds`` (rewritten as wav)."""
    _require(table, "audio_path")
    out = table.copy()
    for i, path in enumerate(out["audio_path"]):
        data, rate = read_audio(path)
        if data.shape[1] > seconds * rate:
            target = Path(path).with_suffix(".wav")
            wave = load_waveform(path)[: int(seconds * geometry.SAMPLE_RATE)]
            _write_wave(target, wave)
            out.iat[i, out.columns.get_loc("audio_path")] = str(target)
    return out


def dummy_videos(table: pd.DataFrame, fps: int = 24) -> pd.DataFrame:
    """The stage-1 (audio-only) table: placeholder video columns, ``num_frames`` = duration x 24, the
    caption in ``audio_text``."""
    _require(table, "audio_path")
    lengths = []
    for path in table["audio_path"]:
        try:
            data, rate = read_audio(path)
            lengths.append(int(data.shape[1] / rate * fps))
        except UnreadableClip as err:
            logger.warning("%s", err)
            lengths.append(0)
    n = len(table)
    return pd.DataFrame(dict(
        path=["placeholder.mp4"] * n, id=["placeholder"] * n, relpath=["placeholder.mp4"] * n, num_frames=lengths,
        height=720, width=1280, aspect_ratio=0.5625, fps=fps, resolution=921600, audio_path=table["audio_path"],
        audio_fps=table["audio_fps"] if "audio_fps" in table else geometry.SAMPLE_RATE, text="placeholder",
        audio_text=table["audio_text"] if "audio_text" in table else (table["text"] if "text" in table else ""),
    ))


def filter_rows(table: pd.DataFrame, fmin: int | None = None, fmax: int | None = None,
                min_seconds: float | None = None, require_text: bool = False) -> pd.DataFrame:
    mask = pd.Series(True, index=table.index)
    if fmin is not None:
        _require(table, "num_frames")
        mask &= table["num_frames"] >= fmin
    if fmax is not None:
        _require(table, "num_frames")
        mask &= table["num_frames"] <= fmax
    if min_seconds is not None:
        _require(table, "audio_length_s")
        mask &= table["audio_length_s"] >= min_seconds
    if require_text:
        column = "audio_text" if "audio_text" in table and "text" not in table else "text"
        _require(table, column)
        mask &= table[column].astype(str).str.strip() != ""
    return table[mask].reset_index(drop=True)


def split(table: pd.DataFrame, fraction: float, seed: int = 42) -> tuple[pd.DataFrame, pd.DataFrame]:
    """A random (seeded) split into the first ``fraction`` of the rows and the rest."""
    order = np.random.default_rng(seed).permutation(len(table))
    cut = int(math.floor(len(table) * fraction))
    return table.iloc[order[:cut]].reset_index(drop=True), table.iloc[order[cut:]].reset_index(drop=True)


def attach_captions(table: pd.DataFrame, captions: str | Path, key: str = "id", column: str = "text") -> pd.DataFrame:
    """Fill ``column`` from a caption file matched on ``key``: a CSV with ``key`` and ``column`` (or
    ``caption``) columns, or a text file of ``<key> <caption words...>`` lines (TAVGBench's format; a
    ``.mp4`` suffix on the key is ignored). Rows without a caption are dropped with a count."""
    _require(table, key)
    captions = Path(captions)
    if not captions.is_file():
        raise UserError(f"no such caption file: {captions}")
    if captions.suffix.lower() == ".csv":
        source = pd.read_csv(captions, keep_default_na=False)
        value = column if column in source else "caption"
        _require(source, key, value)
        lookup = dict(zip(source[key].astype(str), source[value].astype(str)))
    else:
        lookup = {}
        for line in captions.read_text(encoding="utf-8").splitlines():
            name, _, text = line.strip().partition(" ")
            if text:
                lookup[Path(name).stem if name.endswith(".mp4") else name] = text.strip()
    out = table.copy()
    out[column] = [lookup.get(str(k), "") for k in out[key]]
    kept = out[out[column] != ""].reset_index(drop=True)
    if len(kept) < len(out):
        logger.warning("%d of %d rows have no caption in %s and were dropped", len(out) - len(kept), len(out), captions)
    return kept


def assign_unpaired_audio(table: pd.DataFrame, seed: int = 42) -> pd.DataFrame:
    """Stage 2 without an audio generator: each row's ``unpaired_audio_path`` is the sound of another
    row (a derangement), an audio that does not belong to the video. ``datautil unpaired --config``
    generates one per caption instead."""
    _require(table, "audio_path")
    if len(table) < 2:
        raise UserError("pairing audio with other rows needs at least two rows")
    order = np.random.default_rng(seed).permutation(len(table))
    shifted = np.roll(order, 1)
    partner = np.empty(len(table), dtype=int)
    partner[order] = shifted
    out = table.copy()
    out["unpaired_audio_path"] = table["audio_path"].to_numpy()[partner]
    return out
