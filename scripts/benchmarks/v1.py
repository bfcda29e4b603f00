"""JavisDiT++ (v1.0) on this machine, random weights, bf16: one DiT forward at 240p / 4 s next to v0.1's
VASTDiT3-XL/2 at the same clip, and the phases of one v1.0 sample: umT5-XXL encoding (the prompt and the
negative prompt, 512 tokens each), one denoising step (the conditional and unconditional halves in one
batch of 2; a sample takes 50), the Wan2.1 VAE decode (65 frames, 240x432) and the AudioLDM2 decode.

    python scripts/benchmarks/v1.py [--tiny] [--json out.json]

The clip: v1.0 generates 65 frames at 16 fps (4.06 s, 240p 9:16: latent 16x17x30x54 and 8x104x16, 6,885 +
416 tokens); v0.1 102 frames at 24 fps (4.25 s: latent 4x30x30x53 and 8x112x16). Each case runs in its own
process so its peak memory (max RSS) is its own; ``--tiny`` runs the same code on the tiny presets (tests).
"""

from __future__ import annotations

import argparse
import json
import resource
import subprocess
import sys
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(REPO))

# v1.0 at 240p 9:16, 65 frames: Wan VAE latent (Tv, Hl, Wl) and AudioLDM2 latent frames
V1_LATENT, V1_AUDIO, V1_FRAMES = (17, 30, 54), 104, 65
V01_LATENT, V01_AUDIO = (30, 30, 53), 112  # v0.1 at 240p 9:16, 102 frames
CASES = ("dit-v1.0", "dit-v0.1", "umt5-encode", "v1.0-step", "wan-vae-decode", "audio-decode")


def peak_rss_gb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024**2


def _random(model, dtype):
    """Allocate a meta-built model's tensors once, directly in ``dtype``, with small random values."""
    import torch

    model = model.to_empty(device="cpu").to(dtype)
    with torch.no_grad():
        for p in model.parameters():
            p.normal_(0, 0.02)
    return model.eval()


def _timed(fn) -> float:
    start = time.perf_counter()
    fn()
    return time.perf_counter() - start


