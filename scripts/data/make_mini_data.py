"""Write the JavisDiT-mini data: captioned bouncing-ball sounding videos with exact impact times, and their
CSVs for every training stage plus a held-out set (schema: data/mini.md).

    python scripts/data/make_mini_data.py OUT_DIR [--num-clips 3000] [--seconds 2] [--size 64 64] [--fps 24]
        [--seed 0] [--workers 2] [--unseen 0]

The same flags write byte-identical files, whatever --workers. Height and width must be multiples of 8.
"""

import argparse
import sys

from javisdit.datasets.bouncing import make_mini_dataset, make_unseen_clips
from javisdit.errors import UserError
from javisdit.utils.logging import setup_logging


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("out_dir")
    parser.add_argument("--num-clips", type=int, default=3000, help="clips in all, held-out ones included")
    parser.add_argument("--seconds", type=float, default=2.0, help="clip length (rounded to whole frames)")
    parser.add_argument("--size", type=int, nargs=2, default=(64, 64), metavar=("H", "W"),
                        help="frame size, multiples of 8, at least 32")
    parser.add_argument("--fps", type=int, default=24)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--workers", type=int, default=2, help="processes writing clips")
    parser.add_argument("--unseen", type=int, default=0, metavar="N",
                        help="also N test clips past the data set (numbered from --num-clips, never trained on) "
                             "whose balls are all of seen (colour, material) pairs: unseen.csv")
    args = parser.parse_args()
    setup_logging()
    try:
        paths = make_mini_dataset(args.out_dir, args.num_clips, args.seconds, args.fps, *args.size, seed=args.seed,
                                  workers=args.workers)
        if args.unseen:
            paths["unseen"] = make_unseen_clips(args.out_dir, args.num_clips, args.unseen, args.seconds, args.fps,
                                                *args.size, seed=args.seed, workers=args.workers)
    except UserError as err:
        sys.stderr.write(f"error: {err}\n")
        return 2
    for name, path in paths.items():
        print(f"{name}: {path}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
