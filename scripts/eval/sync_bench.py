"""The JavisDiT-mini synchronisation benchmark, data baselines: ``python scripts/eval/sync_bench.py
--data-csv data/mini/heldout.csv --output-file runs/sync_bench.json [--num-clips 100] [--seed 0]``.

Writes the JSON (with its protocol) and a Markdown table beside it: the clips as they are (the ceiling),
with another clip's audio (chance), and the AUROC of each measure on sync/async pairs."""

import argparse
import json
import sys
from pathlib import Path

from javisdit.errors import UserError


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--data-csv", required=True, help="a CSV of make_mini_data.py (e.g. heldout.csv)")
    parser.add_argument("--output-file", required=True, help="result JSON; the .md table is written beside it")
    parser.add_argument("--num-clips", type=int, default=None, help="the first N rows (default: all)")
    parser.add_argument("--seed", type=int, default=0, help="seed of the shifts and swaps")
    args = parser.parse_args(argv)
    from javisdit.eval.sync_bench import data_baselines, markdown

    try:
        if not Path(args.data_csv).is_file():
            raise UserError(f"--data-csv {args.data_csv}: no such file")
        results = data_baselines(args.data_csv, args.num_clips, args.seed)
    except UserError as err:
        sys.stderr.write(f"error: {err}\n")
        return 2
    out = Path(args.output_file)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(results, indent=2) + "\n")
    out.with_suffix(".md").write_text(markdown(results))
    sys.stdout.write(markdown(results))
    return 0


if __name__ == "__main__":
    sys.exit(main())
