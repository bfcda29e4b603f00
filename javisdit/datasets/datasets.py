"""The training datasets, registered under the original names.

``VariableVideoAudioTextDataset`` reads a CSV (one clip a row; columns in ``data/README.md``) and gives,
per sample, a video window resized to its bucket, the matching audio as a log-mel, and the captions;
stage 2 adds asynchronous negatives, stage 1 (``audio_only``) reads audio alone. ``BatchFeatureDataset``
reads batches of latents written by ``scripts/misc/extract_feat.py``. A sample that cannot be read is
logged with its file and returned as None; the collate function counts and drops it.
"""

from __future__ import annotations

import logging
import random
from pathlib import Path

import numpy as np
import pandas as pd
import torch
from torch.utils.data import Dataset

from javisdit.datasets.read import (
    UnreadableClip,
    align_to_video,
    audio_window,
    load_waveform,
    read_video_frames,
    temporal_window,
    video_info,
)
from javisdit.datasets.transforms import AUDIO_TRANSFORMS, TRANSFORMS, resize_crop
from javisdit.errors import ConfigError
from javisdit.models import geometry
from javisdit.models.vae.mel import MelFrontEnd
from javisdit.registry import DATASETS

logger = logging.getLogger(__name__)

AUDIO_ONLY_FPS = 24  # placeholder frame rate of audio-only rows (stage 1)


def read_table(path: str | Path) -> pd.DataFrame:
    path = Path(path)
    if not path.is_file():
        raise ConfigError(f"dataset.data_path: no such file: {path}")
    try:
        table = pd.read_parquet(path) if path.suffix == ".parquet" else pd.read_csv(path, keep_default_na=False)
    except Exception as err:
        raise ConfigError(f"dataset.data_path {path}: not a readable CSV/parquet file ({err})") from None
    if table.empty:
        raise ConfigError(f"dataset.data_path {path}: the table has no rows")
    return table


def onset_vector(wave: np.ndarray, num_frames: int, duration: float) -> torch.Tensor:
    """1.0 at the mel frames where librosa detects an onset in the waveform, else 0."""
    import librosa

    envelope = librosa.onset.onset_strength(y=wave, sr=geometry.SAMPLE_RATE)
    times = librosa.frames_to_time(librosa.onset.onset_detect(onset_envelope=envelope, sr=geometry.SAMPLE_RATE),
                                   sr=geometry.SAMPLE_RATE)
    onset = torch.zeros(num_frames)
    for t in times:
        onset[min(max(int(t / duration * num_frames), 0), num_frames - 1)] = 1.0
    return onset


