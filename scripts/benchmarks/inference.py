"""Benchmark inference end to end on this machine with a config (default: the tiny one): wall time and
peak memory, and the share of each phase (load, encode, sample, decode, write).

    python scripts/benchmarks/inference.py [CONFIG] [--steps 30] [--prompts 2]
"""

from __future__ import annotations

import argparse
import resource
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("config", nargs="?", default=str(REPO / "configs" / "tiny" / "inference.py"))
    parser.add_argument("--steps", type=int, default=30)
    parser.add_argument("--prompts", type=int, default=2)
    args = parser.parse_args()

    from javisdit.config import parse_configs
    from javisdit.inference import run

    with tempfile.TemporaryDirectory() as out:
        prompts = [f"a dog barks at a passing train, take {i}" for i in range(args.prompts)]
        cfg = parse_configs("inference", [args.config, "--prompt", *prompts, "--save-dir", out, "--verbose", "0",
                                          "--num-sampling-steps", str(args.steps)])
        start = time.perf_counter()
        report = run(cfg)
        wall = time.perf_counter() - start
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024**2
    print(f"{args.config}: {len(report.written)} sample(s), {args.steps} steps, wall {wall:.2f} s, peak RSS {peak:.2f} GB")
    for phase, seconds in report.seconds.items():
        print(f"  {phase:7s} {seconds:7.2f} s  {100 * seconds / wall:5.1f} %")
    return 0


if __name__ == "__main__":
    sys.exit(main())
