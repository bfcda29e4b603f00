"""Command lines of the evaluator: ``scripts/eval/javisbench.py`` (evaluate samples) and
``scripts/eval/extract_reference.py`` (ground-truth features for FVD/KVD/FAD).

Flags follow upstream's (EVAL.md §1.2) with dashes; the underscore spellings are accepted too, so
upstream command lines run unchanged where they use flags this evaluator honours.
"""

from __future__ import annotations

import argparse
import logging
import sys
from collections.abc import Sequence

from javisdit.errors import UserError
from javisdit.eval.checkpoints import DEFAULT_CHECKPOINT_DIR
from javisdit.eval.groups import GROUPS
from javisdit.eval.protocol import MODES, PAPER, Settings, paper_settings

logger = logging.getLogger(__name__)

DEFAULTS = dict(max_frames=24, image_size=224, max_audio_len_s=4.0, window_size_s=2.0, window_overlap_s=1.5)


def _flag(parser: argparse.ArgumentParser, name: str, **kwargs) -> None:
    parser.add_argument(f"--{name}", f"--{name.replace('-', '_')}", **kwargs)


def _common(parser: argparse.ArgumentParser) -> None:
    """Flags shared by both commands: how features are computed and where the networks are."""
    _flag(parser, "max-frames", type=int, default=None,
          help=f"frames sampled evenly over each clip for FVD/KVD (default {DEFAULTS['max_frames']}, "
               f"upstream's CLI; the paper used {PAPER['max_frames']})")
    _flag(parser, "image-size", type=int, default=None,
          help=f"letterbox size of the FVD frames (default {DEFAULTS['image_size']})")
    _flag(parser, "max-audio-len-s", type=float, default=None,
          help=f"audio cropped or zero-padded to this many seconds for FAD (default {DEFAULTS['max_audio_len_s']})")
    _flag(parser, "mode", choices=MODES, default="faithful",
          help="faithful (default): the upstream evaluator's maths, so numbers compare with published ones; "
               "corrected: its known bugs fixed (I3D pixel range, FAD input scale and x10^4, KVD centring, "
               "AV-Align formula, ImageBind's in-place audio centring); recorded in the protocol block")
    _flag(parser, "protocol", choices=("custom", "paper"), default="custom",
          help="paper: pin the v0.1 paper's settings (16 frames, 224 px, 4 s audio, 2.0/1.5 s windows) and warn "
               "about samples that do not fit them; custom (default): the flags' values")
    _flag(parser, "checkpoint-dir", default=DEFAULT_CHECKPOINT_DIR,
          help="folder holding the networks' published files (i3d_pretrained_400.pt, AudioCLIP-Full-Training.pt, "
               "imagebind_huge.pth, cavp_epoch66.ckpt, open_clip_model.safetensors, clap-htsat-unfused/); "
               f"default {DEFAULT_CHECKPOINT_DIR}")
    _flag(parser, "download", action="store_true",
          help="fetch missing network files from their published sources into --checkpoint-dir (about 6 GB in "
               "all, ImageBind-Huge is 4.5 GB); without it a missing file stops the run with one line saying "
               "what to download")
    _flag(parser, "network-size", choices=("full", "tiny"), default="full",
          help="full (default): the published architectures; tiny: shrunken ones, for smoke tests of the "
               "pipeline with random checkpoints (scores are meaningless)")
    _flag(parser, "device", default=None, help="cpu or cuda (default: cuda when available)")


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="scripts/eval/javisbench.py",
        description="Evaluate generated sounding videos on JavisBench (FVD, KVD, FAD, TV/TA/AV-IB, CLIP, CLAP, "
                    "CAVP, AVHScore, JavisScore, AV-Align). Run with torchrun to share the rows between processes.")
    _flag(parser, "input-file", required=True,
          help="benchmark CSV: `text` (required), `audio_text`, `path`/`audio_path` (ground truth), cat0_ind..cat4_ind")
    _flag(parser, "infer-data-dir", default=None,
          help="folder of samples named by CSV row index: sample_0000.mp4 (+ sample_0000.wav, else the mp4's "
               "own audio track); without it the CSV's pred_video_path/pred_audio_path columns are read")
    _flag(parser, "output-file", required=True,
          help="result JSON, rewritten after each metric group; metrics already in it are skipped (resume); "
               "a .md and a .csv report are written beside it")
    _flag(parser, "metrics", nargs="+", default=["all"],
          help=f"metric groups: all (default), {', '.join(GROUPS)}")
    _flag(parser, "exclude", nargs="+", default=[], help="groups or single metrics to skip, e.g. cavp_score")
    _flag(parser, "eval-num", type=int, default=None, help="evaluate only the first N rows")
    _flag(parser, "verbose", action="store_true", help="per-category breakdown from the cat*_ind columns")
    _flag(parser, "window-size-s", type=float, default=None,
          help=f"JavisScore window (default {DEFAULTS['window_size_s']} s)")
    _flag(parser, "window-overlap-s", type=float, default=None,
          help=f"JavisScore window overlap (default {DEFAULTS['window_overlap_s']} s)")
    _flag(parser, "fvd-avcache-path", default=None,
          help="ground-truth I3D/AudioCLIP feature cache (e.g. JavisBench-vanilla-max4s.pt); without it the "
               "features of the CSV's `path` clips are computed")
    _flag(parser, "eval-gt", action="store_true", help="score the ground-truth clips themselves (not with FVD)")
    _flag(parser, "force-eval", action="store_true", help="recompute metrics already in --output-file")
    _flag(parser, "save-per-sample", action="store_true", help="also write <output>_per_sample.csv")
    _flag(parser, "allow-missing", action="store_true",
          help="evaluate the rows whose sample exists (or decodes) and count the others, instead of stopping")
    _common(parser)
    return parser


