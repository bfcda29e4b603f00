"""GPU check: the `gpu` tests (kernels against their PyTorch fallbacks, tiny ZeRO-2 training with resume,
tiny bf16 inference), then one bf16 forward of the full VASTDiT3-XL/2 at 240p / 4 s with classifier-free
guidance (batch 2), timed, with its FLOPs (``torch.utils.flop_counter``), its MFU against the bf16 matmul
peak measured in the same run (``torch.mm`` of two 8192x8192 matrices) and its peak GPU memory. Prints
one summary table.

    bash scripts/benchmarks/gpu_check.sh    # or: python scripts/benchmarks/gpu_check.py [--skip-tests] [--compile]

Without CUDA it says so and exits with status 1 (``--device cpu --model VASTDiT3-tiny`` runs the forward
part on the CPU, which the test suite uses to check this script).
"""

from __future__ import annotations

import argparse
import subprocess
import sys
import tempfile
import time
import xml.etree.ElementTree as ET
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]


def run_gpu_tests(extra: list[str]) -> list[tuple[str, str, str]]:
    """(test, passed|failed|skipped, detail) for every test marked ``gpu``."""
    with tempfile.TemporaryDirectory() as tmp:
        report = Path(tmp) / "gpu.xml"
        subprocess.run([sys.executable, "-m", "pytest", "-m", "gpu", "-q", "-p", "no:cacheprovider",
                        "--continue-on-collection-errors", f"--junitxml={report}", *extra], cwd=REPO)
        return parse_junit(report.read_text()) if report.is_file() else [("pytest", "failed", "no report written")]


def parse_junit(text: str) -> list[tuple[str, str, str]]:
    rows = []
    for case in ET.fromstring(text).iter("testcase"):
        name = f"{case.get('classname', '').split('.')[-1]}::{case.get('name')}"
        status, detail = "passed", f"{float(case.get('time', 0)):.1f} s"
        for tag, word in (("failure", "failed"), ("error", "failed"), ("skipped", "skipped")):
            node = case.find(tag)
            if node is not None:
                status, detail = word, (node.get("message") or "").splitlines()[0][:70] if node.get("message") else ""
                break
        rows.append((name, status, detail))
    return rows


def matmul_peak(device: str, size: int = 8192, repeats: int = 10) -> float:
    """bf16 FLOP/s of the mean of ``repeats`` ``torch.mm`` calls of two size x size matrices (after three)."""
    import torch

    a, b = (torch.randn(size, size, device=device, dtype=torch.bfloat16) for _ in range(2))
    for _ in range(3):
        torch.mm(a, b)
    _sync(device)
    start = time.perf_counter()
    for _ in range(repeats):
        torch.mm(a, b)
    _sync(device)
    return 2 * size**3 * repeats / (time.perf_counter() - start)


def _sync(device: str) -> None:
    import torch

    if device == "cuda":
        torch.cuda.synchronize()


