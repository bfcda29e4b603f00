"""Fewer denoiser calls in sampling: what step caching (``scheduler.cache_threshold``) and the cosine
step spacing (``scheduler.timestep_spacing``) save, and how far their samples move from the exact sampler.

For one config (default: the tiny one, random weights), fixed prompts and seed, each variant samples the
same noise and prior as the exact sampler (linear spacing, every step computed, ``--steps`` steps) and
is compared with it: denoiser calls, sampling wall time (and the speed-up next to the ideal one,
exact calls / calls), relative L2 of the final latents per modality, and the PSNR of the decoded video
frames (uint8) against the exact sampler's. Fewer-step rows compare linear and cosine spacing at the
same counts (plain fewer steps is the baseline any cheaper sampler must beat).

    python scripts/benchmarks/sampling.py [--config CONFIG] [--steps 30] [--thresholds 0.05 0.1 0.2]
        [--few-steps 10 15] [--threads N] [--json out.json] [--cfg-options key=value ...]

On random weights the velocity field is not a trained one: the figures say what the sampler does to the
integration, not what a trained model's samples look like; run it with a trained config for that.
"""

from __future__ import annotations

import argparse
import json
import math
import os
import platform
import sys
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(REPO))
TINY = str(REPO / "configs" / "tiny" / "inference.py")
PROMPTS = ["a dog barks at a passing train"]


def machine(device) -> dict:
    """Where the run happened: CPU, threads, torch version and the GPU if one was used."""
    import torch

    info = dict(machine=platform.machine(), processor=platform.processor() or platform.machine(),
                cpus=os.cpu_count(), torch_threads=torch.get_num_threads(), torch=torch.__version__,
                device=str(device))
    if device.type == "cuda":
        info["gpu"] = torch.cuda.get_device_name(device)
    return info


class Recorder:
    """Stands in for the scheduler inside one ``generate``: keeps the final latents, and adds up the
    denoiser calls and the wall time (GPU work included) of its sampling passes (two with
    ``audio_after_video``)."""

    def __init__(self, scheduler):
        self.scheduler, self.latents, self.seconds, self.calls = scheduler, None, 0.0, 0

    def sample(self, *args, **kwargs):
        import torch

        start = time.perf_counter()
        self.latents = self.scheduler.sample(*args, **kwargs)
        if torch.cuda.is_available():
            torch.cuda.synchronize()
        self.seconds += time.perf_counter() - start
        self.calls += self.scheduler.last_calls
        return self.latents


def relative_l2(a, b) -> float:
    """||a - b|| / ||b|| over the whole batch, in fp64."""
    return float((a.double() - b.double()).norm() / b.double().norm().clamp_min(1e-30))


def psnr_uint8(a, b) -> float:
    """PSNR (dB, peak 255) between two uint8 frame arrays; inf when identical."""
    import numpy as np

    mse = float(np.mean((a.astype(np.float64) - b.astype(np.float64)) ** 2))
    return math.inf if mse == 0 else 10 * math.log10(255.0**2 / mse)


def variants(steps: int, thresholds: list[float], few_steps: list[int]) -> list[tuple[str, dict]]:
    """(row name, scheduler overrides); the first is the exact sampler every row is compared with."""
    exact = dict(num_sampling_steps=steps, cache_threshold=0.0, timestep_spacing="linear")
    rows = [(f"exact, {steps} steps", exact)]
    rows += [(f"cache {t:g}, {steps} steps", {**exact, "cache_threshold": t}) for t in thresholds]
    for n in few_steps:
        rows += [(f"{spacing}, {n} steps", {**exact, "num_sampling_steps": n, "timestep_spacing": spacing})
                 for spacing in ("linear", "cosine")]
    return rows


