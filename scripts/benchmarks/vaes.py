"""Benchmark the video and audio VAEs on this machine: encode and decode time and peak memory for a
clip at 144p, with the tiny and the full-size (random-weight) architectures, and the video decoder's
memory for a 2 s and an 8 s clip (it decodes chunk by chunk, so only the output should grow).

    python scripts/benchmarks/vaes.py [--full] [--json out.json]
    python scripts/benchmarks/vaes.py --decode-240p [--json out.json]

``--decode-240p`` times the full-size (random-weight) video decode of a 240p / 4 s clip (102 frames,
240x426) in fp32 and bf16, with the convolution weights contiguous (as before) and channels-last (as
inference runs it: ``OpenSoraVideoVAE.channels_last``), and reports seconds and peak memory per second
of video.

Each case runs in its own process, so that its peak memory (max RSS) is its own.
"""

from __future__ import annotations

import argparse
import json
import resource
import subprocess
import sys
import time

# name: (kind, preset, seconds, what)
CASES = {
    "video-tiny-2s": ("video", "tiny", 2, "both"),
    "audio-tiny-2s": ("audio", "tiny", 2, "both"),
    "video-full-2s": ("video", "v1.2", 2, "both"),
    "video-full-2s-decode": ("video", "v1.2", 2, "decode"),
    "video-full-8s-decode": ("video", "v1.2", 8, "decode"),
    "audio-full-2s": ("audio", "audioldm2", 2, "both"),
}
FRAMES = {2: 51, 8: 204}


DECODE_240P = dict(frames=102, size=(240, 426), fps=24)


def run_decode_240p(dtype_name: str, layout: str) -> dict:
    """One full-size video decode of 240p / 4 s in ``dtype_name`` with ``layout`` weights."""
    import torch

    from javisdit.registry import MODELS, build_module

    torch.manual_seed(0)
    dtype = {"fp32": torch.float32, "bf16": torch.bfloat16}[dtype_name]
    vae = build_module(dict(type="OpenSoraVAE_V1_2", from_pretrained=None, preset="v1.2"), MODELS).to(dtype).eval()
    if layout == "channels_last":
        vae.channels_last()
    frames, (h, w) = DECODE_240P["frames"], DECODE_240P["size"]
    z = torch.randn(1, 4, *vae.get_latent_size((frames, h, w)), dtype=dtype)
    rss_before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    start = time.perf_counter()
    vae.decode(z, frames)
    seconds = time.perf_counter() - start
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    video_s = frames / DECODE_240P["fps"]
    return dict(dtype=dtype_name, layout=layout, decode_s=seconds, decode_s_per_video_s=seconds / video_s,
                peak_rss_gb=peak / 1024**2, decode_peak_growth_gb_per_video_s=(peak - rss_before) / 1024**2 / video_s)


def decode_240p(json_path: str | None) -> None:
    print("| dtype | weights | decode s | s per second of video | peak RSS GB | decode's RSS growth GB per second of video |")
    print("|---|---|---|---|---|---|", flush=True)
    results = []
    for dtype in ("fp32", "bf16"):
        for layout in ("contiguous", "channels_last"):
            out = subprocess.run([sys.executable, __file__, "--decode-case", dtype, layout], check=True,
                                 capture_output=True, text=True)
            r = json.loads(out.stdout.strip().splitlines()[-1])
            results.append(r)
            print(f"| {dtype} | {layout} | {r['decode_s']:.1f} | {r['decode_s_per_video_s']:.1f} | "
                  f"{r['peak_rss_gb']:.2f} | {r['decode_peak_growth_gb_per_video_s']:.2f} |", flush=True)
    if json_path:
        with open(json_path, "w") as f:
            json.dump(results, f, indent=2)


def run_case(name: str) -> dict:
    import torch

    from javisdit.models import geometry
    from javisdit.registry import MODELS, build_module

    torch.manual_seed(0)
    kind, preset, seconds, what = CASES[name]
    result = dict(case=name)
    if kind == "video":
        vae = build_module(dict(type="OpenSoraVAE_V1_2", from_pretrained=None, preset=preset), MODELS)
        frames = FRAMES[seconds]
        x = torch.rand(1, 3, frames, 144, 256) * 2 - 1
        if what == "both":
            start = time.perf_counter()
            z = vae.encode(x)
            result["encode_s"] = time.perf_counter() - start
        else:
            z = torch.randn(1, 4, *vae.get_latent_size((frames, 144, 256)))
        rss_before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
        start = time.perf_counter()
        out = vae.decode(z, frames)
        result["decode_s"] = time.perf_counter() - start
        result["output_mb"] = out.numel() * out.element_size() / 1024**2
        result["decode_peak_growth_mb"] = (resource.getrusage(resource.RUSAGE_SELF).ru_maxrss - rss_before) / 1024
    else:
        vae = build_module(dict(type="AudioLDM2", preset=preset), MODELS)
        wave = torch.randn(1, geometry.audio_samples(seconds))
        start = time.perf_counter()
        z = vae.encode_waveform(wave, duration=seconds)
        result["encode_s"] = time.perf_counter() - start
        start = time.perf_counter()
        vae.decode(z, wave.shape[-1])
        result["decode_s"] = time.perf_counter() - start
    result["params"] = sum(p.numel() for p in vae.parameters())
    result["peak_rss_gb"] = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024**2
    return result


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--full", action="store_true", help="also run the full-size VAEs (minutes on a CPU)")
    parser.add_argument("--json", help="write the results here")
    parser.add_argument("--decode-240p", action="store_true", help="only the full-size video decode of 240p / 4 s, "
                        "fp32 and bf16, contiguous and channels-last weights (about 20 minutes on 2 CPU cores)")
    parser.add_argument("--case", help=argparse.SUPPRESS)
    parser.add_argument("--decode-case", nargs=2, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.case:
        print(json.dumps(run_case(args.case)))
        return
    if args.decode_case:
        print(json.dumps(run_decode_240p(*args.decode_case)))
        return
    if args.decode_240p:
        decode_240p(args.json)
        return
    names = [n for n in CASES if args.full or "tiny" in n]
    results = []
    for name in names:
        out = subprocess.run([sys.executable, __file__, "--case", name], check=True, capture_output=True, text=True)
        r = json.loads(out.stdout.strip().splitlines()[-1])
        results.append(r)
        parts = [f"{k} {r[k]:.2f}" for k in ("encode_s", "decode_s", "output_mb", "decode_peak_growth_mb") if k in r]
        print(f"{name:22s} params {r['params']:,}  " + "  ".join(parts) + f"  peak RSS {r['peak_rss_gb']:.2f} GB",
              flush=True)
    if args.json:
        with open(args.json, "w") as f:
            json.dump(results, f, indent=2)


if __name__ == "__main__":
    main()
