"""Result files of an evaluation: the JSON with upstream's keys (rewritten after each metric group), a
Markdown and a CSV report beside it, and optionally the per-sample scores.

JSON layout (EVAL.md §1.2): one key per metric holding the mean, or with ``--verbose`` a dict with
``overall`` (the mean), ``all`` (per-sample scores in row order; not for FVD/KVD/FAD) and one key per
aspect index (``"0"`` ... ``"4"``) listing the per-category means. Ours adds ``protocol``.
"""

from __future__ import annotations

import csv
import json
import math
import os
from pathlib import Path

from javisdit.eval.inputs import ASPECTS, CATEGORIES

DIRECTION = {"fvd": "lower", "kvd": "lower", "fad": "lower"}
TITLES = {
    "fvd": "FVD", "kvd": "KVD", "fad": "FAD", "ib_tv": "TV-IB", "ib_ta": "TA-IB", "ib_av": "AV-IB",
    "clip_score": "CLIP", "clap_score": "CLAP", "cavp_score": "CAVP", "avh_score": "AVHScore",
    "javis_score": "JavisScore", "av_align": "AV-Align",
}


def _clean(value):
    """JSON cannot hold NaN: write null."""
    if isinstance(value, float) and not math.isfinite(value):
        return None
    if isinstance(value, dict):
        return {k: _clean(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_clean(v) for v in value]
    return value


def read_results(path: str | os.PathLike) -> dict:
    """The results already in ``path`` (empty when it does not exist)."""
    path = Path(path)
    if not path.is_file():
        return {}
    try:
        return json.loads(path.read_text())
    except json.JSONDecodeError as err:
        from javisdit.errors import UserError

        raise UserError(f"--output-file {path} exists but is not a JSON result file ({err}); move it away") from None


def write_json(path: str | os.PathLike, results: dict) -> None:
    """Write atomically (a crash mid-write leaves the previous file)."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_text(json.dumps(_clean(results), indent=2) + "\n")
    os.replace(tmp, path)


def overall(value) -> float | None:
    return value.get("overall") if isinstance(value, dict) else value


def _fmt(value) -> str:
    if value is None:
        return "n/a"
    return f"{value:.4f}" if abs(value) < 1e4 else f"{value:.1f}"


def write_reports(json_path: str | os.PathLike, results: dict) -> tuple[Path, Path]:
    """``<stem>.md`` and ``<stem>.csv`` beside the JSON: one row per metric (overall), then per category
    when the results carry a breakdown."""
    json_path = Path(json_path)
    metrics = [k for k in TITLES if k in results]
    rows = []
    for key in metrics:
        value = results[key]
        rows.append((key, "overall", "", overall(value)))
        if isinstance(value, dict):
            for aspect, names in enumerate(CATEGORIES):
                for category, score in enumerate(value.get(str(aspect)) or []):
                    rows.append((key, ASPECTS[aspect], names[category] if category < len(names) else str(category),
                                 score))
    csv_path = json_path.with_suffix(".csv")
    with open(csv_path, "w", newline="") as handle:
        writer = csv.writer(handle)
        writer.writerow(["metric", "aspect", "category", "value"])
        for key, aspect, category, value in rows:
            writer.writerow([key, aspect, category, "" if value is None else value])

    protocol = results.get("protocol", {})
    settings = protocol.get("settings", {})
    lines = [f"# JavisBench results: {json_path.name}", ""]
    lines.append("| metric | key | value | better |")
    lines.append("|---|---|---|---|")
    for key in metrics:
        lines.append(f"| {TITLES[key]} | `{key}` | {_fmt(overall(results[key]))} | {DIRECTION.get(key, 'higher')} |")
    breakdown = [r for r in rows if r[1] != "overall"]
    if breakdown:
        lines += ["", "## Per category", "", "| metric | aspect | category | value |", "|---|---|---|---|"]
        lines += [f"| {TITLES[k]} | {a} | {c} | {_fmt(v)} |" for k, a, c, v in breakdown]
    if settings:
        lines += ["", "## Protocol", ""]
        lines += [f"- {k}: {v}" for k, v in settings.items()]
        samples = protocol.get("samples", {})
        for k in ("num_samples", "num_frames", "fps", "resolution", "duration_s", "audio_sample_rate"):
            if k in samples:
                lines.append(f"- samples {k}: {samples[k]}")
        for k, count in protocol.get("metrics", {}).items():
            lines.append(f"- {k}: {count.get('rows', 0)} rows, {count.get('failed', 0)} failed, "
                         f"{count.get('skipped', 0)} skipped")
        lines += [f"- warning: {w}" for w in protocol.get("warnings", [])]
    md_path = json_path.with_suffix(".md")
    md_path.write_text("\n".join(lines) + "\n")
    return md_path, csv_path


def write_per_sample(json_path: str | os.PathLike, table: dict[int, dict[str, float | None]]) -> Path:
    """``<stem>_per_sample.csv``: one line per row index, one column per per-sample metric. Columns of an
    earlier run (a resumed evaluation) that this run did not recompute are kept."""
    json_path = Path(json_path)
    path = json_path.with_name(json_path.stem + "_per_sample.csv")
    merged: dict[int, dict[str, float | None]] = {}
    if path.is_file():
        with open(path, newline="") as handle:
            for line in csv.DictReader(handle):
                merged[int(line.pop("index"))] = {k: float(v) if v != "" else None for k, v in line.items()}
    for index, values in table.items():
        merged.setdefault(index, {}).update(values)
    keys = [k for k in TITLES if any(k in values for values in merged.values())]
    with open(path, "w", newline="") as handle:
        writer = csv.writer(handle)
        writer.writerow(["index", *keys])
        for index in sorted(merged):
            writer.writerow([index, *("" if merged[index].get(k) is None else merged[index][k] for k in keys)])
    return path