def build_reference_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="scripts/eval/extract_reference.py",
        description="Extract the ground-truth I3D (FVD/KVD) and AudioCLIP (FAD) features of real clips into a "
                    "cache for --fvd-avcache-path (the layout of JavisBench-vanilla-max4s.pt).")
    source = parser.add_mutually_exclusive_group(required=True)
    source.add_argument("--input-file", "--input_file",
                        help="CSV whose `path` (and `audio_path`) columns name the real clips; row i -> cache row i")
    source.add_argument("--data-dir", "--data_dir", help="folder of real .mp4 clips (sorted by name)")
    _flag(parser, "output-file", required=True, help="the cache to write (.pt)")
    _common(parser)
    return parser


def settings_from(args: argparse.Namespace, eval_gt: bool = False, eval_num: int | None = None) -> Settings:
    explicit = {k: getattr(args, k, None) for k in DEFAULTS}
    rest = dict(mode=args.mode, network_size=args.network_size, eval_gt=eval_gt, eval_num=eval_num)
    if args.protocol == "paper":
        return paper_settings(explicit, **rest)
    values = {k: (v if v is not None else DEFAULTS[k]) for k, v in explicit.items()}
    return Settings(protocol="custom", **values, **rest)


def _split(values: Sequence[str]) -> tuple[str, ...]:
    return tuple(v for value in values for v in value.split(",") if v)


def _run(function, argv, parser) -> int:
    from javisdit.distributed import init_distributed, shutdown
    from javisdit.utils.logging import setup_logging

    try:
        args = parser.parse_args(argv)
        info = init_distributed(prefer_cuda=args.device != "cpu")
        setup_logging(rank=info.rank)
        device = info.device if args.device is None or args.device == info.device.type else None
        if device is None:
            import torch

            if args.device == "cuda" and not torch.cuda.is_available():
                raise UserError("--device cuda: no CUDA device is visible")
            device = torch.device(args.device)
        function(args, info, device)
    except UserError as err:
        sys.stderr.write(f"error: {err}\n")
        return 2
    finally:
        shutdown()
    return 0


def _evaluate(args, info, device) -> None:
    from javisdit.eval.javisbench import Evaluation, Options

    settings = settings_from(args, eval_gt=args.eval_gt, eval_num=args.eval_num)
    options = Options(input_file=args.input_file, output_file=args.output_file, settings=settings,
                      infer_data_dir=args.infer_data_dir, metrics=_split(args.metrics), exclude=_split(args.exclude),
                      verbose=args.verbose, fvd_avcache_path=args.fvd_avcache_path, force_eval=args.force_eval,
                      save_per_sample=args.save_per_sample, allow_missing=args.allow_missing,
                      checkpoint_dir=args.checkpoint_dir, download=args.download)
    results = Evaluation(options, info.rank, info.world_size, device).run()
    if info.rank == 0:
        from javisdit.eval.report import TITLES, overall

        for key, title in TITLES.items():
            if key in results:
                value = overall(results[key])
                sys.stdout.write(f"{title:>10s} ({key}): {'n/a' if value is None else f'{value:.6g}'}\n")
        for warning in results.get("protocol", {}).get("warnings", []):
            logger.warning("%s", warning)


def _extract(args, info, device) -> None:
    from pathlib import Path

    from javisdit.eval.groups import Networks
    from javisdit.eval.inputs import Row, read_rows
    from javisdit.eval.reference import extract_reference

    settings = settings_from(args)
    if args.input_file:
        rows, _ = read_rows(args.input_file, eval_gt=True)
        rows = [Row(r.index, r.text, r.audio_text, r.video, r.audio, str(r.video), str(r.audio or r.video))
                for r in rows]
    else:
        folder = Path(args.data_dir)
        clips = sorted(folder.glob("*.mp4")) if folder.is_dir() else []
        if not clips:
            raise UserError(f"--data-dir {folder}: no .mp4 clips found")
        rows = []
        for i, clip in enumerate(clips):
            wav = clip.with_suffix(".wav")
            rows.append(Row(i, "", "", clip, None, str(clip), str(wav) if wav.is_file() else str(clip)))
    if info.world_size > 1:
        raise UserError("extract_reference.py runs in one process (launch it without torchrun)")
    extract_reference(rows, Networks(args.checkpoint_dir, args.network_size, device, args.download), settings,
                      args.output_file)


def main(argv: Sequence[str] | None = None) -> int:
    return _run(_evaluate, argv, build_parser())


def main_reference(argv: Sequence[str] | None = None) -> int:
    return _run(_extract, argv, build_reference_parser())
