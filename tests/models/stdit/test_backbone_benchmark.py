"""scripts/benchmarks/backbone.py: the machine's peak, the FLOPs of a forward and the MFU it prints."""

import json
import subprocess
import sys

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


@pytest.mark.slow
def test_the_script_prints_the_peak_and_each_case_with_its_mfu(tmp_path):
    out = subprocess.run([sys.executable, str(REPO / "scripts" / "benchmarks" / "backbone.py"), "--cases", "tiny-fp32",
                          "--repeats", "1", "--json", str(tmp_path / "b.json")], capture_output=True, text=True,
                         timeout=600)
    assert out.returncode == 0, out.stderr
    lines = out.stdout.splitlines()
    assert "matmul peak (torch.mm 2048^2): fp32" in lines[0]
    row = next(line for line in lines if line.startswith("| tiny-fp32 | eager"))
    results = json.loads((tmp_path / "b.json").read_text())
    case = results["cases"][0]
    assert case["forward_flops"] > 0 and case["fwd_bwd_flops"] > 2 * case["forward_flops"]
    mfu = 100 * case["forward_flops"] / case["forward_s"] / results["peak_flops"]["fp32"]
    assert f"{mfu:.1f} %" in row
