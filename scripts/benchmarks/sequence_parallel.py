"""Sequence parallelism on this machine: one VASTDiT3 forward (or, with ``--backward``, forward and backward)
on 1 process against 2 (gloo), and the bytes each rank sends (``javisdit.distributed.sequence_parallel``).

    python scripts/benchmarks/sequence_parallel.py [--tiny] [--backward] [--repeats 1]

The case: VASTDiT3 at XL width (1152 channels, 16 heads) and depth 2 on the 240p / 2 s latent (video
15x30x53 -> 6,075 tokens, audio 56x16 -> 224 tokens), batch 2 (a classifier-free-guidance pair), fp32,
random weights; ``--tiny`` runs the tiny preset on a small latent in seconds (tests). Every process runs
on one thread, so that the 2-process run uses two cores where the 1-process run uses one; the fp32
matmul peak of one thread is measured first. Each run: a warm-up forward whose FLOPs are counted per
rank (``torch.utils.flop_counter``, plus the CPU attention kernel it leaves out), then ``--repeats``
forwards started together after a barrier; a run's time is its slowest rank's best. ``sent`` is the
payload one rank's collectives send per forward; ``max |diff|`` compares the outputs with the 1-process
run's. ``--backward`` times a training step's forward and backward instead (the loss: the mean square of
the outputs, computed by every rank from the gathered output) and compares the gradient norm, after
averaging the ranks' gradients as data-parallel training does, with the 1-process one (relative
difference).
"""

from __future__ import annotations

import argparse
import os
import socket
import sys
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(REPO))
sys.path.insert(0, str(Path(__file__).resolve().parent))

CASES: dict[str, dict] = {
    "mid": dict(model=dict(type="VASTDiT3-XL/2", depth=2), batch=2, video=(15, 30, 53), audio=(56, 16),
                pixels=(240, 426)),
    "tiny": dict(model=dict(type="VASTDiT3-tiny"), batch=2, video=(5, 8, 12), audio=(8, 16), pixels=(64, 96)),
}


def build_case(name: str):
    """(model, inputs) of a case: random weights (every layer acts), the same in every process."""
    import torch

    from javisdit.registry import MODELS, build_module

    case = CASES[name]
    torch.manual_seed(0)
    model = build_module(case["model"], MODELS).eval()
    with torch.no_grad():
        for p in model.parameters():
            if p.requires_grad:
                p.normal_(0, 0.02)
    B, (T, H, W), (Ta, M), (h_px, w_px) = case["batch"], case["video"], case["audio"], case["pixels"]
    c = model.config
    inputs = dict(
        x={"video": torch.randn(B, 4, T, H, W), "audio": torch.randn(B, 8, Ta, M)},
        timestep=torch.full((B,), 500.0), y=torch.randn(B, 1, c.model_max_length, c.caption_channels),
        mask=torch.ones(B, c.model_max_length, dtype=torch.long), fps=torch.full((B,), 24.0),
        height=torch.full((B,), float(h_px)), width=torch.full((B,), float(w_px)),
        spatial_prior=torch.randn(B, c.spatial_prior_len, c.st_prior_channel),
        temporal_prior=torch.randn(B, c.temporal_prior_len, c.st_prior_channel),
    )
    return model, inputs


def _grad_norm(model, sp) -> float:
    """The norm of the gradients averaged over the ranks (as DDP averages them)."""
    import torch
    import torch.distributed as dist

    grads = torch.cat([p.grad.flatten() for p in model.parameters() if p.grad is not None])
    if sp is not None:
        dist.all_reduce(grads)
        grads /= sp.size
    return grads.norm().item()


