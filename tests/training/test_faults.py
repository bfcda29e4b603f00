"""Training under bad input and faults: wrong configs and data, a diverging loss, a kill during a
checkpoint write, a dying rank; plus the feature path and the trainable sets of each stage."""

from __future__ import annotations

import importlib.util
import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pandas as pd
import pytest
import torch
from conftest import REPO

from javisdit.config import parse_configs
from javisdit.models.loading import read_state_dict
from javisdit.training.checkpoint import open_checkpoint

pytestmark = pytest.mark.dist


def _command(script: str, *args: str, procs: int = 1) -> list[str]:
    launcher = [sys.executable]
    if procs > 1:
        launcher += ["-m", "torch.distributed.run", "--standalone", "--nproc_per_node", str(procs)]
    return [*launcher, str(REPO / "scripts" / script), *args]


def _env() -> dict[str, str]:
    return {**os.environ, "PYTHONPATH": str(REPO), "OMP_NUM_THREADS": "1"}


def _run(script: str, *args: str, procs: int = 1, timeout: float = 180) -> subprocess.CompletedProcess:
    return subprocess.run(_command(script, *args, procs=procs), cwd=REPO, env=_env(), capture_output=True, text=True,
                          check=False,
                          timeout=timeout)


def _only_run(outputs: Path) -> Path:
    (run,) = [p for p in outputs.iterdir() if p.is_dir()]
    return run


# ----- bad input ------------------------------------------------------------------------------------------


@pytest.mark.parametrize("args, message", [
    (["--cfg-options", "plugin=zero3"], "unknown plugin 'zero3'; valid: zero2, ddp"),
    (["--load", "{tmp}"], "not a training checkpoint (no running_states.json and no model)"),
    (["--load", "{tmp}/nowhere"], "no such folder"),
    (["--start-from-scratch"], "--start-from-scratch needs --load"),
    (["--cfg-options", "nan_policy=ignore"], "nan_policy must be one of stop, skip"),
    (["--cfg-options", "dist_timeout=0"], "dist_timeout must be a positive number of minutes, got 0"),
    (["--cfg-options", "optimizer=sgd"], "unknown optimizer 'sgd'; valid: adamw, hybrid_adam"),
    pytest.param(["--wandb", "True"], "--wandb True needs the wandb package: pip install wandb",
                 marks=pytest.mark.skipif(importlib.util.find_spec("wandb") is not None, reason="wandb is installed")),
])
def test_bad_training_arguments(args, message, synthetic_data, tmp_path):
    args = [a.format(tmp=tmp_path) for a in args]
    result = _run("train.py", "configs/tiny/stage1_audio.py", "--data-path", str(synthetic_data["stage1_audio"]),
                  "--outputs", str(tmp_path / "runs"), *args)
    assert result.returncode == 2
    assert message in result.stderr and "Traceback" not in result.stderr


def test_data_of_another_stage(synthetic_data, tmp_path):
    # an audio-caption CSV (stage 1) given to stage 3
    audio_csv = tmp_path / "audio.csv"
    pd.read_csv(synthetic_data["stage1_audio"])[["audio_path", "num_frames", "text"]].to_csv(audio_csv, index=False)
    result = _run("train.py", "configs/tiny/stage3_jav.py", "--data-path", str(audio_csv), "--outputs",
                  str(tmp_path / "runs"))
    assert result.returncode == 2
    assert "lacks column(s) path, height, width needed for stages 2 and 3" in result.stderr
    # a CSV given to a feature config, and the other way round
    result = _run("train.py", "configs/tiny/stage3_jav_feat.py", "--data-path", str(synthetic_data["stage3_jav"]),
                  "--outputs", str(tmp_path / "runs"))
    assert result.returncode == 2 and "no feature files (*.bin) found" in result.stderr
    result = _run("train.py", "configs/tiny/stage3_jav.py", "--data-path", str(tmp_path), "--outputs",
                  str(tmp_path / "runs"))
    assert result.returncode == 2 and "error:" in result.stderr and "Traceback" not in result.stderr


