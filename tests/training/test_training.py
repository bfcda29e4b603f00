"""The three training stages end to end on CPU: tiny configs, synthetic clips, real scripts (one and two
processes with torchrun over gloo), checkpoints, resume, chaining of the stages."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pandas as pd
import pytest
import torch
from conftest import REPO

from javisdit.models.loading import read_state_dict
from javisdit.models.stdit.policy import SYNC_MODULES

pytestmark = pytest.mark.dist

STEPS = 24  # optimizer steps of the learning runs (two clips seen again and again)
LR = "1e-3"


def _fixed_batch_csv(csv: str | Path, out: Path, rows: int = 2) -> str:
    """The first ``rows`` clips of a stage CSV: with a global batch of ``rows`` every step sees them all."""
    table = pd.read_csv(csv).head(rows)
    base = Path(csv).parent
    for column in [c for c in table.columns if c == "path" or c.endswith("_path")]:
        table[column] = [str(base / p) for p in table[column]]
    path = out / Path(csv).name
    table.to_csv(path, index=False)
    return str(path)


def _config(tmp: Path, base: str, batch_size: int, extra: str = "") -> str:
    path = tmp / f"{Path(base).stem}_bs{batch_size}.py"
    path.write_text(f'_base_ = ["{REPO / "configs" / "tiny" / base}"]\n'
                    f'bucket_config = {{"_delete_": True, "144p": {{17: (1.0, {batch_size})}}}}\n' + extra)
    return str(path)


def _train(script: str, config: str, *args: str, procs: int = 1, timeout: float = 240) -> subprocess.CompletedProcess:
    env = {**os.environ, "PYTHONPATH": str(REPO), "OMP_NUM_THREADS": "1"}
    launcher = [sys.executable]
    if procs > 1:
        launcher += ["-m", "torch.distributed.run", "--standalone", "--nproc_per_node", str(procs)]
    result = subprocess.run([*launcher, str(REPO / "scripts" / script), config, *args], cwd=REPO, env=env,
                            capture_output=True, text=True, timeout=timeout, check=False)
    return result


def _ok(result: subprocess.CompletedProcess) -> subprocess.CompletedProcess:
    assert result.returncode == 0, result.stderr[-4000:]
    return result


def _run_dir(outputs: Path) -> Path:
    runs = sorted(p for p in outputs.iterdir() if p.is_dir())
    assert len(runs) == 1, runs
    return runs[0]


def _losses(run: Path) -> list[float]:
    rows = [json.loads(line) for line in (run / "metrics.jsonl").read_text().splitlines()]
    return [row["loss"] for row in rows if "loss" in row]


def _learned(losses: list[float]) -> bool:
    head, tail = losses[:6], losses[-6:]
    return sum(tail) / len(tail) < 0.9 * sum(head) / len(head)


@pytest.fixture(scope="module")
def data(synthetic_data, tmp_path_factory) -> dict[str, str]:
    out = tmp_path_factory.mktemp("fixed_batch")
    return {stage: _fixed_batch_csv(synthetic_data[stage], out) for stage in ("stage1_audio", "stage2_prior",
                                                                              "stage3_jav")}


@pytest.fixture(scope="module")
def stage1(data, tmp_path_factory) -> Path:
    """Stage 1 with two processes, one clip each, learning for STEPS steps."""
    tmp = tmp_path_factory.mktemp("stage1")
    config = _config(tmp, "stage1_audio.py", 1)
    _ok(_train("train.py", config, "--data-path", data["stage1_audio"], "--outputs", str(tmp / "runs"), "--lr", LR,
               "--warmup-steps", "0", "--cfg-options", f"epochs={STEPS}", "ckpt_every=0", procs=2))
    return _run_dir(tmp / "runs")


@pytest.fixture(scope="module")
def stage2(data, tmp_path_factory) -> Path:
    tmp = tmp_path_factory.mktemp("stage2")
    config = _config(tmp, "stage2_prior.py", 1)
    _ok(_train("train_prior.py", config, "--data-path", data["stage2_prior"], "--outputs", str(tmp / "runs"),
               "--lr", LR, "--warmup-steps", "0", "--cfg-options", f"epochs={STEPS}", "ckpt_every=0", procs=2))
    return _run_dir(tmp / "runs")


def _stage3_args(data, stage1: Path, stage2: Path, outputs: Path, *options: str) -> list[str]:
    # Per-sample prior attention: the original's default attends to the priors of the whole batch,
    # which makes a sample's gradient depend on its batch mates (and so on the number of processes).
    return ["--data-path", data["stage3_jav"], "--outputs", str(outputs), "--lr", LR, "--warmup-steps", "3",
            "--cfg-options", f"epochs={STEPS}", "ckpt_every=12", f'model.weight_init_from=["{stage1}"]',
            f"prior_encoder.from_pretrained={stage2}", "model.prior_attn_batch_union=False", *options]


@pytest.fixture(scope="module")
def stage3(data, stage1, stage2, tmp_path_factory) -> Path:
    """Stage 3 in one process (both clips in one batch), from the stage-1 and stage-2 run folders."""
    tmp = tmp_path_factory.mktemp("stage3")
    _ok(_train("train.py", _config(tmp, "stage3_jav.py", 2), *_stage3_args(data, stage1, stage2, tmp / "runs")))
    return _run_dir(tmp / "runs")


# ----- each stage learns ----------------------------------------------------------------------------------


def test_stage1_two_processes_learn(stage1):
    losses = _losses(stage1)
    assert len(losses) == STEPS
    assert _learned(losses), losses
    log = (stage1 / "log.txt").read_text()
    assert "2 process(es)" in log and "stage 1 (audio branch)" in log


def test_stage2_two_processes_learn(stage2):
    losses = _losses(stage2)
    assert len(losses) == STEPS
    assert _learned(losses), losses
    rows = [json.loads(line) for line in (stage2 / "metrics.jsonl").read_text().splitlines()]
    assert {"prior/spatial_hinge", "prior/temporal_va", "prior/kl", "lr", "grad_norm"} <= set(rows[-1])
    # stage 2 warms up too, and ends with a checkpoint (the original did neither)
    assert (stage2 / f"epoch{STEPS - 1:03d}-global_step{STEPS}" / "model" / "model.safetensors").is_file()


def test_stage3_learns_and_logs(stage3):
    losses = _losses(stage3)
    assert len(losses) == STEPS
    assert _learned(losses), losses
    rows = [json.loads(line) for line in (stage3 / "metrics.jsonl").read_text().splitlines()]
    assert [round(r["lr"] * 1e3, 6) for r in rows[:4]] == [0.25, 0.5, 0.75, 1.0]  # warm-up 3: (k+1)/4
    assert {"loss/video", "loss/audio", "steps_per_s", "samples_per_s", "skipped", "memory_gb",
            "time/data", "time/forward_backward", "time/optimizer"} <= set(rows[0])
    assert rows[0]["samples_per_s"] == pytest.approx(2 * rows[0]["steps_per_s"])


# ----- data parallelism and resume ------------------------------------------------------------------------


def test_two_processes_match_one(data, stage1, stage2, stage3, tmp_path):
    """Two processes with one clip each follow the single-process run with both clips in one batch."""
    _ok(_train("train.py", _config(tmp_path, "stage3_jav.py", 1),
               *_stage3_args(data, stage1, stage2, tmp_path / "runs"),
               procs=2))
    run = _run_dir(tmp_path / "runs")
    assert _losses(run) == pytest.approx(_losses(stage3), rel=1e-5)
    # rank 0 alone writes ema.pt: the file one process writes. Not bit for bit: the losses agree to 1e-7,
    # but Adam turns the last-bit differences of the near-zero gradients of the (zero-initialised) sync
    # modules into ±lr steps, so the weights and their averages part by up to ~1 % (relative norm)
    final = f"epoch{STEPS - 1:03d}-global_step{STEPS}"
    one, two = (torch.load(r / final / "ema.pt", weights_only=True) for r in (stage3, run))
    assert one.keys() == two.keys() and all(v.dtype == torch.float32 for v in two.values())
    assert all(one[k].shape == two[k].shape and (one[k] - two[k]).norm() <= 0.05 * one[k].norm() for k in one)


def test_resume_repeats_the_uninterrupted_run(data, stage1, stage2, stage3, tmp_path):
    checkpoint = stage3 / "epoch011-global_step12"
    args = _stage3_args(data, stage1, stage2, tmp_path / "runs")
    _ok(_train("train.py", _config(tmp_path, "stage3_jav.py", 2), *args, "--load", str(checkpoint)))
    resumed = _run_dir(tmp_path / "runs")
    assert _losses(resumed) == _losses(stage3)[12:]  # bit for bit: same batches, noise, masks, dropout
    final = stage3 / f"epoch{STEPS - 1:03d}-global_step{STEPS}"
    again = resumed / final.name
    for read in (read_state_dict, lambda folder: torch.load(folder / "ema.pt", weights_only=True)):
        a, b = read(final), read(again)
        assert a.keys() == b.keys()
        assert all(torch.equal(a[k], b[k]) for k in a)


def test_checkpoint_layout(stage3):
    names = sorted(p.name for p in stage3.iterdir())
    # save_total_limit 2 keeps the last two of the checkpoints at steps 12 and 24
    assert names == ["config.txt", "epoch011-global_step12", f"epoch{STEPS - 1:03d}-global_step{STEPS}", "log.txt",
                     "metrics.jsonl", "tensorboard"]
    ckpt = stage3 / "epoch011-global_step12"
    assert sorted(p.name for p in ckpt.iterdir()) == ["ema.pt", "lr_scheduler", "model", "optimizer",
                                                      "running_states.json", "sampler"]
    assert json.loads((ckpt / "running_states.json").read_text()) == {
        "epoch": 11, "step": 1, "global_step": 12, "batch_size": None}
    assert torch.load(ckpt / "sampler", weights_only=True) == {"seed": 42, "epoch": 11,
                                                               "last_micro_batch_access_index": 1}
    assert torch.load(ckpt / "lr_scheduler", weights_only=True)["last_epoch"] == 12
    config = json.loads((stage3 / "config.txt").read_text())
    assert config["model"]["type"] == "VASTDiT3-XL/2" and config["lr"] == 1e-3
    # EMA: fp32, the trained tensors (the sync modules) only; frozen ones are in model/; with ddp the
    # parameters are the fp32 masters, so no master.safetensors
    ema, model = torch.load(ckpt / "ema.pt", weights_only=True), read_state_dict(ckpt / "model")
    assert ema and set(ema) < set(model) and all(v.dtype == torch.float32 for v in ema.values())
    assert {k.split(".")[0] for k in ema} == set(SYNC_MODULES)
    assert {k for k in model if k.startswith(SYNC_MODULES)} - {"st_prior_embedder.y_embedding"} == set(ema)  # a buffer
    trained = "va_cross_blocks.0.cross_attn.m1_proj.weight"
    assert not torch.equal(ema[trained], model[trained])


def test_stage3_starts_from_stage1_and_stage2_runs(stage1, stage2, stage3):
    first = read_state_dict(stage1)  # the run folder: its latest checkpoint
    jav = read_state_dict(stage3 / "epoch011-global_step12")
    audio = [k for k in first if k.startswith(("audio_spatial_blocks.", "audio_temporal_blocks.", "ax_embedder."))]
    assert audio and all(torch.equal(first[k], jav[k]) for k in audio)  # frozen in stage 3, from stage 1
    log = (stage3 / "log.txt").read_text()
    assert "from 1 checkpoint(s)" in log
    from javisdit.models.prior import build_stib_prior

    prior = build_stib_prior(from_pretrained=str(stage2), text_tower="tiny", hidden_size=64, num_encoder_layers=1,
                             num_decoder_layers=1, enable_layernorm_kernel=False)
    trained = read_state_dict(stage2)
    assert all(torch.equal(prior.state_dict()[k], v) for k, v in trained.items() if k in prior.state_dict())


def test_inference_reads_a_training_checkpoint(stage3, run_script, tmp_path):
    model = stage3 / "epoch011-global_step12" / "model"
    result = run_script("inference.py", "configs/tiny/inference.py", "--ckpt-path", str(model), "--prompt",
                        "a ball bounces", "--save-dir", str(tmp_path), "--num-sampling-steps", "2")
    assert result.returncode == 0, result.stderr[-3000:]
    assert (tmp_path / "sample_0000.mp4").stat().st_size > 0


def test_start_from_scratch_keeps_weights_and_restarts_counters(data, stage1, stage2, stage3, tmp_path):
    checkpoint = stage3 / "epoch011-global_step12"
    _ok(_train("train.py", _config(tmp_path, "stage3_jav.py", 2),
               *_stage3_args(data, stage1, stage2, tmp_path / "runs", "max_steps=2"), "--load", str(checkpoint),
               "--start-from-scratch"))
    run = _run_dir(tmp_path / "runs")
    rows = [json.loads(line) for line in (run / "metrics.jsonl").read_text().splitlines()]
    assert [r["global_step"] for r in rows] == [1, 2] and rows[0]["lr"] == pytest.approx(0.25e-3)  # warm-up again
    # same clips and draws as the first step of the original run (epoch 0), but the weights of step 12
    assert rows[0]["loss"] != pytest.approx(_losses(stage3)[0], rel=1e-3)
    assert (run / "epoch001-global_step2" / "running_states.json").is_file()  # one step an epoch
