"""Write synthetic sounding videos (bouncing balls that click) and their training CSVs:
``python scripts/data/make_synthetic.py OUT_DIR [--num-clips 8] [--seconds 4.25] [--size 144 256] [--fps 24]``."""

import argparse
import sys

from javisdit.datasets.synthetic import make_synthetic_dataset


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("out_dir")
    parser.add_argument("--num-clips", type=int, default=8)
    parser.add_argument("--seconds", type=float, default=4.25)
    parser.add_argument("--size", type=int, nargs=2, default=(144, 256), metavar=("H", "W"))
    parser.add_argument("--fps", type=int, default=24)
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()
    paths = make_synthetic_dataset(args.out_dir, args.num_clips, args.seconds, args.fps, *args.size, seed=args.seed)
    for name, path in paths.items():
        print(f"{name}: {path}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
