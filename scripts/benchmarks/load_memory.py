"""Host memory of loading VASTDiT3-XL/2 for inference: the peak RSS of building the model on the meta
device and streaming its weights in bf16, against the model's own bf16 size.

    python scripts/benchmarks/load_memory.py [--depth 28] [--dir DIR] [--shard-gb 2] [--json out.json]

Writes a random-weight checkpoint stored as the published ``JavisDiT-v0.1-jav`` is (fp32 safetensors,
``config.json``; here in shards with an index), one tensor at a time so that writing it needs one shard
of memory, not the model. Then a fresh process imports the package and builds a tiny model once on the
CPU and once on the meta device (the lazy imports of a first build, torch's meta kernels among them:
about 0.15 GB, whatever the model's size), records its RSS (the baseline), builds the model the way
inference does (``build_module(cfg.model, ..., dtype=bf16, device=cpu)`` with the structure of
``configs/javisdit-v0-1/inference/sample.py`` and T5-XXL text features) and reports its peak RSS
(VmHWM). Target: (peak - baseline) < 1.3 x the bf16 size (3,719,730,948 parameters x 2 bytes = 7.44 GB
at depth 28). The machine's RAM and CPU count are printed with the figures; the checkpoint is read from
the page cache (it was just written), so the load time is not a disk figure.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]
SAMPLE_CONFIG = REPO / "configs" / "javisdit-v0-1" / "inference" / "sample.py"
TEXT_FEATURES = dict(in_channels=4, caption_channels=4096, model_max_length=300)  # T5-XXL, as build_models


def model_config(depth: int) -> dict:
    from mmengine.config import Config

    cfg = dict(Config.fromfile(str(SAMPLE_CONFIG)).model)
    cfg.pop("from_pretrained", None)
    return {**cfg, "depth": depth, **TEXT_FEATURES}


def _status_gb(field: str) -> float:
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith(f"{field}:"):
            return int(line.split()[1]) * 1024 / 1e9  # KiB
    raise RuntimeError(f"no {field} in /proc/self/status")


def rss_gb() -> float:
    return _status_gb("VmRSS")


def peak_rss_gb() -> float:
    """The peak RSS of this process. Not ``getrusage().ru_maxrss``: on Linux that also carries the peak
    of the process that started this one (the checkpoint writer) across ``exec``."""
    return _status_gb("VmHWM")


def write_checkpoint(folder: Path, depth: int, shard_bytes: int, seed: int = 0) -> dict:
    """A random fp32 checkpoint of the model, shard by shard; returns its size figures."""
    import torch
    from safetensors.torch import save_file

    from javisdit.registry import MODELS, build_module

    with torch.device("meta"):
        layout = build_module(model_config(depth), MODELS)
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "config.json").write_text(json.dumps(layout.config_json(), indent=2) + "\n")
    pool = torch.randn(1 << 24, generator=torch.Generator().manual_seed(seed)) * 0.02  # values to slice from
    shards: list[list[str]] = [[]]
    shard: dict[str, torch.Tensor] = {}
    size = total = offset = 0

    def flush() -> None:
        save_file(shard, str(folder / f"shard-{len(shards):05d}.safetensors"), metadata={"format": "pt"})
        shard.clear()

    for key, meta in layout.state_dict().items():
        n = meta.numel()
        if shard and size + 4 * n > shard_bytes:
            flush()
            shards.append([])
            size = 0
        offset = (offset + 7919) % (pool.numel() - n)
        shard[key] = pool[offset: offset + n].view(meta.shape).clone()
        shards[-1].append(key)
        size += 4 * n
        total += 4 * n
    flush()
    names = {i: f"model-{i:05d}-of-{len(shards):05d}.safetensors" for i in range(1, len(shards) + 1)}
    for i, name in names.items():
        (folder / f"shard-{i:05d}.safetensors").rename(folder / name)
    weight_map = {key: names[i] for i, keys in enumerate(shards, start=1) for key in keys}
    (folder / "model.safetensors.index.json").write_text(json.dumps({"metadata": {}, "weight_map": weight_map}))
    params = sum(p.numel() for p in layout.parameters())
    return {"shards": len(shards), "checkpoint_bytes": total, "params": params}


def measure(folder: Path, depth: int) -> dict:
    """Run in a fresh process: baseline RSS after imports, then the bf16 build + load and its peak."""
    import torch

    from javisdit.registry import MODELS, build_module

    cfg = model_config(depth)
    # Warm-up: the lazy imports of a first build, on the CPU and on the meta device (torch's meta kernels).
    build_module(dict(type="VASTDiT3-tiny"), MODELS)
    with torch.device("meta"):
        build_module(dict(type="VASTDiT3-tiny"), MODELS)
    baseline = rss_gb()
    start = time.perf_counter()
    model = build_module(cfg, MODELS, from_pretrained=str(folder), dtype=torch.bfloat16, device="cpu")
    seconds = time.perf_counter() - start
    peak = peak_rss_gb()
    tensors = [*model.parameters(), *model.buffers()]
    if any(t.is_meta or t.dtype != torch.bfloat16 for t in tensors):
        raise RuntimeError("the loaded model is not entirely bf16 on the CPU")
    params = sum(p.numel() for p in model.parameters())
    bf16_gb = params * 2 / 1e9
    return {"params": params, "bf16_gb": bf16_gb, "baseline_rss_gb": baseline, "peak_rss_gb": peak,
            "load_seconds": seconds, "ratio": (peak - baseline) / bf16_gb}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--depth", type=int, default=28, help="blocks per tower (28 = XL/2)")
    parser.add_argument("--dir", type=Path, default=None, help="where to write the checkpoint (default: a temp "
                        "folder, removed afterwards)")
    parser.add_argument("--shard-gb", type=float, default=2.0, help="checkpoint shard size")
    parser.add_argument("--json", type=Path, default=None, help="also write the figures here")
    parser.add_argument("--measure", type=Path, default=None, help=argparse.SUPPRESS)  # the fresh process
    args = parser.parse_args()
    if args.measure is not None:
        print(json.dumps(measure(args.measure, args.depth)))
        return

    folder = args.dir if args.dir is not None else Path(tempfile.mkdtemp(prefix="load_memory-"))
    try:
        start = time.perf_counter()
        written = write_checkpoint(folder, args.depth, int(args.shard_gb * 1e9))
        write_seconds = time.perf_counter() - start
        run = subprocess.run([sys.executable, __file__, "--measure", str(folder), "--depth", str(args.depth)],
                             capture_output=True, text=True, check=False, env={**os.environ, "PYTHONPATH": str(REPO)})
        if run.returncode:
            sys.exit(f"the measuring process failed:\n{run.stderr[-3000:]}")
        figures = {**json.loads(run.stdout.strip().splitlines()[-1]), **written, "write_seconds": write_seconds,
                   "depth": args.depth, "ram_gb": os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES") / 1e9,
                   "cpus": os.cpu_count()}
    finally:
        if args.dir is None:
            shutil.rmtree(folder, ignore_errors=True)
    f = figures
    print(f"machine: {f['ram_gb']:.1f} GB RAM, {f['cpus']} CPUs")
    print(f"checkpoint: {f['checkpoint_bytes'] / 1e9:.2f} GB fp32 safetensors in {f['shards']} shard(s), "
          f"written in {f['write_seconds']:.0f} s")
    print(f"model: VASTDiT3-XL/2 structure, depth {f['depth']}, {f['params']:,} parameters; bf16 size "
          f"{f['bf16_gb']:.2f} GB")
    print(f"RSS after imports: {f['baseline_rss_gb']:.2f} GB; peak RSS: {f['peak_rss_gb']:.2f} GB; "
          f"load: {f['load_seconds']:.1f} s ({f['checkpoint_bytes'] / 1e9 / f['load_seconds']:.2f} GB/s read)")
    print(f"(peak - baseline) / bf16 size: {f['ratio']:.3f} (target < 1.3)")
    if args.json is not None:
        args.json.write_text(json.dumps(figures, indent=2) + "\n")


if __name__ == "__main__":
    main()