def test_diverging_loss_stops_and_keeps_the_last_checkpoint(synthetic_data, tmp_path):
    args = ["configs/tiny/stage1_audio.py", "--data-path", str(synthetic_data["stage1_audio"]), "--lr", "1e30",
            "--warmup-steps", "0", "--cfg-options", "epochs=4", "ckpt_every=1"]
    result = _run("train.py", *args, "--outputs", str(tmp_path / "stop"))
    assert result.returncode == 2, result.stderr[-2000:]
    assert "the loss is not finite at epoch 1, step 0, global step 1" in result.stderr
    run = _only_run(tmp_path / "stop")
    assert f"Last checkpoint: {run / 'epoch000-global_step1'}" in result.stderr
    assert open_checkpoint(run / "epoch000-global_step1").states.global_step == 1
    assert all(torch.isfinite(v).all() for v in read_state_dict(run / "epoch000-global_step1").values()
               if v.is_floating_point())

    result = _run("train.py", *args, "--outputs", str(tmp_path / "skip"), "--cfg-options", "epochs=4", "ckpt_every=1",
                  "nan_policy=skip")
    assert result.returncode == 0, result.stderr[-2000:]
    rows = [json.loads(line) for line in (_only_run(tmp_path / "skip") / "metrics.jsonl").read_text().splitlines()]
    assert [r.get("skipped_steps", 0) for r in rows] == [0, 1, 1, 1]
    assert "step skipped (nan_policy=skip)" in result.stderr


# ----- faults ---------------------------------------------------------------------------------------------


