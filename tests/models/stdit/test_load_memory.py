"""Loading for inference holds the model once: streamed from an fp32 checkpoint into bf16, the peak host
memory stays near the model's bf16 size (it was ~2.8x with the whole-file load and cast afterwards).

Runs ``scripts/benchmarks/load_memory.py`` at XL width and depth 4 (563M parameters, a 2.3 GB fp32
checkpoint written to tmp_path); the measuring process is a fresh one, so the figure is its own.
"""

import json

import pytest


def test_bf16_load_of_an_fp32_checkpoint_peaks_near_the_bf16_size(run_script, tmp_path):
    figures = tmp_path / "figures.json"
    result = run_script("benchmarks/load_memory.py", "--depth", "4", "--dir", str(tmp_path / "ckpt"),
                        "--shard-gb", "1", "--json", str(figures), timeout=240)
    assert result.returncode == 0, result.stderr[-3000:]
    f = json.loads(figures.read_text())
    assert f["params"] == 563_034_372 and f["shards"] == 3
    assert f["bf16_gb"] == pytest.approx(1.126, abs=1e-3)
    assert f["checkpoint_bytes"] > 2 * f["bf16_gb"] * 1e9  # stored in fp32
    assert 0.9 < f["ratio"] < 1.3, f  # peak RSS above the post-import baseline, in bf16 model sizes