@DATASETS.register_module(name="VariableVideoAudioTextDataset")
class VariableVideoAudioTextDataset(Dataset):
    def __init__(self, data_path: str, transform_name: str = "resize_crop",
                 audio_transform_name: str = "mel_spec_audioldm2", frame_interval: int = 1, audio_only: bool = False,
                 direct_load_video_clip: bool = True, audio_cfg: dict | None = None, neg_aug: int = 0,
                 neg_aug_kwargs: dict | None = None, require_onset: bool = False):
        if transform_name not in TRANSFORMS:
            raise ConfigError(f"dataset.transform_name {transform_name!r} is not supported; valid: {', '.join(TRANSFORMS)}")
        if audio_transform_name not in AUDIO_TRANSFORMS:
            raise ConfigError(f"dataset.audio_transform_name {audio_transform_name!r} is not supported; valid: "
                              f"{', '.join(AUDIO_TRANSFORMS)}")
        self.data_path = Path(data_path)
        self.table = read_table(data_path)
        required = ["audio_path", "num_frames"] if audio_only else ["path", "num_frames", "height", "width", "text"]
        if audio_only and "audio_text" not in self.table.columns and "text" not in self.table.columns:
            required.append("audio_text")
        missing = [c for c in required if c not in self.table.columns]
        if missing:
            stage = "stage 1 (audio only)" if audio_only else "stages 2 and 3"
            raise ConfigError(f"{data_path}: the CSV lacks column(s) {', '.join(missing)} needed for {stage} "
                              f"(see data/README.md)")
        self.audio_only, self.frame_interval = audio_only, frame_interval
        self.mel = MelFrontEnd.from_audio_cfg(audio_cfg) if audio_cfg else MelFrontEnd()
        self.require_onset = require_onset
        self.augmentor = None
        if neg_aug:
            from javisdit.datasets.augment import NegativeAugmentor

            self.augmentor = NegativeAugmentor(neg_aug, **(neg_aug_kwargs or {}))

    def __len__(self) -> int:
        return len(self.table)

    def clip_sizes(self) -> list[tuple[int, int, int]]:
        """(T, H, W) of every row, for bucketing (audio-only rows use a 720p placeholder frame)."""
        t = self.table
        if self.audio_only:
            return [(int(n), 720, 1280) for n in t["num_frames"]]
        return list(zip(t["num_frames"].astype(int), t["height"].astype(int), t["width"].astype(int)))

    def _path(self, value: str) -> Path:
        path = Path(value)
        if not path.is_absolute() and not path.exists() and (self.data_path.parent / path).exists():
            return self.data_path.parent / path  # paths relative to the CSV
        return path

    def __getitem__(self, index):
        row, T, H, W, seed = index if isinstance(index, tuple) else (index, None, None, None, index)
        record = self.table.iloc[row]
        try:
            sample = self._load(row, record, T, H, W, seed)
            sample["seed"] = seed  # the sample's own random source downstream (training noise, masks)
            return sample
        except UnreadableClip as err:
            logger.warning("skipped sample %d: %s", row, err)
        except Exception as err:  # a corrupt file must not end a training run
            logger.warning("skipped sample %d (%s): %s: %s", row, record.get("path", record.get("audio_path")),
                           type(err).__name__, err)
        return None

    def _load(self, row: int, record, T, H, W, seed) -> dict:
        rng = random.Random(seed)
        if self.audio_only:
            return self._load_audio_only(row, record, T or int(record["num_frames"]), rng)
        video_path = self._path(record["path"])
        if not video_path.is_file():
            raise UnreadableClip(f"{video_path}: no such file")
        info = video_info(video_path)
        fps = float(round(info.fps))
        T = T or int(record["num_frames"])
        H, W = (H, W) if H else (info.height, info.width)
        total = info.num_frames
        begin, end = temporal_window(total, T, self.frame_interval, rng)
        indices = np.linspace(begin, end - 1, T, dtype=int)
        frames = read_video_frames(video_path, indices)
        audio_source = record.get("audio_path") or record["path"]
        wave = align_to_video(load_waveform(self._path(audio_source)), total, fps)
        a0, a1 = audio_window(wave, total, begin, end, T, self.frame_interval)
        clip_wave = wave[a0:a1]
        video = resize_crop(frames, H, W)
        video_fps = fps // self.frame_interval
        duration = T / video_fps
        sample = dict(index=row, video=video, audio=self.mel(clip_wave, duration)[0], num_frames=T, height=H, width=W,
                      ar=H / W, fps=video_fps, audio_fps=geometry.SAMPLE_RATE, text=str(record["text"]),
                      video_text=str(record.get("video_text", "")), audio_text=str(record.get("audio_text", "")))
        if self.augmentor is not None:
            unpaired = record.get("unpaired_audio_path") or None
            neg_videos, neg_waves = self.augmentor(video, clip_wave, wave, (a0, a1), rng,
                                                   self._path(unpaired) if unpaired else None,
                                                   audio_name=str(self._path(audio_source)))
            sample["neg_videos"] = {k: torch.stack(v) for k, v in neg_videos.items()}
            sample["neg_audios"] = {k: torch.stack([self.mel(w, duration)[0] for w in v]) for k, v in neg_waves.items()}
        if self.require_onset:
            sample["onset"] = onset_vector(clip_wave.numpy(), sample["audio"].shape[1], duration)
        return sample

    def _load_audio_only(self, row: int, record, T: int, rng: random.Random) -> dict:
        wave = load_waveform(self._path(record["audio_path"]))
        duration = T / AUDIO_ONLY_FPS
        n = int(duration * geometry.SAMPLE_RATE)
        if wave.shape[0] < n:
            raise UnreadableClip(f"{record['audio_path']}: {wave.shape[0]} samples, {n} needed")
        start = rng.randint(0, max(0, wave.shape[0] - n - 1))
        text = record["audio_text"] if "audio_text" in record and record["audio_text"] != "" else record["text"]
        return dict(index=row, audio=self.mel(wave[start : start + n], duration)[0], num_frames=T, height=144, width=256,
                    ar=144 / 256, fps=AUDIO_ONLY_FPS, audio_fps=geometry.SAMPLE_RATE, text=str(text),
                    video_text="", audio_text=str(text))


@DATASETS.register_module(name="BatchFeatureDataset")
class BatchFeatureDataset(Dataset):
    """Pre-extracted batches: ``data_path/**/NNNNNNNN.bin`` files, each a list of batch dicts with keys
    ``x`` (video latents), ``ax`` (audio latents), ``text``, ``fps``, ``height``, ``width``, ``num_frames``
    and optionally ``y``/``mask`` (T5 features), ``neg_vx``/``neg_ax`` (negatives), ``onset``."""

    RENAME = {"x": "video", "ax": "audio", "y": "text_features", "mask": "text_mask", "neg_vx": "neg_videos",
              "neg_ax": "neg_audios"}

    def __init__(self, data_path: str, **unused):
        root = Path(data_path)
        self.bins = sorted(list(root.glob("*.bin")) + list(root.glob("*/*.bin")))
        if not self.bins:
            raise ConfigError(f"dataset.data_path {data_path}: no feature files (*.bin) found")
        self._cache: tuple[int, list] | None = None
        self.per_bin = len(self._bin(0))

    def _bin(self, i: int) -> list:
        if self._cache is None or self._cache[0] != i:
            self._cache = (i, torch.load(self.bins[i], map_location="cpu", weights_only=True))
        return self._cache[1]

    def __len__(self) -> int:
        return self.per_bin * len(self.bins)

    def __getitem__(self, index: int) -> dict:
        batch = self._bin(index // self.per_bin)[index % self.per_bin]
        out = {self.RENAME.get(k, k): v for k, v in batch.items()}
        out.setdefault("raw_text", out.get("text"))
        out.setdefault("audio_fps", geometry.SAMPLE_RATE)
        return out

