"""Pre-extract the VAE latents of a CSV's clips for the ``_feat`` training configs:
``python scripts/misc/extract_feat.py CONFIG --data-path CSV --save-dir DIR [--start-index S] [--end-index E]``
(several GPUs: ``torchrun --standalone --nproc_per_node N scripts/misc/extract_feat.py ...``; see data/README.md)."""

import sys

from javisdit.cli import main

if __name__ == "__main__":
    sys.exit(main("extract", prog="scripts/misc/extract_feat.py"))
