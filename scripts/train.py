"""Train stage 1 (audio branch) or stage 3 (synchronisation modules):
``torchrun --standalone --nproc_per_node N scripts/train.py CONFIG [flags]`` (see README.md)."""

import sys

from javisdit.cli import main

if __name__ == "__main__":
    sys.exit(main("train", prog="scripts/train.py"))
