"""scripts/benchmarks/gpu_check.sh: its parts run here (the table, the forward on a tiny model); on a
machine without CUDA it says so instead of reporting GPU figures."""

from __future__ import annotations

import importlib.util
import subprocess
import sys
from pathlib import Path

import pytest
import torch

REPO = Path(__file__).resolve().parents[1]
SCRIPT = REPO / "scripts" / "benchmarks" / "gpu_check.py"

JUNIT = """<?xml version="1.0" encoding="utf-8"?><testsuites><testsuite name="pytest">
<testcase classname="tests.models.layers.test_gpu_kernels" name="test_flash_attn_matches_sdpa" time="1.25"/>
<testcase classname="tests.models.layers.test_gpu_kernels" name="test_xformers_matches_sdpa" time="0.01">
<skipped type="pytest.skip" message="xformers is not installed (requirements/requirements-gpu.txt)"/></testcase>
<testcase classname="tests.training.test_gpu_training" name="test_zero2_resume" time="30.0">
<failure message="AssertionError: losses differ&#10;more">trace</failure></testcase>
</testsuite></testsuites>"""


@pytest.fixture(scope="module")
def gpu_check():
    spec = importlib.util.spec_from_file_location("gpu_check", SCRIPT)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_junit_rows(gpu_check):
    rows = gpu_check.parse_junit(JUNIT)
    assert rows == [
        ("test_gpu_kernels::test_flash_attn_matches_sdpa", "passed", "1.2 s"),
        ("test_gpu_kernels::test_xformers_matches_sdpa", "skipped",
         "xformers is not installed (requirements/requirements-gpu.txt)"),
        ("test_gpu_training::test_zero2_resume", "failed", "AssertionError: losses differ"),
    ]
    text = gpu_check.table([("check", "result", "detail"), *rows])
    lines = text.splitlines()
    assert lines[1].startswith("check  ") and lines[-2].split(" | ")[1].strip() == "failed"


def test_forward_benchmark_on_a_tiny_model(gpu_check):
    result = gpu_check.forward_benchmark("VASTDiT3-tiny", "cpu", num_frames=17, size=(64, 64), repeats=1)
    assert result["latent"] == (5, 8, 8) and result["audio_latent"] == (8, 24, 16)
    assert result["forward_s"] > 0 and result["params"] > 0 and result["gpu"] == "cpu"
    # every weight matrix meets at least one token of each of the 2 samples (2 FLOPs a multiply-add); the
    # matrices hold nearly all parameters
    assert result["forward_flops"] > result["params"]


def test_matmul_peak_counts_two_flops_per_multiply_add(gpu_check, monkeypatch):
    clock = iter([0.0, 0.5])  # ten 64x64x64 products in half a second
    monkeypatch.setattr(gpu_check.time, "perf_counter", lambda: next(clock))
    assert gpu_check.matmul_peak("cpu", size=64, repeats=10) == 2 * 64**3 * 10 / 0.5


@pytest.mark.skipif(torch.cuda.is_available(), reason="checks the message of a machine without CUDA")
def test_without_cuda_it_says_so():
    result = subprocess.run(["bash", str(REPO / "scripts/benchmarks/gpu_check.sh")], capture_output=True, text=True,
                            timeout=120)
    assert result.returncode == 1
    assert "gpu_check: no CUDA device here; nothing to check" in result.stderr


def test_compile_adds_a_compiled_row(gpu_check, monkeypatch, capsys):
    import javisdit.models.compile

    compiled = []  # the blocks' compilation itself is tested in tests/models/test_compile.py
    monkeypatch.setattr(javisdit.models.compile, "compile_blocks", lambda model: compiled.append(type(model).__name__))
    monkeypatch.setattr(sys, "argv", ["gpu_check.py", "--device", "cpu", "--model", "VASTDiT3-tiny", "--skip-tests",
                                      "--repeats", "1", "--compile"])
    assert gpu_check.main() == 0
    rows = [line for line in capsys.readouterr().out.splitlines() if "bf16 forward" in line]
    assert [row.split(" | ")[0].split(", ")[-1].split(" (")[0].strip() for row in rows] == ["eager", "compiled"]
    assert all(row.split(" | ")[1].strip() == "passed" and "bf16 mm peak" in row for row in rows)
    assert compiled == ["VASTDiT3"]
