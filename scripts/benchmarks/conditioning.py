"""What X-conditional generation costs on this machine: the wall time of each mode with the tiny config
(17 frames at 144p, random weights) next to plain text-to-sounding-video, and the time to encode a
reference (a 240p / 4 s video and its sound) with the full-size VAEs (random weights, fp32): the extra
work a conditioned sample does before sampling.

    python scripts/benchmarks/conditioning.py [--skip-full] [--repeats 2] [--json out.json]
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]
TINY = str(REPO / "configs" / "tiny" / "inference.py")
# name: keyword arguments of generate_conditioned (None: plain generation)
MODES = {
    "text only": None,
    "v2a": dict(mode="v2a", video="clip.mp4"),
    "a2v": dict(mode="a2v", audio="clip.wav"),
    "i2av": dict(mode="i2av", image="frame.png"),
    "ia2v": dict(mode="ia2v", image="frame.png", audio="clip.wav"),
    "interpolate": dict(mode="interpolate", video="clip.mp4"),
    "keep ranges (video 0-0.3 s, audio 0.3-0.6 s)": dict(video="clip.mp4", keep_video=[(0, 0.3)],
                                                        keep_audio=[(0.3, 0.6)]),
    "extend, --loop 2": "loop",
}


def _media(folder: Path, frames: int, height: int, width: int, fps: int = 24) -> None:
    import numpy as np

    from javisdit.inference.media import write_mp4, write_png, write_wav

    rng = np.random.default_rng(0)
    video = rng.integers(0, 256, (frames, height, width, 3), dtype=np.uint8)
    wave = (rng.standard_normal(round(frames / fps * 16000)) * 0.1).astype(np.float32)
    write_mp4(folder / "clip.mp4", video, fps, wave, 16000)
    write_wav(folder / "clip.wav", wave, 16000)
    write_png(folder / "frame.png", video[0])


def tiny_modes(repeats: int = 2) -> dict:
    import torch

    from javisdit.config import parse_configs
    from javisdit.inference.conditioning import generate_conditioned
    from javisdit.inference.extension import generate_extended
    from javisdit.inference.pipeline import build_models, generate
    from javisdit.sizes import get_clip_size

    cfg = parse_configs("inference", [TINY, "--prompt", "x"])
    clip = get_clip_size(cfg.num_frames, cfg.resolution, cfg.aspect_ratio, cfg.get("image_size"))
    gen = build_models(cfg, torch.device("cpu"), torch.float32)
    out = {"clip": dict(zip(("frames", "height", "width"), clip)), "sampling_steps": cfg.scheduler.num_sampling_steps}
    with tempfile.TemporaryDirectory() as tmp, torch.no_grad():
        folder = Path(tmp)
        _media(folder, clip[0], clip[1], clip[2])
        for name, spec in MODES.items():
            best = float("inf")
            for _ in range(repeats):
                generators = [torch.Generator().manual_seed(0)]
                start = time.perf_counter()
                if spec is None:
                    generate(gen, ["a dog barks"], clip, 24, torch.float32, generators)
                elif spec == "loop":
                    generate_extended(gen, ["a dog barks"], clip, 24, torch.float32, generators, loop=2)
                else:
                    files = {k: str(folder / v) if k in ("video", "audio", "image") else v for k, v in spec.items()}
                    generate_conditioned(gen, ["a dog barks"], clip, 24, torch.float32, [0], **files)
                best = min(best, time.perf_counter() - start)
            out[name] = round(best, 3)
            print(f"tiny, {name}: {best:.2f} s", flush=True)
    return out


def full_encode() -> dict:
    import torch

    from javisdit.inference.references import Reference, encode_references
    from javisdit.models import geometry
    from javisdit.registry import MODELS, build_module

    torch.manual_seed(0)
    frames, height, width = 102, 240, 426
    seconds = frames / 24
    vae = build_module(dict(type="OpenSoraVAE_V1_2", from_pretrained=None, preset="v1.2"), MODELS).eval()
    audio_vae = build_module(dict(type="AudioLDM2", from_pretrained=None, preset="audioldm2"), MODELS).eval()
    ref = Reference(video=torch.rand(3, frames, height, width) * 2 - 1,
                    audio=torch.randn(geometry.audio_samples(seconds)) * 0.1, video_seconds=seconds,
                    audio_seconds=seconds)
    out = {"clip": dict(frames=frames, height=height, width=width)}
    for name, (v, a) in {"video": (vae, None), "audio": (None, audio_vae)}.items():
        single = Reference(video=ref.video if v is not None else None, audio=ref.audio if a is not None else None,
                           video_seconds=seconds, audio_seconds=seconds)
        start = time.perf_counter()
        encode_references(v, a if a is not None else audio_vae, [single], seconds, "cpu", torch.float32)
        out[f"encode {name} (s)"] = round(time.perf_counter() - start, 2)
        print(f"full VAEs, encode the {name} of a 240p / 4 s reference: {out[f'encode {name} (s)']:.1f} s", flush=True)
    return out


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--skip-full", action="store_true", help="only the tiny-config modes")
    parser.add_argument("--repeats", type=int, default=2, help="runs per mode; the best is reported")
    parser.add_argument("--json", help="write the figures here")
    args = parser.parse_args(argv)
    result = {"cpus": os.cpu_count(), "tiny": tiny_modes(args.repeats)}
    if not args.skip_full:
        result["full"] = full_encode()
    if args.json:
        Path(args.json).write_text(json.dumps(result, indent=2) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
