"""JavisDiT-mini's recipe: its configs, stage order, resumable record and the fp16 release."""

import json

import pytest
import torch
from safetensors.torch import load_file, save_file

from conftest import REPO
from javisdit.config import check_config, parse_configs
from javisdit.errors import UserError
from javisdit.training.mini_recipe import RELEASE_PARTS, STAGE_NAMES, TEXT_TOWER_FILE, Recipe, release

CONFIGS = {
    "vae_video_spatial.py": "train_vae", "vae_video.py": "train_vae", "vae_audio.py": "train_vae", "extract_va.py": "extract",
    "spatial_latents.py": "extract",
    "video_branch.py": "train", "stage1_audio.py": "train", "stage2_prior.py": "train_prior",
    "stage3_jav.py": "train", "inference.py": "inference",
}


def test_stage_order_follows_the_paper():
    assert STAGE_NAMES == ("data", "text", "vae_video_spatial", "spatial_latents", "vae_video", "vae_audio", "extract",
                           "video_branch", "stage1_audio", "stage2_prior", "stage3_jav", "release")


@pytest.mark.parametrize("name", sorted(CONFIGS))
def test_every_mini_config_is_read_by_its_script(name):
    """Each config holds only keys its script reads (the scripts refuse others) and the mini sizes."""
    mode = CONFIGS[name]
    cfg = parse_configs(mode, [str(REPO / "configs" / "mini" / name)])
    check_config(cfg, mode)
    if cfg.get("model") and cfg.model.get("type") in ("VASTDiT3-XL/2", "STDiT3-XL/2"):
        # one size for the video branch and the joint model: stage 1 starts from the video branch's weights
        assert (cfg.model.hidden_size, cfg.model.depth, cfg.model.caption_channels) == (128, 4, 64)
        assert tuple(cfg.model.patch_size) == (1, 2, 2)
        if cfg.model.type == "VASTDiT3-XL/2":  # the sync modules know the tokens' times
            assert cfg.model.va_cross_time_rope is True and cfg.model.va_cross_time_window == 2.0
    if mode == "train" and cfg.get("scheduler"):  # the diffusion stages weight the video loss towards the balls
        from javisdit.registry import SCHEDULERS, build_module

        assert build_module(cfg.scheduler, SCHEDULERS).foreground_weight == 20.0
    if name in ("vae_video_spatial.py", "vae_video.py"):  # both VAE halves weight their loss towards the balls
        from javisdit.training.autoencoder import AutoencoderStage

        assert AutoencoderStage(cfg).foreground_weight == 5.0
    if name == "stage3_jav.py":  # mostly clean-picture samples: where the video-audio cross-attention learns
        from javisdit.training.masks import VAMaskGenerator

        assert cfg.mask_ratios["video_to_audio"] == 0.6 and sum(cfg.mask_ratios.values()) <= 1.0
        VAMaskGenerator(cfg.mask_ratios)  # accepted as they are
    if mode == "inference":
        assert (cfg.resolution, cfg.num_frames, cfg.aspect_ratio) == ("64", 51, "1:1")
        assert cfg.model.from_pretrained == "./assets/javisdit-mini/model"
        from javisdit.registry import SCHEDULERS, build_module

        # the picture guided in the less noisy half only, the sound at every step and towards the picture,
        # then the sound again for the finished picture (README)
        scheduler = build_module(cfg.scheduler, SCHEDULERS)
        assert scheduler.cfg_interval == {"video": (0.0, 0.5), "audio": None} and scheduler.cfg_scale == 7.0
        assert scheduler.sync_guidance == {"audio": 6.0}
        assert cfg.audio_after_video is True


def test_unknown_stage_and_changed_settings_are_refused(tmp_path):
    with pytest.raises(UserError, match="unknown stage"):
        Recipe(tmp_path).run(["stage4"])
    (tmp_path / "recipe.json").write_text(json.dumps({"settings": {"num_clips": 10, "seed": 0, "steps_scale": 1.0}}))
    with pytest.raises(UserError, match="other settings"):
        Recipe(tmp_path, num_clips=3000).run(["release"])


