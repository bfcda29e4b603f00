"""A PNG of one bouncing-ball clip's synchronisation (javisdit/eval/sync_figure.py): frames taken evenly
over the clip, the ball's height over time with ticks at its detected bounces, and the sound's envelope
with ticks at its detected onsets.

    python scripts/eval/sync_figure.py samples/mini/sample_0000.mp4 --colour red --output-file frame.png
"""

import argparse
import sys

from javisdit.errors import UserError


def main(argv=None) -> int:
    from javisdit.datasets.bouncing import COLOURS

    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter,
                                     allow_abbrev=False)
    parser.add_argument("video", help="an mp4 with its sound (e.g. written by scripts/inference.py)")
    parser.add_argument("--colour", nargs="+", required=True, choices=sorted(COLOURS), help="the balls' colours")
    parser.add_argument("--output-file", required=True, help="the PNG to write")
    parser.add_argument("--num-frames", type=int, default=8, help="frames in the strip")
    args = parser.parse_args(argv)
    from javisdit.eval.media import load_sample
    from javisdit.eval.sync_figure import sync_figure
    from javisdit.inference.media import write_png

    try:
        if args.num_frames < 1:
            raise UserError(f"--num-frames must be >= 1, got {args.num_frames}")
        sample = load_sample(args.video)
        if sample.num_frames < 2:
            raise UserError(f"{args.video}: {sample.num_frames} frame; the picture needs at least 2")
        figure = sync_figure(sample.frames, sample.fps, sample.audio.mean(0), sample.sample_rate,
                             [COLOURS[c] for c in args.colour], num_frames=args.num_frames)
    except UserError as err:
        sys.stderr.write(f"error: {err}\n")
        return 2
    write_png(args.output_file, figure)
    print(f"wrote {args.output_file} ({figure.shape[1]}x{figure.shape[0]})")
    return 0


if __name__ == "__main__":
    sys.exit(main())
