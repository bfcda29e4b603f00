"""The denoisers against this machine's own limit: forward and forward+backward time, FLOPs and MFU.

    python scripts/benchmarks/backbone.py [--cases mid-fp32 mid-bf16 ...] [--compile] [--repeats 3] [--json out.json]
        [--keep-freed-memory]

First the matmul peak of this machine is measured (``torch.mm`` of 2048x2048 in fp32 and in bf16, on
the threads torch uses here); then each case builds a random-weight denoiser in its own process (so its
peak memory is its own), counts the FLOPs of one forward and one forward+backward with
``torch.utils.flop_counter`` (plus the CPU attention kernel, which it does not count: 4·B·H·N·L·D
forward, twice that backward), and times them (best of ``--repeats``). MFU = FLOPs / time / peak of the
case's dtype. ``--compile`` adds each case with its blocks compiled (``javisdit.models.compile``) and the
compile time (the first call).

Cases: ``mid-*`` is VASTDiT3 at XL width and depth 2 on a 240p / 2 s grid (6,075 video + 224 audio
tokens, batch 1); ``v1-mid-bf16`` is JavisDiT++'s Wan DiT at depth 2 on 240p / 65 frames (6,885 + 416
tokens); ``tiny-fp32`` runs in a second (tests); ``xl-bf16`` is the full VASTDiT3-XL/2 forward.
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import subprocess
import sys
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(REPO))

V01_MID = dict(video=(15, 30, 53), audio=(56, 16), pixels=(240, 426))
CASES: dict[str, dict] = {
    # family, model kwargs, batch, latent sizes, dtype, whether forward+backward is timed
    "tiny-fp32": dict(family="v0.1", model=dict(type="VASTDiT3-tiny"), batch=2,
                      latent=dict(video=(5, 18, 32), audio=(56, 16), pixels=(144, 256)), dtype="fp32", backward=True),
    "mid-fp32": dict(family="v0.1", model=dict(type="VASTDiT3-XL/2", depth=2), batch=1, latent=V01_MID,
                     dtype="fp32", backward=True),
    "mid-bf16": dict(family="v0.1", model=dict(type="VASTDiT3-XL/2", depth=2), batch=1, latent=V01_MID,
                     dtype="bf16", backward=True),
    "v1-mid-bf16": dict(family="v1.0", model=dict(type="Wan2_1_T2V_1_3B", num_layers=2), batch=1,
                        latent=dict(video=(17, 30, 54), audio=(104, 16)), dtype="bf16", backward=True),
    "xl-bf16": dict(family="v0.1", model=dict(type="VASTDiT3-XL/2"), batch=1, latent=V01_MID, dtype="bf16",
                    backward=False),
}
DEFAULT_CASES = ("mid-fp32", "mid-bf16", "v1-mid-bf16")
# glibc's malloc maps every block above 32 MiB afresh and unmaps it on free, so each large activation is
# faulted in page by page at every layer; these settings (read when a process starts) keep such blocks
# in the heap for reuse instead.
KEEP_FREED_MEMORY = {"MALLOC_MMAP_MAX_": "0", "MALLOC_TRIM_THRESHOLD_": str(2**40)}


def peak_rss_gb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024**2


def matmul_peak(dtype_name: str, size: int = 2048, repeats: int = 10) -> float:
    """FLOP/s of the best of ``repeats`` ``torch.mm`` calls of two size x size matrices."""
    import torch

    dtype = {"fp32": torch.float32, "bf16": torch.bfloat16}[dtype_name]
    a, b = torch.randn(size, size, dtype=dtype), torch.randn(size, size, dtype=dtype)
    torch.mm(a, b)
    best = min(_timed(lambda: torch.mm(a, b)) for _ in range(repeats))
    return 2 * size**3 / best


def _timed(fn) -> float:
    start = time.perf_counter()
    fn()
    return time.perf_counter() - start


def _attention_flops():
    """FLOP formulas for the CPU attention kernels, which ``torch.utils.flop_counter`` leaves at 0."""
    import torch
    from torch.utils.flop_counter import register_flop_formula

    def bhnld(q_shape, k_shape) -> int:  # the formulas see shapes, not tensors
        *batch, n, d = q_shape
        return int(torch.Size(batch).numel()) * n * k_shape[-2] * d

    aten = torch.ops.aten
    formulas = {}
    if hasattr(aten, "_scaled_dot_product_flash_attention_for_cpu"):
        def forward(query, key, *args, out_shape=None, **kwargs) -> int:
            return 4 * bhnld(query, key)

        def backward(grad_out, query, key, *args, out_shape=None, **kwargs) -> int:
            return 8 * bhnld(query, key)

        formulas[aten._scaled_dot_product_flash_attention_for_cpu] = forward
        formulas[aten._scaled_dot_product_flash_attention_for_cpu_backward] = backward
    for op, formula in formulas.items():
        try:
            register_flop_formula(op)(formula)
        except RuntimeError:  # registered already
            pass


def build_case(name: str):
    """(model, inputs, tokens) of a case, random weights in the case's dtype."""
    import torch

    from javisdit.registry import MODELS, build_module

    case = CASES[name]
    dtype = {"fp32": torch.float32, "bf16": torch.bfloat16}[case["dtype"]]
    torch.manual_seed(0)
    with torch.device("meta"):
        model = build_module(case["model"], MODELS)
    model = model.to_empty(device="cpu").to(dtype)
    with torch.no_grad():
        for p in model.parameters():
            p.normal_(0, 0.02)
    B, lat = case["batch"], case["latent"]
    (T, H, W), (Ta, M) = lat["video"], lat["audio"]
    c = model.config
    if case["family"] == "v1.0":
        x = {"video": torch.randn(B, c.in_dim, T, H, W, dtype=dtype), "audio": torch.randn(B, 8, Ta, M, dtype=dtype)}
        inputs = dict(x=x, timestep=torch.full((B,), 991.64), y=torch.randn(B, 512, c.text_dim, dtype=dtype),
                      mask=torch.ones(B, 512, dtype=torch.long))
        tokens = B * (T * (H // 2) * (W // 2) + Ta * M // 4)
    else:
        h_px, w_px = lat["pixels"]
        inputs = dict(
            x={"video": torch.randn(B, 4, T, H, W, dtype=dtype), "audio": torch.randn(B, 8, Ta, M, dtype=dtype)},
            timestep=torch.full((B,), 500.0), y=torch.randn(B, 1, c.model_max_length, c.caption_channels, dtype=dtype),
            mask=torch.ones(B, c.model_max_length, dtype=torch.long), fps=torch.full((B,), 24.0),
            height=torch.full((B,), float(h_px)), width=torch.full((B,), float(w_px)),
            spatial_prior=torch.randn(B, c.spatial_prior_len, c.st_prior_channel, dtype=dtype),
            temporal_prior=torch.randn(B, c.temporal_prior_len, c.st_prior_channel, dtype=dtype),
        )
        tokens = B * (T * -(-H // 2) * -(-W // 2) + (Ta // 4) * M)
    return model, inputs, tokens


def _loss(out: dict):
    return sum(v.float().square().mean() for v in out.values())


def run_case(name: str, compiled: bool, repeats: int) -> dict:
    import torch
    from torch.utils.flop_counter import FlopCounterMode

    from javisdit.models.compile import compile_blocks

    _attention_flops()
    case = CASES[name]
    model, inputs, tokens = build_case(name)
    result = dict(case=name, compiled=compiled, dtype=case["dtype"], batch=case["batch"], tokens=tokens,
                  params=sum(p.numel() for p in model.parameters()), threads=torch.get_num_threads(),
                  malloc={k: os.environ[k] for k in KEEP_FREED_MEMORY if k in os.environ})
    model.eval()
    with torch.no_grad(), FlopCounterMode(display=False) as counter:
        model(**inputs)
    result["forward_flops"] = counter.get_total_flops()
    if compiled:
        compile_blocks(model)
        with torch.no_grad():
            result["compile_forward_s"] = _timed(lambda: model(**inputs))
    with torch.no_grad():
        model(**inputs)  # warm-up
        result["forward_s"] = min(_timed(lambda: model(**inputs)) for _ in range(repeats))
    if case["backward"]:
        model.train()

        def step():
            _loss(model(**inputs)).backward()
            model.zero_grad(set_to_none=True)

        if not compiled:
            with FlopCounterMode(display=False) as counter:
                step()
            result["fwd_bwd_flops"] = counter.get_total_flops()
        else:
            result["compile_fwd_bwd_s"] = _timed(step)
        step()
        result["fwd_bwd_s"] = min(_timed(step) for _ in range(repeats))
    result["peak_rss_gb"] = peak_rss_gb()
    return result


def _row(r: dict, peaks: dict) -> str:
    peak = peaks[r["dtype"]]
    fwd = r["forward_flops"] / r["forward_s"]
    cells = [r["case"], "compiled" if r["compiled"] else "eager", f"{r['tokens']:,}", f"{r['forward_flops'] / 1e9:,.0f}",
             f"{r['forward_s']:.3f}", f"{fwd / 1e12:.3f}", f"{100 * fwd / peak:.1f} %"]
    if "fwd_bwd_s" in r:
        flops = r.get("fwd_bwd_flops")
        mfu = f"{100 * flops / r['fwd_bwd_s'] / peak:.1f} %" if flops else "-"
        cells += [f"{r['fwd_bwd_s']:.3f}", mfu]
    else:
        cells += ["-", "-"]
    compile_s = [r[k] for k in ("compile_forward_s", "compile_fwd_bwd_s") if k in r]
    cells += [" / ".join(f"{s:.0f}" for s in compile_s) if compile_s else "-", f"{r['peak_rss_gb']:.2f}"]
    return "| " + " | ".join(cells) + " |"


HEADER = ("| case | path | tokens | GFLOP fwd | forward s | TFLOP/s | MFU fwd | fwd+bwd s | MFU fwd+bwd "
          "| compile s (fwd / fwd+bwd) | peak RSS GB |\n|---|---|---|---|---|---|---|---|---|---|---|")


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--cases", nargs="+", choices=tuple(CASES), default=list(DEFAULT_CASES))
    parser.add_argument("--compile", action="store_true", help="also time each case with its blocks compiled")
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--json", help="write the results here")
    parser.add_argument("--keep-freed-memory", action="store_true",
                        help="run the cases with glibc's malloc keeping freed blocks for reuse: "
                             + " ".join(f"{k}={v}" for k, v in KEEP_FREED_MEMORY.items()))
    parser.add_argument("--case", help=argparse.SUPPRESS)
    parser.add_argument("--compiled", action="store_true", help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.case:  # child process
        print(json.dumps(run_case(args.case, args.compiled, args.repeats)))
        return 0

    import torch

    peaks = {dtype: matmul_peak(dtype) for dtype in ("fp32", "bf16")}
    print(f"{os.cpu_count()} CPUs, torch {torch.__version__} on {torch.get_num_threads()} threads; matmul peak "
          f"(torch.mm 2048^2): fp32 {peaks['fp32'] / 1e12:.3f} TFLOP/s, bf16 {peaks['bf16'] / 1e12:.3f} TFLOP/s; "
          f"malloc: {'freed memory kept' if args.keep_freed_memory else 'as the system has it'}", flush=True)
    env = {**os.environ, **(KEEP_FREED_MEMORY if args.keep_freed_memory else {})}
    print(HEADER, flush=True)
    results, flops = [], {}
    for name in args.cases:
        for compiled in (False, True) if args.compile else (False,):
            command = [sys.executable, __file__, "--case", name, "--repeats", str(args.repeats)]
            out = subprocess.run(command + (["--compiled"] if compiled else []), check=True, capture_output=True,
                                 text=True, env=env)
            r = json.loads(out.stdout.strip().splitlines()[-1])
            if compiled and name in flops:  # the same model: count once, eagerly
                r.setdefault("fwd_bwd_flops", flops[name])
            flops[name] = r.get("fwd_bwd_flops")
            results.append(r)
            print(_row(r, peaks), flush=True)
    if args.json:
        Path(args.json).write_text(json.dumps({"peak_flops": peaks, "cases": results}, indent=2) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
