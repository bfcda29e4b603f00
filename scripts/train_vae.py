"""Train the video or the audio autoencoder from scratch (the config's ``autoencoder``), the stage before
stage 1: ``torchrun --standalone --nproc_per_node N scripts/train_vae.py CONFIG [flags]``
(see ``javisdit/training/autoencoder.py``)."""

import sys

from javisdit.cli import main

if __name__ == "__main__":
    sys.exit(main("train_vae", prog="scripts/train_vae.py"))
