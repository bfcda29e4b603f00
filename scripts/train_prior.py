"""Train stage 2, the ST-prior estimator:
``torchrun --standalone --nproc_per_node N scripts/train_prior.py CONFIG [flags]`` (see README.md)."""

import sys

from javisdit.cli import main

if __name__ == "__main__":
    sys.exit(main("train_prior", prog="scripts/train_prior.py"))