def run_case(name: str, tiny: bool) -> dict:
    import torch

    from javisdit.registry import MODELS, build_module

    torch.manual_seed(0)
    bf16 = torch.bfloat16
    result: dict = dict(case=name)
    with torch.no_grad():
        if name in ("dit-v1.0", "v1.0-step"):
            batch = 2 if name == "v1.0-step" else 1
            with torch.device("meta"):
                model = build_module(dict(type="Wan2_1_T2V_1_3B", preset="tiny" if tiny else "1.3B"), MODELS)
            model = _random(model, bf16)
            c = model.config
            T, H, W = (5, 4, 6) if tiny else V1_LATENT
            x = {"video": torch.randn(batch, c.in_dim, T, H, W), "audio": torch.randn(batch, 8, 8 if tiny else V1_AUDIO, 16)}
            inputs = dict(x=x, timestep=torch.full((batch,), 991.64), y=torch.randn(batch, 16 if tiny else 512, c.text_dim),
                          mask=torch.ones(batch, 16 if tiny else 512, dtype=torch.long))
            result.update(params=sum(p.numel() for p in model.parameters()), batch=batch,
                          tokens=batch * (T * H * W // 4 + x["audio"].shape[2] * 4))
            result["seconds"] = _timed(lambda: model(**inputs))
            if name == "v1.0-step":
                result["sample_50_steps_s"] = 50 * result["seconds"]
        elif name == "dit-v0.1":
            with torch.device("meta"):
                model = build_module(dict(type="VASTDiT3-tiny" if tiny else "VASTDiT3-XL/2"), MODELS)
            model = _random(model, bf16)
            c = model.config
            T, H, W = (5, 4, 6) if tiny else V01_LATENT
            Ta = 16 if tiny else V01_AUDIO
            inputs = dict(
                x={"video": torch.randn(1, 4, T, H, W, dtype=bf16), "audio": torch.randn(1, 8, Ta, 16, dtype=bf16)},
                timestep=torch.full((1,), 500.0), y=torch.randn(1, 1, c.model_max_length, c.caption_channels, dtype=bf16),
                mask=torch.ones(1, c.model_max_length, dtype=torch.long), fps=torch.full((1,), 24.0),
                height=torch.full((1,), 240.0), width=torch.full((1,), 426.0),
                spatial_prior=torch.randn(1, c.spatial_prior_len, c.st_prior_channel, dtype=bf16),
                temporal_prior=torch.randn(1, c.temporal_prior_len, c.st_prior_channel, dtype=bf16))
            result.update(params=sum(p.numel() for p in model.parameters()), batch=1,
                          tokens=T * -(-H // 2) * -(-W // 2) + (Ta // 4) * 16)
            result["seconds"] = _timed(lambda: model(**inputs))
        elif name == "umt5-encode":
            from javisdit.models.wan.umt5 import UMT5TextEncoder

            with torch.device("meta"):
                encoder = UMT5TextEncoder("tiny" if tiny else "umt5-xxl", text_len=16 if tiny else 512)
            encoder.model = _random(encoder.model, bf16)
            result["params"] = sum(p.numel() for p in encoder.parameters())
            texts = ["a dog barks at a passing train", "色调艳丽，过曝，静态，低音质"]
            result["seconds"] = _timed(lambda: encoder.encode(texts))
        elif name == "wan-vae-decode":
            from javisdit.models.wan.vae import WanVideoVAE

            with torch.device("meta"):
                vae = WanVideoVAE(preset="tiny" if tiny else "wan2.1")
            vae.model = _random(vae.model, bf16)  # bf16 storage, fp32 compute (the published behaviour)
            T, H, W = (3, 4, 6) if tiny else V1_LATENT
            z = torch.randn(1, 16, T, H, W)
            result["params"] = sum(p.numel() for p in vae.parameters())
            frames = 1 + 4 * (T - 1)
            result["seconds"] = _timed(lambda: vae.decode(z, num_frames=frames))
            result["frames"] = frames
        elif name == "audio-decode":
            from javisdit.models.vae.audio import AudioLDM2

            audio_vae = AudioLDM2.from_preset("tiny" if tiny else "audioldm2").to(bf16)
            Ta = 8 if tiny else V1_AUDIO
            result["params"] = sum(p.numel() for p in audio_vae.parameters())
            result["seconds"] = _timed(lambda: audio_vae.decode(torch.randn(1, 8, Ta, 16), Ta * 4 * 160 - 1000))
        else:
            raise SystemExit(f"unknown case {name!r}; valid: {', '.join(CASES)}")
    result["peak_rss_gb"] = peak_rss_gb()
    return result


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--tiny", action="store_true", help="the tiny presets (a check of this script)")
    parser.add_argument("--json", help="write the results here")
    parser.add_argument("--case", help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.case:  # child process
        print(json.dumps(run_case(args.case, args.tiny)))
        return 0
    import torch

    print(f"torch {torch.__version__}, {torch.get_num_threads()} threads, bf16, random weights"
          + (" (tiny presets)" if args.tiny else ""), flush=True)
    results = []
    for case in CASES:
        out = subprocess.run([sys.executable, __file__, "--case", case, *(["--tiny"] if args.tiny else [])],
                             check=True, capture_output=True, text=True)
        r = json.loads(out.stdout.strip().splitlines()[-1])
        results.append(r)
        extra = f", 50 steps {r['sample_50_steps_s']:.0f} s" if "sample_50_steps_s" in r else ""
        tokens = f", {r['tokens']:,} tokens" if "tokens" in r else ""
        print(f"{case:15s} {r['params']:>14,} params{tokens}: {r['seconds']:8.2f} s{extra}, peak RSS "
              f"{r['peak_rss_gb']:.2f} GB", flush=True)
    if args.json:
        Path(args.json).write_text(json.dumps(results, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
