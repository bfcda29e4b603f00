"""scripts/benchmarks/backbone.py: the machine's peak, the FLOPs of a forward and the MFU it prints."""

import json
import os
import subprocess
import sys
import textwrap

import pytest
import torch
import torch.nn.functional as F

from conftest import REPO

sys.path.insert(0, str(REPO / "scripts" / "benchmarks"))
import backbone  # noqa: E402


def test_attention_flops_are_counted_on_the_cpu_kernel():
    from torch.utils.flop_counter import FlopCounterMode

    backbone._attention_flops()
    q = torch.randn(2, 3, 10, 8, requires_grad=True)
    k, v = torch.randn(2, 3, 12, 8), torch.randn(2, 3, 12, 8)
    with FlopCounterMode(display=False) as counter:
        F.scaled_dot_product_attention(q, k, v)
    assert counter.get_total_flops() == 4 * 2 * 3 * 10 * 12 * 8  # QK^T and PV, 2 FLOPs a multiply-add
    with FlopCounterMode(display=False) as counter:
        F.scaled_dot_product_attention(q, k, v).sum().backward()
    assert counter.get_total_flops() == 3 * 4 * 2 * 3 * 10 * 12 * 8  # forward + twice that backward


def test_matmul_peak_is_a_plausible_rate():
    peak = backbone.matmul_peak("fp32", size=256, repeats=2)
    assert 1e8 < peak < 1e15


# Minor page faults of allocating, writing and freeing a 64 MiB tensor (above glibc's largest mmap
# threshold) five times, after 15 rounds of warm-up: with freed memory kept, the heap grows for the
# first few (up to 8 seen here) until a freed block is large enough for the next aligned request.
FAULT_PROBE = textwrap.dedent("""
    import resource, torch

    def faults(rounds):
        start = resource.getrusage(resource.RUSAGE_SELF).ru_minflt
        for _ in range(rounds):
            x = torch.empty(16 * 2**20, dtype=torch.float32)
            x.fill_(1.0)
            del x
        return resource.getrusage(resource.RUSAGE_SELF).ru_minflt - start

    faults(15)
    print(faults(5))
""")


def _probe_faults(extra_env: dict) -> int:
    env = {k: v for k, v in os.environ.items() if k not in backbone.KEEP_FREED_MEMORY}
    out = subprocess.run([sys.executable, "-c", FAULT_PROBE], capture_output=True, text=True, timeout=120,
                         env={**env, **extra_env})
    assert out.returncode == 0, out.stderr[-2000:]
    return int(out.stdout.split()[-1])


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="glibc's malloc settings")
def test_keep_freed_memory_reuses_large_blocks_without_page_faults():
    """--keep-freed-memory: without it every round maps its 64 MiB afresh and faults it in (16,384 pages of
    4 KiB, or 32 huge pages where transparent huge pages are always on); with it, once warm, the heap's
    pages are reused."""
    system = _probe_faults({})
    kept = _probe_faults(backbone.KEEP_FREED_MEMORY)
    assert system >= 5 * 32
    assert kept <= system // 10, (system, kept)


@pytest.mark.slow
def test_the_script_prints_the_peak_and_each_case_with_its_mfu(tmp_path):
    out = subprocess.run([sys.executable, str(REPO / "scripts" / "benchmarks" / "backbone.py"), "--cases", "tiny-fp32",
                          "--repeats", "1", "--json", str(tmp_path / "b.json"), "--keep-freed-memory"],
                         capture_output=True, text=True, timeout=600)
    assert out.returncode == 0, out.stderr
    lines = out.stdout.splitlines()
    assert "matmul peak (torch.mm 2048^2): fp32" in lines[0] and lines[0].endswith("malloc: freed memory kept")
    row = next(line for line in lines if line.startswith("| tiny-fp32 | eager"))
    results = json.loads((tmp_path / "b.json").read_text())
    case = results["cases"][0]
    assert case["malloc"] == backbone.KEEP_FREED_MEMORY  # the case's process ran with the settings
    assert case["forward_flops"] > 0 and case["fwd_bwd_flops"] > 2 * case["forward_flops"]
    mfu = 100 * case["forward_flops"] / case["forward_s"] / results["peak_flops"]["fp32"]
    assert f"{mfu:.1f} %" in row
