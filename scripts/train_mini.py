"""Train JavisDiT-mini from scratch, every stage in order (javisdit/training/mini_recipe.py):

    python scripts/train_mini.py [OUT=runs/mini-recipe] [--stages data text ...] [--release-to assets/javisdit-mini]

data -> text (frozen random encoders) -> vae_video -> vae_audio -> video_branch -> stage1_audio ->
stage2_prior -> stage3_jav -> release (fp16, the layout of assets/javisdit-mini). Rerun the same command
after an interruption: finished stages are skipped, an interrupted one resumes from its last checkpoint.
"""

import argparse
import shutil
import sys
from pathlib import Path

from javisdit.errors import UserError
from javisdit.training.mini_recipe import STAGE_NAMES, Recipe
from javisdit.utils.logging import setup_logging


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter,
                                     allow_abbrev=False)
    parser.add_argument("out", nargs="?", default="runs/mini-recipe", help="the recipe's folder")
    parser.add_argument("--stages", nargs="+", default=list(STAGE_NAMES), choices=STAGE_NAMES, metavar="STAGE",
                        help=f"stages to run, of: {' '.join(STAGE_NAMES)} (default: all)")
    parser.add_argument("--num-clips", type=int, default=3000, help="clips of the data set, held-out ones included")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--steps-scale", type=float, default=1.0,
                        help="multiply every stage's max_steps (at least 2 each): for a quick check of the recipe")
    parser.add_argument("--release-to", default=None, metavar="FOLDER",
                        help="after the release stage, copy it here (e.g. assets/javisdit-mini)")
    args = parser.parse_args(argv)
    setup_logging()
    recipe = Recipe(Path(args.out), num_clips=args.num_clips, seed=args.seed, steps_scale=args.steps_scale)
    try:
        times = recipe.run(args.stages)
    except UserError as err:
        sys.stderr.write(f"error: {err}\n")
        return 2
    for name, seconds in times.items():
        print(f"{name:>14}: {seconds / 60:6.1f} min")
    print(f"{'total':>14}: {sum(times.values()) / 60:6.1f} min")
    if args.release_to:
        target = Path(args.release_to)
        shutil.rmtree(target, ignore_errors=True)
        shutil.copytree(Path(args.out) / "release", target)
        print(f"released to {target}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
