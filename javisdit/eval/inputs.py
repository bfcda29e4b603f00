"""The rows of an evaluation: the benchmark CSV, and where each row's generated sample is.

A row's sample is found, in this order (EVAL.md §1.2):

* ``--infer-data-dir``: ``sample_{i:04d}.mp4`` by CSV row index ``i`` with its ``sample_{i:04d}.wav``;
  when only the mp4 exists, its own audio track is read;
* the CSV columns ``pred_video_path`` / ``pred_audio_path``;
* with ``--eval-gt``: the ground truth itself (``path``, ``audio_path`` falling back to ``path``).
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, field
from pathlib import Path

import pandas as pd

from javisdit.errors import UserError

logger = logging.getLogger(__name__)

NUM_ASPECTS = 5  # cat0_ind ... cat4_ind
ASPECTS = ("event scenario", "visual style", "sound type", "spatial composition", "temporal composition")
CATEGORIES = (
    ("natural", "urban", "living", "industrial", "virtual"),
    ("camera shooting", "2D-animate", "3D-animate"),
    ("ambient", "biological", "mechanical", "musical", "speech"),
    ("single subject", "multiple subjects", "off-screen"),
    ("single event", "sequential events", "simultaneous events"),
)


@dataclass
class Row:
    """One CSV row to evaluate.

    Attributes:
        index: the row's position in the CSV (it names the sample file).
        categories: per aspect, the category indices of ``cat{k}_ind`` (empty without the columns).
    """

    index: int
    text: str
    audio_text: str
    video: Path | None
    audio: Path | None
    gt_video: str | None = None
    gt_audio: str | None = None
    categories: list[list[int]] = field(default_factory=list)

    @property
    def name(self) -> str:
        return f"row {self.index} ({self.video.name if self.video else 'no sample'})"


def _categories(value) -> list[int]:
    if value is None or (isinstance(value, float) and pd.isna(value)) or str(value).strip() == "":
        return []
    try:
        return [int(float(v)) for v in str(value).replace(";", ",").split(",") if v.strip()]
    except ValueError:
        raise UserError(f"category column value {value!r} is not a comma-separated list of integers") from None


def read_rows(input_file: str | Path, infer_data_dir: str | Path | None = None, eval_gt: bool = False,
              eval_num: int | None = None, allow_missing: bool = False, verbose: bool = False
              ) -> tuple[list[Row], list[str]]:
    """The rows to evaluate and, with ``allow_missing``, the messages of the rows left out.

    Raises:
        UserError: the CSV cannot be read, lacks ``text`` (or the columns its mode needs), or a sample is
            missing without ``allow_missing`` (the message names the row and the expected file).
    """
    path = Path(input_file)
    if not path.is_file():
        raise UserError(f"--input-file {path}: no such file")
    try:
        table = pd.read_csv(path, keep_default_na=False, dtype=str)
    except Exception as err:  # pandas raises a zoo of parser errors
        raise UserError(f"--input-file {path}: cannot read it as CSV ({err})") from None
    if "text" not in table.columns:
        raise UserError(f"--input-file {path}: no `text` column (columns: {', '.join(table.columns)})")
    if eval_num is not None:
        if eval_num < 1:
            raise UserError(f"--eval-num must be at least 1, got {eval_num}")
        table = table.iloc[:eval_num]
    if eval_gt and "path" not in table.columns:
        raise UserError(f"--eval-gt reads the ground truth from the `path` column, which {path} lacks")
    if infer_data_dir is None and not eval_gt and "pred_video_path" not in table.columns:
        raise UserError("say where the samples are: --infer-data-dir DIR (sample_0000.mp4, ...), or "
                        f"`pred_video_path`/`pred_audio_path` columns in {path}, or --eval-gt")
    if verbose:
        absent = [f"cat{k}_ind" for k in range(NUM_ASPECTS) if f"cat{k}_ind" not in table.columns]
        if absent:
            raise UserError(f"--verbose breaks scores down by category, but {path} lacks {', '.join(absent)}")
    folder = Path(infer_data_dir) if infer_data_dir is not None else None
    if folder is not None and not folder.is_dir():
        raise UserError(f"--infer-data-dir {folder}: no such folder")

    rows, missing = [], []
    for index, record in enumerate(table.to_dict("records")):
        video, audio = _sample_files(index, record, folder, eval_gt, path.parent)
        problem = None
        if video is None or not video.is_file():
            problem = f"row {index}: the sample {video} is missing"
        elif audio is not None and not audio.is_file():
            problem = f"row {index}: the audio {audio} is missing"
        if problem:
            if not allow_missing:
                raise UserError(problem + " (generate it, or pass --allow-missing to evaluate the other rows)")
            missing.append(problem)
            continue
        text = str(record["text"])
        rows.append(Row(
            index=index, text=text, audio_text=str(record.get("audio_text") or text), video=video, audio=audio,
            gt_video=record.get("path") or None, gt_audio=record.get("audio_path") or record.get("path") or None,
            categories=[_categories(record.get(f"cat{k}_ind")) for k in range(NUM_ASPECTS)] if verbose else [],
        ))
    for message in missing:
        logger.warning("%s; left out (--allow-missing)", message)
    if not rows:
        raise UserError(f"no row of {path} has a sample to evaluate")
    return rows, missing


def _resolve(value: str, base: Path) -> Path:
    candidate = Path(value)
    return candidate if candidate.is_absolute() or candidate.exists() else base / candidate


def _sample_files(index: int, record: dict, folder: Path | None, eval_gt: bool, base: Path
                  ) -> tuple[Path | None, Path | None]:
    """(video, audio or None = read the video's own track)."""
    if eval_gt:
        video = _resolve(record["path"], base) if record.get("path") else None
        audio = record.get("audio_path")
        return video, (_resolve(audio, base) if audio and audio != record.get("path") else None)
    if folder is not None:
        video = folder / f"sample_{index:04d}.mp4"
        wav = folder / f"sample_{index:04d}.wav"
        return video, (wav if wav.is_file() else None)
    video = record.get("pred_video_path")
    audio = record.get("pred_audio_path")
    return (_resolve(video, base) if video else None), (_resolve(audio, base) if audio else None)
