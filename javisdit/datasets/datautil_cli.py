"""The command line of ``scripts/data/datautil.py`` (one sub-command per step of data preparation)."""

from __future__ import annotations

import argparse
import logging
import sys
from collections.abc import Sequence
from pathlib import Path

import pandas as pd

from javisdit.datasets import tools
from javisdit.errors import UserError
from javisdit.utils.logging import setup_logging

logger = logging.getLogger(__name__)


def _read(path: str) -> pd.DataFrame:
    if not Path(path).is_file():
        raise UserError(f"no such file: {path}")
    return pd.read_csv(path, keep_default_na=False)


def _write(table: pd.DataFrame, path: str) -> None:
    Path(path).parent.mkdir(parents=True, exist_ok=True)
    table.to_csv(path, index=False)
    logger.info("wrote %d rows to %s", len(table), path)


def _unpaired(args) -> pd.DataFrame:
    table = _read(args.input)
    if args.config is None:
        return tools.assign_unpaired_audio(table, seed=args.seed)
    # The generator hook: an audio-only inference config (e.g. the stage-1 model) voices each caption.
    from javisdit.config import parse_configs
    from javisdit.inference import run

    out_dir = Path(args.output_dir or Path(args.output).parent / "unpaired")
    prompts = out_dir / "prompts.txt"
    out_dir.mkdir(parents=True, exist_ok=True)
    prompts.write_text("\n".join(str(t).replace("\n", " ") for t in table["text"]) + "\n")
    cfg = parse_configs("inference", [args.config, "--prompt-path", str(prompts), "--save-dir", str(out_dir),
                                      "--sample-name", "unpaired", "--verbose", "1"])
    if not cfg.get("audio_only"):
        raise UserError(f"{args.config} is not an audio-only config (audio_only=True), e.g. inference/audio_sample.py")
    run(cfg)
    table = table.copy()
    table["unpaired_audio_path"] = [str(out_dir / f"unpaired_{i:04d}.wav") for i in range(len(table))]
    return table


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="scripts/data/datautil.py", description=__doc__)
    sub = parser.add_subparsers(dest="command", required=True)

    def command(name: str, help: str, takes_input: bool = True) -> argparse.ArgumentParser:
        p = sub.add_parser(name, help=help)
        if takes_input:
            p.add_argument("input", help="input CSV")
        p.add_argument("--output", required=True, help="output CSV")
        return p

    p = sub.add_parser("scan", help="a meta CSV of every video or audio file under a folder")
    p.add_argument("kind", choices=("video", "audio"))
    p.add_argument("root")
    p.add_argument("--output", required=True)
    p = command("info", "add num_frames, height, width, fps, aspect_ratio, resolution")
    p.add_argument("--fmin", type=int, help="then keep clips of at least this many frames")
    command("audio-info", "add audio_length_s, audio_fps, audio_channels")
    p = command("extract-audio", "write each video's sound as <video>.wav (16 kHz mono)")
    p.add_argument("--overwrite", action="store_true")
    command("resample-audio", "rewrite audio that is not 16 kHz mono")
    p = command("trim-audio", "cut audio longer than --seconds")
    p.add_argument("--seconds", type=float, required=True)
    command("dummy-video", "the stage-1 (audio only) table with placeholder videos")
    p = command("filter", "keep rows by frame count, audio length, caption")
    p.add_argument("--fmin", type=int)
    p.add_argument("--fmax", type=int)
    p.add_argument("--min-seconds", type=float)
    p.add_argument("--require-text", action="store_true")
    p = command("split", "a seeded random split")
    p.add_argument("--fraction", type=float, required=True)
    p.add_argument("--rest", required=True, help="CSV for the other rows")
    p.add_argument("--seed", type=int, default=42)
    p = command("captions", "fill a caption column from a caption file")
    p.add_argument("--captions", required=True)
    p.add_argument("--key", default="id")
    p.add_argument("--column", default="text", choices=("text", "audio_text"))
    p = command("unpaired", "add unpaired_audio_path for stage 2 (another row's sound, or generated)")
    p.add_argument("--config", help="an audio-only inference config that voices each caption")
    p.add_argument("--output-dir", help="where generated audio goes (default: <output folder>/unpaired)")
    p.add_argument("--seed", type=int, default=42)
    p = sub.add_parser("merge", help="concatenate CSVs")
    p.add_argument("inputs", nargs="+")
    p.add_argument("--output", required=True)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    setup_logging()
    try:
        if args.command == "scan":
            _write(tools.scan(args.kind, args.root), args.output)
        elif args.command == "info":
            table = tools.add_video_info(_read(args.input))
            _write(tools.filter_rows(table, fmin=args.fmin) if args.fmin else table, args.output)
        elif args.command == "audio-info":
            _write(tools.add_audio_info(_read(args.input)), args.output)
        elif args.command == "extract-audio":
            _write(tools.extract_audio(_read(args.input), overwrite=args.overwrite), args.output)
        elif args.command == "resample-audio":
            _write(tools.resample_audio(_read(args.input)), args.output)
        elif args.command == "trim-audio":
            _write(tools.trim_audio(_read(args.input), args.seconds), args.output)
        elif args.command == "dummy-video":
            _write(tools.dummy_videos(_read(args.input)), args.output)
        elif args.command == "filter":
            _write(tools.filter_rows(_read(args.input), args.fmin, args.fmax, args.min_seconds, args.require_text),
                   args.output)
        elif args.command == "split":
            first, rest = tools.split(_read(args.input), args.fraction, args.seed)
            _write(first, args.output)
            _write(rest, args.rest)
        elif args.command == "captions":
            _write(tools.attach_captions(_read(args.input), args.captions, args.key, args.column), args.output)
        elif args.command == "unpaired":
            _write(_unpaired(args), args.output)
        elif args.command == "merge":
            _write(pd.concat([_read(p) for p in args.inputs], ignore_index=True), args.output)
    except UserError as err:
        sys.stderr.write(f"error: {err}\n")
        return 2
    return 0
