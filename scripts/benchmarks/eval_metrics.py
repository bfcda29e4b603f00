"""Time and peak memory of each JavisBench metric group per clip, with random full-size networks.

    python scripts/benchmarks/eval_metrics.py [--seconds 4] [--groups all] [--device cpu]

Writes one synthetic clip (240x426, 24 fps, 16 kHz, ``--seconds`` long), saves random checkpoints of the
published architectures into a temporary folder, then runs each group of ``scripts/eval/javisbench.py``
on that clip and prints wall time, peak resident memory (sampled), and the measured FLOPs of the
networks' forwards. The JavisBench-mini estimate (1,000 clips) divides those FLOPs by the peak rate
measured for a matmul on this device and by a stated GPU rate for one GPU.
"""

from __future__ import annotations

import argparse
import json
import tempfile
import threading
import time
from pathlib import Path

import numpy as np
import psutil
import torch

GPU_TFLOPS_FP32 = 60.0  # an H100/H200-class GPU with TF32 convolutions: an assumption, printed with the estimate


class PeakRSS:
    """Samples this process's resident memory every 20 ms."""

    def __init__(self):
        self.process, self.peak, self._stop = psutil.Process(), 0, threading.Event()

    def __enter__(self):
        self.peak = self.process.memory_info().rss
        self._thread = threading.Thread(target=self._run, daemon=True)
        self._thread.start()
        return self

    def _run(self):
        while not self._stop.is_set():
            self.peak = max(self.peak, self.process.memory_info().rss)
            time.sleep(0.02)

    def __exit__(self, *exc):
        self._stop.set()
        self._thread.join()


def matmul_peak(device: torch.device, n: int = 2048, repeats: int = 5) -> float:
    a, b = torch.randn(n, n, device=device), torch.randn(n, n, device=device)
    torch.mm(a, b)
    start = time.perf_counter()
    for _ in range(repeats):
        torch.mm(a, b)
    if device.type == "cuda":
        torch.cuda.synchronize()
    return 2 * n**3 * repeats / (time.perf_counter() - start)


def write_clip(folder: Path, seconds: float) -> Path:
    from javisdit.datasets.synthetic import render_clip
    from javisdit.inference.media import write_mp4

    frames, wave, _ = render_clip(seconds, 24, 240, 426, "red", 0.6, 20, phase=0.1)
    path = folder / "sample_0000.mp4"
    write_mp4(path, frames, 24, wave, 16000)
    return path


def main() -> None:
    from torch.utils.flop_counter import FlopCounterMode

    from javisdit.eval.groups import GROUPS, Networks, compute
    from javisdit.eval.inputs import Row
    from javisdit.eval.media import load_sample
    from javisdit.eval.networks import audioclip, cavp, clap, clip, i3d, imagebind
    from javisdit.eval.protocol import Settings

    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--seconds", type=float, default=4.0)
    parser.add_argument("--groups", nargs="+", default=["all"], choices=["all", *GROUPS])
    parser.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    args = parser.parse_args()
    device = torch.device(args.device)
    groups = list(GROUPS) if "all" in args.groups else args.groups
    peak = matmul_peak(device)
    print(f"device {device}, {torch.get_num_threads()} threads; measured fp32 matmul peak {peak / 1e12:.3f} TFLOP/s")

    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        video = write_clip(tmp, args.seconds)
        ckpt = tmp / "ckpt"
        needed = {"fvd+kvd+fad": (i3d, audioclip), "imagebind-score": (imagebind,), "av-score": (imagebind,),
                  "cxxp-score": (clip, clap, cavp), "av-align": ()}
        for module in {m for g in groups for m in needed[g]}:
            name = module.__name__.rsplit(".", 1)[1]
            getattr(module, f"write_random_{name}")(ckpt, size="full", seed=0)
        sample = load_sample(video)
        row = Row(0, "a red ball bounces on the floor", "clicks", video, None)
        settings = Settings(network_size="full")
        rows = []
        for name in groups:
            nets = Networks(str(ckpt), "full", device)
            group = GROUPS[name]
            compute(group, group.keys, sample, row, nets, settings)  # loads the networks, warms up
            with PeakRSS() as memory, FlopCounterMode(display=False) as flops:
                start = time.perf_counter()
                compute(group, group.keys, sample, row, nets, settings)
                if device.type == "cuda":
                    torch.cuda.synchronize()
                seconds = time.perf_counter() - start
            total = flops.get_total_flops()
            rows.append(dict(group=name, seconds_per_clip=round(seconds, 2), peak_rss_gb=round(memory.peak / 2**30, 2),
                             gflops_per_clip=round(total / 1e9, 1),
                             mini_gpu_minutes=round(1000 * total / (GPU_TFLOPS_FP32 * 1e12) / 60, 2)))
            nets.release()
    print(f"{args.seconds:g} s clip, 240x426 at 24 fps; random full-size networks")
    print(f"{'group':<16} {'s/clip':>8} {'peak RSS GB':>12} {'GFLOP/clip':>11} {'mini@GPU min':>13}")
    for r in rows:
        print(f"{r['group']:<16} {r['seconds_per_clip']:>8} {r['peak_rss_gb']:>12} {r['gflops_per_clip']:>11} "
              f"{r['mini_gpu_minutes']:>13}")
    total_cpu = sum(r["seconds_per_clip"] for r in rows)
    print(f"JavisBench-mini (1,000 clips) on this CPU: {total_cpu * 1000 / 3600:.1f} h; on one GPU at "
          f"{GPU_TFLOPS_FP32:g} TFLOP/s (assumed, compute-bound): {sum(r['mini_gpu_minutes'] for r in rows):.1f} min "
          "plus decoding")
    print(json.dumps(rows))


if __name__ == "__main__":
    np.random.seed(0)
    main()
