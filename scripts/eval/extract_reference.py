"""Ground-truth FVD/KVD/FAD features of real clips into a cache for ``--fvd-avcache-path``:
``python scripts/eval/extract_reference.py --input-file CSV --output-file cache.pt``; see README.md."""

import sys

from javisdit.eval.cli import main_reference

if __name__ == "__main__":
    sys.exit(main_reference())
