"""The JavisDiT-mini synchronisation benchmark (javisdit/eval/sync_bench.py):

    python scripts/eval/sync_bench.py --data-csv data/mini/heldout.csv --output-file runs/sync_bench.json \\
        [--num-clips 100] [--config configs/mini/inference.py --num-generated 50] [--seed 0]

Writes the JSON (with its protocol) and a Markdown table beside it. Data rows: the clips as they are (the
ceiling), with another clip's audio (chance), and the AUROC of each sync measure on sync/async pairs. With
--config, clips generated from the held-out captions by the model and by its ablations (null ST-prior, no
video-audio cross-attention, neither), and the model's videos with swapped audio (chance); with
--autoencoders as well, the clips through the config's two autoencoders (what the model can at best give)."""

import argparse
import json
import sys
from pathlib import Path

from javisdit.errors import UserError


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter,
                                     allow_abbrev=False)
    parser.add_argument("--data-csv", required=True, help="a CSV of make_mini_data.py (e.g. heldout.csv)")
    parser.add_argument("--output-file", required=True, help="result JSON; the .md table is written beside it")
    parser.add_argument("--num-clips", type=int, default=None, help="data rows: the first N clips (default: all)")
    parser.add_argument("--seed", type=int, default=0, help="seed of the shifts and swaps; clip i is generated with seed + i")
    parser.add_argument("--config", default=None, help="an inference config (e.g. configs/mini/inference.py): add "
                        "the rows of generated clips")
    parser.add_argument("--num-generated", type=int, default=50, help="captions generated per condition (0: none)")
    parser.add_argument("--autoencoders", action="store_true", help="with --config: add the row of the first "
                        "--num-clips clips (default 50) through the config's two autoencoders (the model's ceiling)")
    parser.add_argument("--conditions", nargs="+", default=None, metavar="NAME",
                        help="generated conditions to run (default: all; see CONDITIONS in javisdit/eval/sync_bench.py)")
    parser.add_argument("--batch-size", type=int, default=10, help="captions per generation batch")
    parser.add_argument("--save-dir", default=None, help="keep the generated mp4s here, a folder per condition")
    parser.add_argument("--cfg-options", nargs="+", default=[], metavar="KEY=VALUE",
                        help="overrides of the inference config, e.g. scheduler.num_sampling_steps=10")
    args = parser.parse_args(argv)
    from javisdit.eval.sync_bench import CONDITIONS, autoencoded_rows, data_baselines, generated_rows, markdown
    from javisdit.utils.logging import setup_logging

    setup_logging()
    try:
        if not Path(args.data_csv).is_file():
            raise UserError(f"--data-csv {args.data_csv}: no such file")
        results = data_baselines(args.data_csv, args.num_clips, args.seed)
        if args.config is not None:
            from javisdit.config import parse_configs

            cfg = parse_configs("inference", [args.config, *(["--cfg-options", *args.cfg_options]
                                                             if args.cfg_options else [])])
            if args.autoencoders:
                results.update(autoencoded_rows(cfg, args.data_csv, args.num_clips or 50))
            protocol = {"data": results.pop("protocol")}
            if args.num_generated > 0:
                generated = generated_rows(cfg, args.data_csv, args.num_generated, args.seed, args.batch_size,
                                           args.conditions or tuple(CONDITIONS), args.save_dir)
                protocol["generated"] = generated.pop("protocol")
                results.update(generated)
            results["protocol"] = protocol
        elif args.autoencoders:
            raise UserError("--autoencoders needs --config (the autoencoders are the config's vae and audio_vae)")
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
