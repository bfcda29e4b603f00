"""Evaluate generated sounding videos on JavisBench: ``python scripts/eval/javisbench.py --input-file CSV
--infer-data-dir DIR --output-file OUT.json`` (or with ``torchrun``); see README.md, "Evaluation"."""

import sys

from javisdit.eval.cli import main

if __name__ == "__main__":
    sys.exit(main())
