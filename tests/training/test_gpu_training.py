"""Tiny stage 3 under ZeRO-2 (``plugin="zero2"``, bf16 working weights, fp32 sharded masters, torch
AdamW) on one CUDA device: a resumed run repeats the uninterrupted one exactly, because the checkpoint
carries the fp32 masters (``master.safetensors``) besides the bf16 ``model/``; without them the
masters would restart rounded to bf16 and the runs would part. Skipped without CUDA."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pandas as pd
import pytest
import torch
from conftest import REPO

pytestmark = [pytest.mark.gpu, pytest.mark.slow]

STEPS = 6  # one step an epoch (one batch of two clips); checkpoints every 2 steps
RESUME_AT = 2

# Deterministic kernels, so that two processes doing the same arithmetic get the same bits. Strict, not
# warn_only: with warn_only, SDPA's memory-efficient attention (the masked video-audio cross-attention)
# keeps its non-deterministic backward, and on an H200 (2026-12-04) the resumed run's masters then
# differed from the uninterrupted run's in one tensor (va_cross_blocks.1.cross_attn.m2_proj.weight, by
# 2.1e-6) while all losses agreed bit for bit.
_DRIVER = ("import sys, torch; torch.use_deterministic_algorithms(True); "
           "from javisdit.cli import main; sys.exit(main('train', prog='scripts/train.py'))")


def _train(config: Path, data: str, outputs: Path, *extra: str) -> Path:
    env = {**os.environ, "PYTHONPATH": str(REPO), "CUBLAS_WORKSPACE_CONFIG": ":4096:8", "OMP_NUM_THREADS": "1"}
    result = subprocess.run([sys.executable, "-c", _DRIVER, str(config), "--data-path", data, "--outputs",
                             str(outputs), *extra], cwd=REPO, env=env, capture_output=True, text=True, timeout=600,
                            check=False)
    assert result.returncode == 0, result.stderr[-4000:]
    (run,) = [p for p in outputs.iterdir() if p.is_dir()]
    return run


def _losses(run: Path) -> list[float]:
    rows = [json.loads(line) for line in (run / "metrics.jsonl").read_text().splitlines()]
    return [row["loss"] for row in rows if "loss" in row]


def _tensors(path: Path) -> dict[str, torch.Tensor]:
    from safetensors.torch import load_file

    return load_file(str(path))


def _equal(a: dict[str, torch.Tensor], b: dict[str, torch.Tensor]) -> bool:
    return a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)


@pytest.fixture(scope="module")
def runs(synthetic_data, tmp_path_factory) -> dict[str, Path]:
    tmp = tmp_path_factory.mktemp("zero2")
    table = pd.read_csv(synthetic_data["stage3_jav"]).head(2)  # one batch: every step sees both clips
    base = Path(synthetic_data["stage3_jav"]).parent
    for column in [c for c in table.columns if c == "path" or c.endswith("_path")]:
        table[column] = [str(base / p) for p in table[column]]
    data = str(tmp / "stage3_jav.csv")
    table.to_csv(data, index=False)
    config = tmp / "stage3_zero2.py"
    config.write_text(f'_base_ = ["{REPO / "configs" / "tiny" / "stage3_jav.py"}"]\n'
                      'plugin = "zero2"\ndtype = "bf16"\n')
    common = ["--lr", "1e-3", "--warmup-steps", "1", "--cfg-options", f"epochs={STEPS}", f"ckpt_every={RESUME_AT}",
              "save_total_limit=10", "model.prior_attn_batch_union=False"]
    full = _train(config, data, tmp / "full", *common)
    middle = full / f"epoch{RESUME_AT - 1:03d}-global_step{RESUME_AT}"
    resumed = _train(config, data, tmp / "resumed", *common, "--load", str(middle))
    # the same resume with the masters rebuilt from the bf16 model/ (as before master.safetensors)
    rounded_ckpt = shutil.copytree(middle, tmp / "rounded" / middle.name)
    (rounded_ckpt / "master.safetensors").unlink()
    rounded = _train(config, data, tmp / "rounded_run", *common, "--load", str(rounded_ckpt))
    return dict(full=full, resumed=resumed, rounded=rounded, middle=middle)


def test_checkpoint_holds_fp32_masters_of_the_trained_tensors(runs):
    middle = runs["middle"]
    masters, model = _tensors(middle / "master.safetensors"), _tensors(middle / "model" / "model.safetensors")
    ema = torch.load(middle / "ema.pt", weights_only=True)
    assert masters and masters.keys() == ema.keys() and set(masters) < set(model)
    assert {k.split(".")[0] for k in masters} == {"st_t_block", "st_prior_embedder", "video_st_prior_blocks",
                                                  "audio_st_prior_blocks", "va_cross_blocks"}
    assert all(v.dtype == torch.float32 for v in [*masters.values(), *ema.values()])
    assert all(model[k].dtype == torch.bfloat16 and torch.equal(model[k], v.bfloat16()) for k, v in masters.items())
    assert any(not torch.equal(v, v.bfloat16().float()) for v in masters.values())  # more than bf16 holds


def test_resume_under_zero_repeats_the_uninterrupted_run(runs):
    full, resumed = runs["full"], runs["resumed"]
    assert len(_losses(full)) == STEPS
    assert _losses(resumed) == _losses(full)[RESUME_AT:]
    final = f"epoch{STEPS - 1:03d}-global_step{STEPS}"
    for name in ("master.safetensors", "model/model.safetensors"):
        assert _equal(_tensors(full / final / name), _tensors(resumed / final / name)), name
    a, b = (torch.load(r / final / "ema.pt", weights_only=True) for r in (full, resumed))
    assert _equal(a, b)


def test_without_the_masters_the_resumed_run_parts(runs):
    final = f"epoch{STEPS - 1:03d}-global_step{STEPS}"
    assert not _equal(_tensors(runs["full"] / final / "master.safetensors"),
                      _tensors(runs["rounded"] / final / "master.safetensors"))