def _fake_recipe(out):
    """The products of the stages, with fp32 tensors (the prior with a stage-2 encoder key)."""
    def write(folder, state):
        folder.mkdir(parents=True, exist_ok=True)
        save_file(state, str(folder / "model.safetensors"))
        (folder / "config.json").write_text("{}\n")

    write(out / "text_encoder", {"shared.weight": torch.ones(3, 2, dtype=torch.float16)})
    save_file({"modality_trunks.text.w": torch.ones(2)}, str(out / TEXT_TOWER_FILE))
    write(out / "vae_video" / "model", {"shift": torch.zeros(4), "scale": torch.ones(4)})
    write(out / "vae_audio" / "model" / "vae", {"encoder.conv_in.weight": torch.ones(2, 2)})
    write(out / "stage2_prior" / "model", {"in_proj.weight": torch.ones(2, 2), "video_embedder.proj.weight": torch.ones(1)})
    write(out / "stage3_jav" / "model", {"x_embedder.proj.weight": torch.full((2,), 1 / 3), "pos": torch.arange(3)})


def test_release_is_fp16_in_the_shipped_layout(tmp_path):
    out = tmp_path / "recipe"
    with pytest.raises(UserError, match="missing"):
        release(out, tmp_path / "release")
    _fake_recipe(out)
    target = release(out, tmp_path / "release")
    assert sorted(p.name for p in target.iterdir()) == sorted(RELEASE_PARTS)
    model = load_file(str(target / "model" / "model.safetensors"))
    assert model["x_embedder.proj.weight"].dtype == torch.float16 and model["pos"].dtype == torch.int64
    assert set(load_file(str(target / "prior" / "model.safetensors"))) == {"in_proj.weight"}  # stage-2 encoders left
    assert (target / "vae_audio" / "vae" / "config.json").is_file()
    # the recipe's release stage: done once, then skipped
    recipe = Recipe(out)
    assert recipe.run(["release"]).keys() == {"release"}
    assert json.loads((out / "recipe.json").read_text())["settings"]["num_clips"] == 3000
    assert Recipe(out).run(["release"]) == recipe.times  # nothing re-run, the recorded time kept


def test_script_release_to_replaces_the_target(tmp_path, capsys):
    import importlib.util

    spec = importlib.util.spec_from_file_location("train_mini", REPO / "scripts" / "train_mini.py")
    script = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(script)
    out, shipped = tmp_path / "recipe", tmp_path / "assets" / "javisdit-mini"
    _fake_recipe(out)
    (shipped / "model").mkdir(parents=True)
    (shipped / "stale.safetensors").write_bytes(b"old")
    assert script.main([str(out), "--stages", "release", "--release-to", str(shipped)]) == 0
    assert sorted(p.name for p in shipped.iterdir()) == sorted(RELEASE_PARTS)  # the old files are gone
    assert load_file(str(shipped / "model" / "model.safetensors")).keys() == load_file(
        str(out / "release" / "model" / "model.safetensors")).keys()
    assert f"released to {shipped}" in capsys.readouterr().out


def test_script_refuses_unknown_stage_and_reports_a_folder_of_other_settings(tmp_path):
    import subprocess
    import sys

    bad = subprocess.run([sys.executable, "scripts/train_mini.py", str(tmp_path), "--stages", "stage4"], cwd=REPO,
                         capture_output=True, text=True, check=False)
    assert bad.returncode == 2 and "argument --stages: invalid choice: 'stage4'" in bad.stderr
    (tmp_path / "recipe.json").write_text(json.dumps({"settings": {"num_clips": 10, "seed": 0, "steps_scale": 1.0}}))
    other = subprocess.run([sys.executable, "scripts/train_mini.py", str(tmp_path), "--stages", "release"], cwd=REPO,
                           capture_output=True, text=True, check=False)
    assert other.returncode == 2 and other.stderr.startswith("error: ") and "other settings" in other.stderr
    assert "Traceback" not in other.stderr


def test_an_interrupted_stage_keeps_its_time_for_the_resumed_run(tmp_path, monkeypatch):
    """A stage that fails (or is stopped with Ctrl-C) records the seconds it ran; when the rerun finishes it,
    the stage's time is the sum of both pieces."""
    clock = iter([100.0, 160.0, 200.0, 230.0])  # start/stop of the interrupted piece, then of the rerun
    monkeypatch.setattr("javisdit.training.mini_recipe.time.perf_counter", lambda: next(clock))
    calls = []

    def text(self):
        calls.append("text")
        if len(calls) == 1:
            raise KeyboardInterrupt

    monkeypatch.setattr(Recipe, "_text", text)
    with pytest.raises(KeyboardInterrupt):
        Recipe(tmp_path).run(["text"])
    assert json.loads((tmp_path / "recipe.json").read_text())["interrupted_seconds"] == {"text": 60.0}
    assert Recipe(tmp_path).run(["text"]) == {"text": 90.0}
    record = json.loads((tmp_path / "recipe.json").read_text())
    assert record["seconds"] == {"text": 90.0} and "interrupted_seconds" not in record
