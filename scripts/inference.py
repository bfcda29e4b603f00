"""Generate sounding videos from text: ``python scripts/inference.py CONFIG [flags]`` (see README.md)."""

import sys

from javisdit.cli import main

if __name__ == "__main__":
    sys.exit(main("inference", prog="scripts/inference.py"))
