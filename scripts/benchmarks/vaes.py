"""Benchmark the video and audio VAEs on this machine: encode and decode time and peak memory for a
clip at 144p, with the tiny and the full-size (random-weight) architectures, and the video decoder's
memory for a 2 s and an 8 s clip (it decodes chunk by chunk, so only the output should grow).

    python scripts/benchmarks/vaes.py [--full] [--json out.json]

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
    parser.add_argument("--case", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.case:
        print(json.dumps(run_case(args.case)))
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