def test_kill_during_a_checkpoint_write_keeps_the_previous_one(synthetic_data, tmp_path):
    outputs = tmp_path / "runs"
    process = subprocess.Popen(
        _command("train.py", "configs/tiny/stage1_audio.py", "--data-path", str(synthetic_data["stage1_audio"]),
                 "--outputs", str(outputs), "--cfg-options", "epochs=1000", "ckpt_every=1", "save_total_limit=3"),
        cwd=REPO, env=_env(), stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    def writing() -> bool:
        runs = list(outputs.glob("*/")) if outputs.is_dir() else []
        return len([p for r in runs for p in r.glob("epoch*-global_step*")]) >= 2 and any(
            next(r.glob(".epoch*.tmp"), None) for r in runs)

    caught, deadline = False, time.monotonic() + 120
    try:
        while not caught and time.monotonic() < deadline and process.poll() is None:
            if writing():  # freeze it, and kill it if the write is still unfinished
                process.send_signal(signal.SIGSTOP)
                caught = writing()
                if not caught:
                    process.send_signal(signal.SIGCONT)
            time.sleep(0.001)
    finally:
        process.send_signal(signal.SIGKILL)
        process.wait()
    assert caught, "no checkpoint write was seen in progress"
    run = _only_run(outputs)
    checkpoints = sorted(run.glob("epoch*-global_step*"))
    assert checkpoints and list(run.glob(".epoch*.tmp"))  # killed mid-write: only the hidden folder is partial
    for checkpoint in checkpoints:
        assert open_checkpoint(checkpoint).states.global_step > 0
        assert read_state_dict(checkpoint)  # weights complete
        assert torch.load(checkpoint / "ema.pt", weights_only=True)
    latest = open_checkpoint(run)  # the run folder resolves to its latest checkpoint
    result = _run("train.py", "configs/tiny/stage1_audio.py", "--data-path", str(synthetic_data["stage1_audio"]),
                  "--outputs", str(tmp_path / "resumed"), "--load", str(run), "--cfg-options", "epochs=1000",
                  f"max_steps={latest.states.global_step + 1}")
    assert result.returncode == 0, result.stderr[-2000:]
    resumed = _only_run(tmp_path / "resumed")
    assert (resumed / f"epoch{latest.states.epoch + 1:03d}-global_step{latest.states.global_step + 1}").is_dir()


def _worker(torchrun_pid: int, rank: int) -> int | None:
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            status = (entry / "status").read_text()
            environ = (entry / "environ").read_bytes().split(b"\0")
        except OSError:
            continue
        ppid = int(next(line.split()[1] for line in status.splitlines() if line.startswith("PPid:")))
        if ppid == torchrun_pid and f"RANK={rank}".encode() in environ:
            return int(entry.name)
    return None


def test_a_dying_rank_ends_the_run(synthetic_data, tmp_path):
    outputs = tmp_path / "runs"
    process = subprocess.Popen(
        _command("train.py", "configs/tiny/stage1_audio.py", "--data-path", str(synthetic_data["stage1_audio"]),
                 "--outputs", str(outputs), "--cfg-options", "epochs=100000", "ckpt_every=0",
                 "bucket_config.144p.17=(1.0, 1)",
                 procs=2),
        cwd=REPO, env=_env(), stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    try:
        deadline = time.monotonic() + 120
        while time.monotonic() < deadline:
            metrics = list(outputs.glob("*/metrics.jsonl")) if outputs.is_dir() else []
            if metrics and len(metrics[0].read_text().splitlines()) >= 2:
                break
            time.sleep(0.2)
        victim = _worker(process.pid, 1)
        assert victim is not None
        os.kill(victim, signal.SIGKILL)
        start = time.monotonic()
        process.wait(timeout=90)  # torchrun stops the surviving rank instead of letting it hang
        assert process.returncode != 0
        assert time.monotonic() - start < 90
    finally:
        if process.poll() is None:
            process.kill()
            process.wait()


# ----- pre-extracted features ------------------------------------------------------------------------------


@pytest.mark.parametrize("extract, train, script, csv", [
    ("extract_st_prior_va.py", "stage2_prior_feat.py", "train_prior.py", "stage2_prior"),
    ("extract_va.py", "stage3_jav_feat.py", "train.py", "stage3_jav"),
])
def test_extracted_features_train_without_vaes(extract, train, script, csv, synthetic_data, tmp_path):
    features = tmp_path / "features"
    result = _run("misc/extract_feat.py", f"configs/tiny/{extract}", "--data-path", str(synthetic_data[csv]),
                  "--save-dir", str(features))
    assert result.returncode == 0, result.stderr[-2000:]
    result = _run(script, f"configs/tiny/{train}", "--data-path", str(features), "--outputs", str(tmp_path / "runs"),
                  "--cfg-options", "epochs=3")
    assert result.returncode == 0, result.stderr[-2000:]
    run = _only_run(tmp_path / "runs")
    losses = [json.loads(line)["loss"] for line in (run / "metrics.jsonl").read_text().splitlines()]
    assert len(losses) == 3 and all(torch.isfinite(torch.tensor(losses)))
    assert "OpenSoraVAE" not in result.stderr and "AudioLDM2" not in result.stderr
    assert (run / "epoch002-global_step3" / "model" / "model.safetensors").is_file()


# ----- what trains in each stage ---------------------------------------------------------------------------


def _trainable_modules(config: str, mode: str = "train") -> set[str]:
    from javisdit.training.stages import DiffusionStage, PriorStage

    cfg = parse_configs(mode, [config, "--data-path", "unused.csv"])
    stage = (PriorStage if mode == "train_prior" else DiffusionStage)(cfg)
    torch.manual_seed(0)
    model = stage.build(torch.device("cpu"), torch.float32)
    return {name.split(".")[0] if mode == "train" else name.split(".")[1]
            for name, p in model.named_parameters() if p.requires_grad}


def test_trainable_sets_per_stage():
    assert _trainable_modules("configs/tiny/stage1_audio.py") == {
        "ax_embedder", "audio_spatial_blocks", "audio_temporal_blocks", "audio_final_layer", "audio_y_embedder"}
    assert _trainable_modules("configs/tiny/stage3_jav.py") == {
        "st_t_block", "st_prior_embedder", "video_st_prior_blocks", "audio_st_prior_blocks", "va_cross_blocks"}
    stage2 = _trainable_modules("configs/tiny/stage2_prior.py", "train_prior")
    assert "text_encoder" not in stage2 and {"spatial_query_emb", "discriminator", "video_embedder"} <= stage2


def test_stage1_starts_from_open_sora_video_branch(tmp_path):
    """weight_init_from a local Open-Sora STDiT-v3 folder: the audio tower starts as its video tower."""
    from javisdit.models.loading import save_pretrained
    from javisdit.models.stdit import build_stdit3
    from javisdit.models.stdit.config import config_dict
    from javisdit.training.stages import DiffusionStage

    torch.manual_seed(3)
    opensora = build_stdit3("XL/2", depth=2, hidden_size=64, num_heads=4, caption_channels=32, model_max_length=8,
                            enable_flash_attn=False, enable_layernorm_kernel=False)
    folder = tmp_path / "checkpoints" / "OpenSora-STDiT-v3"
    save_pretrained(opensora, folder, config=config_dict(opensora.config))
    cfg = parse_configs("train", ["configs/tiny/stage1_audio.py", "--data-path", "unused.csv", "--cfg-options",
                                  f'model.weight_init_from=["{folder / "model.safetensors"}"]'])
    model = DiffusionStage(cfg).build(torch.device("cpu"), torch.float32)
    source, audio = opensora.state_dict(), model.state_dict()
    copied = {f"audio_{k}": k for k in source if k.startswith(("spatial_blocks.", "temporal_blocks.", "y_embedder."))}
    assert len(copied) > 20 and all(torch.equal(audio[a], source[v]) for a, v in copied.items())
    assert torch.equal(audio["t_embedder.mlp.0.weight"], source["t_embedder.mlp.0.weight"])  # shared embedders too
