"""The video branch (text-to-video STDiT3, ``video_only``) trains through the one loop, and stage 1 starts
from what it saves, as v0.1's stage 1 starts from Open-Sora's STDiT-v3."""

from __future__ import annotations

import json
from pathlib import Path

import pandas as pd
import pytest
import torch

from conftest import REPO, logging_kept
from javisdit import cli
from javisdit.errors import ConfigError
from javisdit.models.loading import read_state_dict

pytestmark = [pytest.mark.slow, pytest.mark.usefixtures("restore_process_state")]


def _csv(synthetic_data, out: Path) -> str:
    table = pd.read_csv(synthetic_data["stage3_jav"]).head(2)
    base = Path(synthetic_data["stage3_jav"]).parent
    for column in ("path", "audio_path"):
        table[column] = [str(base / p) for p in table[column]]
    path = out / "video_text.csv"
    table.to_csv(path, index=False)
    return str(path)


def _run(config: str, *args: str) -> int:
    with logging_kept():
        return cli.main("train", [config, *args])


def test_video_branch_learns_and_seeds_stage1(synthetic_data, tmp_path):
    csv = _csv(synthetic_data, tmp_path)
    config = str(REPO / "configs" / "tiny" / "video_branch.py")
    runs = tmp_path / "runs"
    assert _run(config, "--data-path", csv, "--outputs", str(runs), "--lr", "1e-3", "--cfg-options",
                "epochs=12", "ckpt_every=12") == 0
    run = next(p for p in runs.iterdir() if p.is_dir())
    losses = [json.loads(line)["loss"] for line in (run / "metrics.jsonl").read_text().splitlines()
              if "loss" in json.loads(line)]
    assert len(losses) == 12 and all(torch.isfinite(torch.tensor(losses)))
    assert sum(losses[-3:]) / 3 < 0.9 * sum(losses[:3]) / 3  # two clips, seen again and again
    model_dir = next(run.glob("epoch*-global_step12")) / "model"
    state = read_state_dict(model_dir)
    assert any(k.startswith("spatial_blocks.") for k in state) and not any(k.startswith("audio_") for k in state)
    # stage 1 copies the trained video blocks into its audio branch
    stage1 = tmp_path / "stage1.py"
    stage1.write_text(f'_base_ = ["{REPO / "configs" / "tiny" / "stage1_audio.py"}"]\n'
                      f'model = dict(weight_init_from=["{model_dir}"])\n')
    audio_csv = tmp_path / "audio.csv"
    table = pd.read_csv(csv)
    table.to_csv(audio_csv, index=False)
    assert _run(str(stage1), "--data-path", str(audio_csv), "--outputs", str(tmp_path / "s1"),
                "--cfg-options", "ckpt_every=1") == 0
    s1 = next(p for p in (tmp_path / "s1").iterdir() if p.is_dir())
    trained = read_state_dict(next(s1.glob("epoch*-global_step1")) / "model")
    video, audio = state["spatial_blocks.0.attn.qkv.weight"], trained["audio_spatial_blocks.0.attn.qkv.weight"]
    # one small step away from the video block it was copied from (a random init would be far)
    assert (audio - video).abs().max() < 0.1 * video.abs().max()
    shared = [k for k in trained if k in state and k.startswith(("x_embedder", "t_embedder", "fps_embedder"))]
    assert shared and all(torch.equal(trained[k], state[k]) for k in shared)  # frozen: the video stage's


def test_video_only_refuses_a_joint_model_and_masks(tmp_path, capsys):
    from mmengine.config import Config

    from javisdit.training.stages import DiffusionStage

    cfg = Config.fromfile(str(REPO / "configs" / "tiny" / "video_branch.py"))
    cfg.mask_ratios = {"random": 1.0}
    with pytest.raises(ConfigError, match="mask_ratios are the joint stage's"):
        DiffusionStage(cfg)
    cfg.mask_ratios = None
    cfg.audio_only = True
    with pytest.raises(ConfigError, match="audio_only and video_only are exclusive"):
        DiffusionStage(cfg)
