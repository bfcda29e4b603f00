"""Benchmark the VASTDiT3 backbone on this machine: forward and forward+backward time, tokens/s and
peak memory for the tiny preset and a mid-size model (XL width, depth 2, 240p-sized token grid);
SDPA against an eager softmax(QK^T)V of the same attention; and (``--xl``) one bf16 forward of the
full XL model at 240p / 2 s.

    python scripts/benchmarks/backbone.py [--xl] [--repeats 3] [--json out.json]

Each case runs in its own process so that its peak memory (max RSS) is its own.
"""

from __future__ import annotations

import argparse
import json
import resource
import subprocess
import sys
import time

CASES = {
    # name: (model kwargs, batch, video latent (T, H, W), audio latent (Ta, M), pixel (H, W), dtype, backward)
    "tiny": (dict(type="VASTDiT3-tiny"), 2, (5, 18, 32), (56, 16), (144, 256), "fp32", True),
    "mid": (dict(type="VASTDiT3-XL/2", depth=2), 1, (15, 30, 53), (56, 16), (240, 426), "fp32", True),
    "xl-bf16": (dict(type="VASTDiT3-XL/2"), 1, (15, 30, 53), (56, 16), (240, 426), "bf16", False),
}


def peak_rss_gb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024**2


def run_case(name: str, backend: str, repeats: int) -> dict:
    import torch

    from javisdit.registry import MODELS, build_module
    from javisdit.models.layers.attention import SelfAttention

    torch.manual_seed(0)
    cfg, B, (T, H, W), (Ta, M), (h_px, w_px), dtype_name, backward = CASES[name]
    dtype = {"fp32": torch.float32, "bf16": torch.bfloat16}[dtype_name]
    if name == "xl-bf16":  # 3.7e9 parameters: allocate them once, directly in bf16
        with torch.device("meta"):
            model = build_module(cfg, MODELS)
        model = model.to_empty(device="cpu").to(dtype)
        with torch.no_grad():
            for p in model.parameters():
                p.normal_(0, 0.02)
    else:
        model = build_module(cfg, MODELS).to(dtype)
    for module in model.modules():
        if isinstance(module, SelfAttention):
            module.backend = backend
    c = model.config
    inputs = dict(
        x={"video": torch.randn(B, 4, T, H, W, dtype=dtype), "audio": torch.randn(B, 8, Ta, M, dtype=dtype)},
        timestep=torch.full((B,), 500.0), y=torch.randn(B, 1, c.model_max_length, c.caption_channels, dtype=dtype),
        mask=torch.ones(B, c.model_max_length, dtype=torch.long), fps=torch.full((B,), 24.0),
        height=torch.full((B,), float(h_px)), width=torch.full((B,), float(w_px)),
        spatial_prior=torch.randn(B, c.spatial_prior_len, c.st_prior_channel, dtype=dtype),
        temporal_prior=torch.randn(B, c.temporal_prior_len, c.st_prior_channel, dtype=dtype),
    )
    tokens = B * (T * -(-H // 2) * -(-W // 2) + (Ta // 4) * M)
    result = dict(case=name, backend=backend, dtype=dtype_name, batch=B, tokens=tokens,
                  params=sum(p.numel() for p in model.parameters()))

    def timed(fn) -> float:
        times = []
        for _ in range(repeats):
            start = time.perf_counter()
            fn()
            times.append(time.perf_counter() - start)
        return min(times)

    model.eval()
    with torch.no_grad():
        model(**inputs)  # warm-up
        result["forward_s"] = timed(lambda: model(**inputs))
    result["forward_tokens_per_s"] = tokens / result["forward_s"]
    if backward:
        model.train()

        def step():
            out = model(**inputs)
            (out["video"].float().square().mean() + out["audio"].float().square().mean()).backward()
            model.zero_grad(set_to_none=True)

        step()
        result["fwd_bwd_s"] = timed(step)
        result["fwd_bwd_tokens_per_s"] = tokens / result["fwd_bwd_s"]
    result["peak_rss_gb"] = peak_rss_gb()
    return result


def attention_microbench(repeats: int) -> list[dict]:
    """The attention shapes of the mid-size case (batch 1, 240p, 15 latent frames, 16 heads of 72)."""
    import torch

    from javisdit.models.layers.attention import attention

    rows = []
    for label, (b, n) in {"video spatial": (15, 405), "video temporal": (405, 15), "audio temporal": (16, 14)}.items():
        q, k, v = (torch.randn(b, 16, n, 72) for _ in range(3))
        row = {"attention": label, "shape": [b, 16, n, 72]}
        for backend in ("sdpa", "eager"):
            for mode in ("fwd", "fwd_bwd"):
                qg, kg, vg = (t.clone().requires_grad_(mode == "fwd_bwd") for t in (q, k, v))

                def call():
                    out = attention(qg, kg, vg, backend=backend)
                    if mode == "fwd_bwd":
                        out.sum().backward()

                call()
                times = []
                for _ in range(repeats):
                    start = time.perf_counter()
                    call()
                    times.append(time.perf_counter() - start)
                row[f"{backend}_{mode}_ms"] = 1000 * min(times)
        rows.append(row)
    return rows


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--xl", action="store_true", help="also run one bf16 forward of the full XL model (slow on CPU)")
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--json", help="write the results here")
    parser.add_argument("--case", help=argparse.SUPPRESS)
    parser.add_argument("--backend", default="sdpa", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.case:  # child process
        print(json.dumps(run_case(args.case, args.backend, args.repeats)))
        return

    runs = [("tiny", "sdpa"), ("tiny", "eager"), ("mid", "sdpa"), ("mid", "eager")] + ([("xl-bf16", "sdpa")] if args.xl else [])
    results = []
    for case, backend in runs:
        repeats = 1 if case == "xl-bf16" else args.repeats
        out = subprocess.run([sys.executable, __file__, "--case", case, "--backend", backend, "--repeats", str(repeats)],
                             check=True, capture_output=True, text=True)
        results.append(json.loads(out.stdout.strip().splitlines()[-1]))
        r = results[-1]
        fb = f"{r['fwd_bwd_s']:.3f} s ({r['fwd_bwd_tokens_per_s']:,.0f} tok/s)" if "fwd_bwd_s" in r else "-"
        print(f"{case:8s} {backend:6s} {r['dtype']} params {r['params']:,}  tokens {r['tokens']:,}  "
              f"forward {r['forward_s']:.3f} s ({r['forward_tokens_per_s']:,.0f} tok/s)  fwd+bwd {fb}  "
              f"peak RSS {r['peak_rss_gb']:.2f} GB", flush=True)
    micro = attention_microbench(args.repeats)
    for row in micro:
        print(f"attention {row['attention']:15s} {row['shape']}: forward sdpa {row['sdpa_fwd_ms']:.1f} ms, "
              f"eager {row['eager_fwd_ms']:.1f} ms; fwd+bwd sdpa {row['sdpa_fwd_bwd_ms']:.1f} ms, "
              f"eager {row['eager_fwd_bwd_ms']:.1f} ms")
    if args.json:
        with open(args.json, "w") as f:
            json.dump({"models": results, "attention": micro}, f, indent=2)


if __name__ == "__main__":
    main()