def forward_benchmark(model_type: str = "VASTDiT3-XL/2", device: str = "cuda", num_frames: int = 102,
                      size: tuple[int, int] = (240, 426), repeats: int = 3, compile: bool = False) -> dict:
    """Seconds per forward (best of ``repeats`` after one warm-up), FLOPs and peak memory of one CFG batch;
    with ``compile`` the blocks are compiled (``javisdit.models.compile``) after the eager warm-up, and
    ``compile_s`` is the first compiled call."""
    import torch

    from javisdit.models import geometry
    from javisdit.registry import MODELS, build_module

    dtype = torch.bfloat16
    torch.manual_seed(0)
    with torch.device("meta"):
        model = build_module(dict(type=model_type), MODELS)
    model = model.to_empty(device=device).to(dtype).eval()
    with torch.no_grad():
        for p in model.parameters():
            p.normal_(0, 0.02)
    c = model.config
    B = 2  # the conditional and unconditional halves of classifier-free guidance
    T, H, W = geometry.video_latent_size(num_frames, *size)
    seconds = num_frames / geometry.FPS
    audio = geometry.audio_latent_size(seconds)

    def rand(*shape):
        return torch.randn(*shape, device=device, dtype=dtype)

    inputs = dict(
        x={"video": rand(B, 4, T, H, W), "audio": rand(B, *audio)}, timestep=torch.full((B,), 500.0, device=device),
        y=rand(B, 1, c.model_max_length, c.caption_channels),
        mask=torch.ones(B, c.model_max_length, dtype=torch.long, device=device),
        fps=torch.full((B,), float(geometry.FPS), device=device), height=torch.full((B,), float(size[0]), device=device),
        width=torch.full((B,), float(size[1]), device=device),
        spatial_prior=rand(B, c.spatial_prior_len, c.st_prior_channel),
        temporal_prior=rand(B, c.temporal_prior_len, c.st_prior_channel),
    )

    from torch.utils.flop_counter import FlopCounterMode

    with torch.no_grad():
        with FlopCounterMode(display=False) as counter:
            model(**inputs)  # also the warm-up
        _sync(device)
        compile_s = None
        if compile:
            from javisdit.models.compile import compile_blocks

            compile_blocks(model)
            start = time.perf_counter()
            model(**inputs)
            _sync(device)
            compile_s = time.perf_counter() - start
        if device == "cuda":
            torch.cuda.reset_peak_memory_stats()
        times = []
        for _ in range(repeats):
            start = time.perf_counter()
            model(**inputs)
            _sync(device)
            times.append(time.perf_counter() - start)
    peak = torch.cuda.max_memory_allocated() / 2**30 if device == "cuda" else float("nan")
    return dict(model=model_type, params=sum(p.numel() for p in model.parameters()), latent=(T, H, W),
                audio_latent=audio, forward_s=min(times), forward_flops=counter.get_total_flops(), peak_gb=peak,
                compile_s=compile_s,
                gpu=torch.cuda.get_device_name() if device == "cuda" else "cpu")


def table(rows: list[tuple[str, str, str]]) -> str:
    widths = [max(len(r[i]) for r in rows) for i in range(3)]
    line = "+".join("-" * (w + 2) for w in widths)
    out = [line] + [" | ".join(cell.ljust(w) for cell, w in zip(r, widths)) for r in rows] + [line]
    return "\n".join(out)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--skip-tests", action="store_true", help="only the XL forward")
    parser.add_argument("--device", default="cuda", choices=("cuda", "cpu"))
    parser.add_argument("--model", default="VASTDiT3-XL/2", help="registered model type of the forward")
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--compile", action="store_true", help="also time the forward with its blocks compiled")
    args = parser.parse_args()
    import torch

    if args.device == "cuda" and not torch.cuda.is_available():
        print("gpu_check: no CUDA device here; nothing to check", file=sys.stderr)
        return 1
    rows = [("check", "result", "detail")]
    if not args.skip_tests:
        rows += run_gpu_tests([])
    try:
        peak_flops = matmul_peak(args.device, size=8192 if args.device == "cuda" else 1024)
        for compiled in (False, True)[: 1 + args.compile]:
            r = forward_benchmark(args.model, args.device, repeats=args.repeats, compile=compiled)
            rate = r["forward_flops"] / r["forward_s"]
            how = f"compiled (first call {r['compile_s']:.0f} s)" if compiled else "eager"
            detail = (f"{r['forward_s']:.3f} s, {r['forward_flops'] / 1e12:.1f} TFLOP, {rate / 1e12:.0f} TFLOP/s = "
                      f"{100 * rate / peak_flops:.0f} % of the {peak_flops / 1e12:.0f} TFLOP/s bf16 mm peak, "
                      f"peak {r['peak_gb']:.1f} GB on {r['gpu']}")
            rows.append((f"{r['model']} bf16 forward, 240p/4s, CFG batch 2, {how}", "passed", detail))
    except Exception as err:  # reported in the table, not a traceback over it
        rows.append((f"{args.model} bf16 forward", "failed", f"{type(err).__name__}: {err}"[:100]))
    print(table(rows))
    return 1 if any(status == "failed" for _, status, _ in rows[1:]) else 0


if __name__ == "__main__":
    sys.exit(main())
