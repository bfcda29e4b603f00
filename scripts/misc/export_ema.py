"""Write the averaged (EMA) weights of a training checkpoint as a model folder that ``--ckpt-path`` reads:
``python scripts/misc/export_ema.py runs/NNN-<Model>[/epochEEE-global_stepS] OUT_FOLDER``."""

import argparse
import sys

from javisdit.errors import UserError
from javisdit.training.checkpoint import export_ema


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, allow_abbrev=False)
    parser.add_argument("checkpoint", help="a training checkpoint folder, or a run folder (its latest checkpoint)")
    parser.add_argument("out", help="the model folder to write (config.json + model.safetensors)")
    args = parser.parse_args(argv)
    try:
        folder = export_ema(args.checkpoint, args.out)
    except UserError as err:
        sys.stderr.write(f"error: {err}\n")
        return 2
    print(f"wrote {folder}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