def _worker(rank: int, world: int, port: int, case: str, repeats: int, backward: bool, out: dict) -> None:
    import torch
    import torch.distributed as dist
    from torch.utils.flop_counter import FlopCounterMode

    from backbone import _attention_flops, _loss
    from javisdit.distributed.sequence_parallel import SequenceParallel, enable_sequence_parallel

    torch.set_num_threads(1)
    sp = None
    if world > 1:
        dist.init_process_group("gloo", init_method=f"tcp://127.0.0.1:{port}", rank=rank, world_size=world)
    try:
        _attention_flops()
        model, inputs = build_case(case)
        if world > 1:
            sp = SequenceParallel.of()
            enable_sequence_parallel(model, sp)
        def step():
            if not backward:
                return model(**inputs)
            model.zero_grad(set_to_none=True)
            result = model(**inputs)
            _loss(result).backward()
            return result

        with torch.set_grad_enabled(backward):
            with FlopCounterMode(display=False) as counter:
                step()
            sent = sp.bytes_sent if sp else 0
            times = []
            for _ in range(repeats):
                if sp:
                    dist.barrier()
                start = time.perf_counter()
                result = step()
                times.append(time.perf_counter() - start)
            sent = ((sp.bytes_sent if sp else 0) - sent) // repeats
        row = dict(seconds=min(times), flops=counter.get_total_flops(), sent=sent)
        if backward:
            row.update(grad_norm=_grad_norm(model, sp))
        elif rank == 0:
            row.update(video=result["video"], audio=result["audio"])
        out[rank] = row
    finally:
        if world > 1:
            dist.destroy_process_group()


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def run(case: str, world: int, repeats: int, backward: bool = False) -> list[dict]:
    """Each rank's result of ``world`` processes on ``case``."""
    import torch.multiprocessing as mp

    with mp.Manager() as manager:
        out = manager.dict()
        mp.spawn(_worker, args=(world, _free_port(), case, repeats, backward, out), nprocs=world)
        return [out[r] for r in range(world)]


def header(backward: bool) -> str:
    timed, compared = ("fwd+bwd s", "grad norm rel diff") if backward else ("forward s", "max abs diff")
    return (f"| processes | {timed} | speed-up | GFLOP per rank | % of 1-thread peak | MB sent per rank "
            f"| {compared} |\n|---|---|---|---|---|---|---|")


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--tiny", action="store_true", help="the tiny model on a small latent (seconds)")
    parser.add_argument("--repeats", type=int, default=1, help="timed forwards (steps with --backward) per run; the best counts")
    parser.add_argument("--backward", action="store_true", help="time forward and backward (a training step)")
    args = parser.parse_args(argv)
    case = "tiny" if args.tiny else "mid"

    import torch

    from backbone import matmul_peak

    torch.set_num_threads(1)
    peak = matmul_peak("fp32", size=512 if args.tiny else 2048, repeats=3 if args.tiny else 10)
    spec = CASES[case]
    (T, H, W), (Ta, M) = spec["video"], spec["audio"]
    tokens = T * -(-H // 2) * -(-W // 2), Ta // 4 * M
    print(f"{os.cpu_count()} CPUs, torch {torch.__version__}, 1 thread per process; fp32 matmul peak of one "
          f"thread: {peak / 1e9:.1f} GFLOP/s", flush=True)
    print(f"case {case}: {spec['model']}, batch {spec['batch']}, fp32, {tokens[0]:,} video + {tokens[1]:,} audio "
          "tokens per sample", flush=True)
    print(header(args.backward), flush=True)
    reference = None
    for world in (1, 2):
        ranks = run(case, world, args.repeats, args.backward)
        seconds = max(r["seconds"] for r in ranks)
        flops = max(r["flops"] for r in ranks)
        if reference is None:
            reference = dict(ranks[0], seconds=seconds)
            diff = "-"
        elif args.backward:
            diff = f"{abs(ranks[0]['grad_norm'] - reference['grad_norm']) / reference['grad_norm']:.2e}"
        else:
            diff = f"{max((ranks[0][k] - reference[k]).abs().max().item() for k in ('video', 'audio')):.2e}"
        cells = [str(world), f"{seconds:.3f}", f"{reference['seconds'] / seconds:.2f}", f"{flops / 1e9:,.1f}",
                 f"{100 * flops / seconds / peak:.1f} %", f"{max(r['sent'] for r in ranks) / 1e6:,.1f}", diff]
        print("| " + " | ".join(cells) + " |", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