def run(args) -> dict:
    import torch

    from javisdit.config import parse_configs
    from javisdit.inference.media import to_uint8_frames
    from javisdit.inference.pipeline import build_models, generate, process_prompt
    from javisdit.registry import SCHEDULERS, build_module
    from javisdit.sizes import get_clip_size
    from javisdit.utils.dtype import torch_dtype
    from javisdit.utils.seed import set_seed

    device = torch.device(args.device or ("cuda" if torch.cuda.is_available() else "cpu"))
    if args.threads or device.type == "cpu":
        torch.set_num_threads(args.threads or 1)
    argv = [args.config, "--prompt", *args.prompt] + (["--cfg-options", *args.cfg_options] if args.cfg_options else [])
    cfg = parse_configs("inference", argv)
    dtype = torch_dtype(cfg.dtype)
    clip = get_clip_size(cfg.num_frames, cfg.resolution, cfg.aspect_ratio, cfg.get("image_size"), int(cfg.fps))
    set_seed(int(cfg.seed))  # random-weight configs build the same model every run
    gen = build_models(cfg, device, dtype)
    texts = [process_prompt(p, cfg) for p in args.prompt]
    text = gen.text_encoder.encode(texts, device=device)
    base = dict(cfg.scheduler)

    def sample(overrides: dict):
        scheduler = build_module({**base, **overrides}, SCHEDULERS)
        gen.scheduler = recorder = Recorder(scheduler)
        generators = [torch.Generator().manual_seed(args.seed + i) for i in range(len(texts))]
        video, _ = generate(gen, texts, clip, int(cfg.fps), dtype, generators, text=text, device=device)
        frames = [to_uint8_frames(v) for v in video] if video is not None else None
        return recorder.latents, frames, recorder.calls, recorder.seconds

    sample(dict(num_sampling_steps=1, cache_threshold=0.0))  # warm-up: first-call allocations stay out of timings
    result = dict(machine=machine(device), config=args.config, clip=dict(zip(("frames", "height", "width"), clip)),
                  prompts=args.prompt, seed=args.seed, rows=[])
    reference = None
    for name, overrides in variants(args.steps, args.thresholds, args.few_steps):
        latents, frames, calls, seconds = sample(overrides)
        if reference is None:
            reference = (latents, frames, calls, seconds)
        ref_latents, ref_frames, ref_calls, ref_seconds = reference
        row = dict(variant=name, calls=calls, seconds=round(seconds, 3),
                   speedup=round(ref_seconds / seconds, 2), ideal_speedup=round(ref_calls / calls, 2))
        for k in latents:
            row[f"rel_l2_{k}"] = relative_l2(latents[k], ref_latents[k])
        if frames is not None:
            psnr = min(psnr_uint8(a, b) for a, b in zip(frames, ref_frames))
            row["psnr_video_db"] = None if math.isinf(psnr) else round(psnr, 2)  # None: identical frames
        result["rows"].append(row)
    return result


def markdown(result: dict) -> str:
    """The rows as a Markdown table (PSNR: the worst sample of the batch)."""
    modalities = [k[len("rel_l2_"):] for k in result["rows"][0] if k.startswith("rel_l2_")]
    has_video = "psnr_video_db" in result["rows"][0]
    head = ["variant", "denoiser calls", "sampling s", "speed-up (ideal)", *[f"rel L2 {k}" for k in modalities]]
    head += ["video PSNR dB"] if has_video else []
    lines = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    for row in result["rows"]:
        cells = [row["variant"], str(row["calls"]), f"{row['seconds']:.2f}",
                 f"{row['speedup']:.2f}x ({row['ideal_speedup']:.2f}x)"]
        cells += [f"{row[f'rel_l2_{k}']:.4f}" for k in modalities]
        if has_video:
            cells.append("identical" if row["psnr_video_db"] is None else f"{row['psnr_video_db']:.1f}")
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines)


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--config", default=TINY, help="an inference config (default: the tiny one)")
    parser.add_argument("--prompt", nargs="+", default=PROMPTS, help="prompts, sampled as one batch")
    parser.add_argument("--seed", type=int, default=0, help="prompt i samples from seed + i")
    parser.add_argument("--steps", type=int, default=30, help="steps of the exact sampler and the cached rows")
    parser.add_argument("--thresholds", type=float, nargs="+", default=[0.05, 0.1, 0.2], help="cache thresholds")
    parser.add_argument("--few-steps", type=int, nargs="+", default=[10, 15], help="step counts of the spacing rows")
    parser.add_argument("--threads", type=int, help="torch CPU threads (default on CPU: 1, as the tiny config's "
                        "tensors gain nothing from more and lose much on shared cores)")
    parser.add_argument("--device", help="cuda or cpu (default: cuda when available)")
    parser.add_argument("--json", help="also write the figures here")
    parser.add_argument("--cfg-options", nargs="+", help="config overrides, as for scripts/inference.py")
    args = parser.parse_args(argv)

    from javisdit.utils.logging import setup_logging

    setup_logging()
    start = time.perf_counter()
    result = run(args)
    m = result["machine"]
    print(f"machine: {m['processor']} ({m['cpus']} CPUs), torch {m['torch']} with {m['torch_threads']} threads, "
          f"device {m.get('gpu', m['device'])}")
    clip = result["clip"]
    print(f"config {Path(args.config).name}: {clip['frames']} frames at {clip['height']}x{clip['width']}, "
          f"{len(args.prompt)} prompt(s), seed {args.seed}; benchmark wall {time.perf_counter() - start:.1f} s\n")
    print(markdown(result))
    if args.json:
        Path(args.json).write_text(json.dumps(result, indent=2) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
