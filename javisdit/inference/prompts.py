"""Prompt lists and output names.

Prompts come from ``--prompt`` (one or more) or ``--prompt-path``: a ``.txt`` file with one prompt a
line, or a ``.csv`` file with a ``text`` column (and optionally ``audio_text``, and the per-row references
of X-conditional generation ``video_path``, ``audio_path``, ``image_path``: relative paths are read from
the CSV's folder when they exist there). ``--start-index`` /
``--end-index`` slice a file's list; the index of a prompt in the full list names its output.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from pathlib import Path

from javisdit.errors import UserError


@dataclass(frozen=True)
class Prompt:
    index: int  # position in the full list: names the output file
    text: str
    audio_text: str | None = None
    references: dict[str, str] = field(default_factory=dict)  # CSV reference columns of the row, non-empty


def load_prompts(prompt: list[str] | str | None = None, prompt_path: str | None = None, start_index: int = 0,
                 end_index: int | None = None) -> list[Prompt]:
    """The prompts of a run, numbered from ``start_index``.

    Raises:
        UserError: no prompt given, a missing or empty file, a CSV without a ``text`` column, an empty
            prompt.
    """
    audio_texts: list[str | None]
    references: list[dict[str, str]]
    if prompt is not None:
        texts = [prompt] if isinstance(prompt, str) else list(prompt)
        audio_texts = [None] * len(texts)
        references = [{} for _ in texts]
        numbers = list(range(start_index, start_index + len(texts)))
    elif prompt_path is not None:
        texts, audio_texts, references = _read_prompt_file(Path(prompt_path))
        numbers = list(range(len(texts)))[start_index:end_index]
        texts, audio_texts = texts[start_index:end_index], audio_texts[start_index:end_index]
        references = references[start_index:end_index]
        if not texts:
            raise UserError(f"--prompt-path {prompt_path}: no prompts between --start-index {start_index} and "
                            f"--end-index {end_index}")
    else:
        raise UserError("no prompts: pass --prompt \"...\" or --prompt-path FILE (.txt or .csv)")
    for number, text in zip(numbers, texts):
        if not text.strip():
            raise UserError(f"prompt {number} is empty")
    return [Prompt(n, t.strip(), a, r) for n, t, a, r in zip(numbers, texts, audio_texts, references)]


REFERENCE_COLUMNS = ("video_path", "audio_path", "image_path")


def _resolve(value: str, folder: Path) -> str:
    path = Path(value)
    if not path.is_absolute() and not path.exists() and (folder / path).exists():
        return str(folder / path)
    return value


def _read_prompt_file(path: Path) -> tuple[list[str], list[str | None], list[dict[str, str]]]:
    if not path.is_file():
        raise UserError(f"--prompt-path: no such file: {path}")
    if path.suffix.lower() == ".csv":
        import pandas as pd

        try:
            table = pd.read_csv(path, keep_default_na=False)
        except Exception as err:
            raise UserError(f"--prompt-path {path}: not a readable CSV file ({err})") from None
        if "text" not in table.columns:
            raise UserError(f"--prompt-path {path}: the CSV has no 'text' column (columns: {', '.join(table.columns)})")
        texts = [str(t) for t in table["text"]]
        audio = [str(a) if a != "" else None for a in table["audio_text"]] if "audio_text" in table.columns else None
        audio_texts = audio or [None] * len(texts)
        columns = [c for c in REFERENCE_COLUMNS if c in table.columns]
        references = [{c: _resolve(str(row[c]), path.parent) for c in columns if str(row[c]).strip()}
                      for row in table.to_dict("records")]
    else:
        texts = [line.strip() for line in path.read_text(encoding="utf-8").splitlines() if line.strip()]
        audio_texts = [None] * len(texts)
        references = [{} for _ in texts]
    if not texts:
        raise UserError(f"--prompt-path {path}: the file holds no prompts")
    return texts, audio_texts, references


_UNSAFE = re.compile(r"[^\w\-. ]+", flags=re.UNICODE)


def safe_file_name(text: str, max_length: int = 150) -> str:
    """A file name made from a prompt: path separators and other unsafe characters become ``_``,
    whitespace collapses, leading dots go, length is capped."""
    name = _UNSAFE.sub("_", text)
    name = re.sub(r"\s+", " ", name).strip().lstrip(".")
    return name[:max_length].rstrip() or "prompt"


def output_stem(save_dir: Path, prompt: Prompt, sample_name: str | None, prompt_as_path: bool, k: int,
                num_sample: int) -> Path:
    """``save_dir/sample_0007`` (``-k`` appended when several samples per prompt), or the prompt itself
    with ``--prompt-as-path`` (``--sample-name`` is then a prefix)."""
    if prompt_as_path:
        stem = f"{sample_name or ''}{safe_file_name(prompt.text)}"
    else:
        stem = f"{sample_name or 'sample'}_{prompt.index:04d}"
    if num_sample != 1:
        stem = f"{stem}-{k}"
    return save_dir / stem
