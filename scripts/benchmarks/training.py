"""Benchmark the training stages with the tiny configs on synthetic clips, launched as a user would
(``python scripts/train*.py`` for one process, ``torchrun`` for several): steps/s and samples/s,
peak memory of rank 0, and the share of each step spent waiting for data, in forward + backward, and
in the optimizer step (+ EMA). The first ``--warmup`` steps are left out of the averages.

    python scripts/benchmarks/training.py [--stages 1 2 3] [--procs 1 2] [--steps 12] [--workers 2]
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]
STAGES = {
    1: ("train.py", "stage1_audio.py", "stage1_audio"),
    2: ("train_prior.py", "stage2_prior.py", "stage2_prior"),
    3: ("train.py", "stage3_jav.py", "stage3_jav"),
}
PHASES = ("time/data", "time/forward_backward", "time/optimizer")


def run_stage(stage: int, procs: int, csv: Path, tmp: Path, args) -> dict[str, float]:
    script, config, _ = STAGES[stage]
    outputs = tmp / f"stage{stage}_p{procs}"
    config_file = tmp / f"stage{stage}_p{procs}.py"
    config_file.write_text(f'_base_ = ["{REPO / "configs" / "tiny" / config}"]\n'
                           f'bucket_config = {{"_delete_": True, "144p": {{17: (1.0, {args.batch_size})}}}}\n')
    launcher = [sys.executable] if procs == 1 else [sys.executable, "-m", "torch.distributed.run", "--standalone",
                                                    "--nproc_per_node", str(procs)]
    command = [*launcher, str(REPO / "scripts" / script), str(config_file), "--data-path", str(csv), "--outputs",
               str(outputs), "--cfg-options", "epochs=100000", "ckpt_every=0", f"max_steps={args.steps}",
               f"num_workers={args.workers}", "prefetch_factor=2" if args.workers else "prefetch_factor=None"]
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    start = time.perf_counter()
    result = subprocess.run(command, cwd=REPO, env=env, capture_output=True, text=True, check=False)
    wall = time.perf_counter() - start
    if result.returncode != 0:
        raise SystemExit(f"stage {stage} with {procs} process(es) failed:\n{result.stderr[-3000:]}")
    (run,) = [p for p in outputs.iterdir() if p.is_dir()]
    rows = [json.loads(line) for line in (run / "metrics.jsonl").read_text().splitlines()][args.warmup:]
    step = {k: sum(r[k] for r in rows) / len(rows) for k in PHASES}
    seconds = sum(step.values())
    return dict(wall=wall, steps_per_s=1 / seconds, samples_per_s=args.batch_size * procs / seconds,
                memory_gb=max(r["memory_gb"] for r in rows), **{k: step[k] / seconds for k in PHASES})


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--stages", type=int, nargs="+", default=[1, 2, 3], choices=sorted(STAGES))
    parser.add_argument("--procs", type=int, nargs="+", default=[1, 2])
    parser.add_argument("--steps", type=int, default=12)
    parser.add_argument("--warmup", type=int, default=2)
    parser.add_argument("--workers", type=int, default=2, help="DataLoader workers per process")
    parser.add_argument("--batch-size", type=int, default=2, help="clips per process and step")
    parser.add_argument("--clips", type=int, default=8)
    args = parser.parse_args()

    sys.path.insert(0, str(REPO))
    from javisdit.datasets.synthetic import make_synthetic_dataset

    with tempfile.TemporaryDirectory() as tmp_dir:
        tmp = Path(tmp_dir)
        data = make_synthetic_dataset(tmp / "data", num_clips=args.clips, seconds=2.2, seed=0)
        print(f"tiny configs, {args.clips} synthetic clips (144x256, 17 frames a sample), {args.batch_size} clip(s) "
              f"per process and step, {args.workers} worker(s) per process, {args.steps} steps "
              f"({args.warmup} left out), {os.cpu_count()} CPU core(s)")
        print(f"{'stage':>5} {'procs':>5} {'steps/s':>8} {'samples/s':>9} {'peak GB':>8} {'data':>6} {'fwd+bwd':>8} "
              f"{'optim':>6} {'wall s':>7}")
        for stage in args.stages:
            for procs in args.procs:
                r = run_stage(stage, procs, data[STAGES[stage][2]], tmp, args)
                print(f"{stage:>5} {procs:>5} {r['steps_per_s']:>8.2f} {r['samples_per_s']:>9.2f} "
                      f"{r['memory_gb']:>8.2f} {100 * r['time/data']:>5.1f}% {100 * r['time/forward_backward']:>7.1f}% "
                      f"{100 * r['time/optimizer']:>5.1f}% {r['wall']:>7.1f}", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
