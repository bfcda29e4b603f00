"""JavisDiT++ (v1.0) through ``scripts/inference.py``: the tiny v1.0 config end to end, guidance against the
negative prompt, prompts as written, 16-fps frame counts and the upstream timestep shift."""

import av
import pytest
import soundfile
import torch

from conftest import REPO
from javisdit import cli
from javisdit.config import parse_configs
from javisdit.errors import ConfigError
from javisdit.inference import pipeline
from javisdit.schedulers.rflow import RFlow, upstream_timestep_transform
from javisdit.sizes import parse_num_frames

TINY_V1 = str(REPO / "configs" / "tiny" / "inference_v1.py")
SMALL = ["--image-size", "32", "48", "--verbose", "0"]


def test_tiny_v1_writes_a_16_fps_mp4_with_aac_of_the_clip_length(tmp_path):
    out = tmp_path / "out"
    assert cli.main("inference", [TINY_V1, *SMALL, "--prompt", "a dog barks", "--save-dir", str(out)]) == 0
    with av.open(str(out / "sample_0000.mp4")) as container:
        video, audio = container.streams.video[0], container.streams.audio[0]
        assert video.average_rate == 16 and audio.codec_context.name == "aac" and audio.rate == 16000
        frames = [f.to_ndarray(format="rgb24") for f in container.decode(video=0)]
        seconds = float(audio.duration * audio.time_base)
    assert len(frames) == 17 and frames[0].shape == (32, 48, 3)
    assert abs(seconds - 17 / 16) <= 1024 / 16000  # within one AAC frame


def test_tiny_v1_audio_only_writes_the_clip_length(tmp_path):
    out = tmp_path / "out"
    argv = [TINY_V1, *SMALL, "--prompt", "rain", "--save-dir", str(out), "--num-frames", "2s",
            "--cfg-options", "audio_only=True", "model.model_type=t2a", "lora_enabled=False"]
    assert cli.main("inference", argv) == 0
    wave, rate = soundfile.read(out / "sample_0000.wav")
    assert rate == 16000 and len(wave) == 33 * 1000  # "2s" at 16 fps: 33 frames, 2.0625 s


def test_guidance_is_against_the_negative_prompt_and_prompts_are_read_as_written(tmp_path, monkeypatch):
    cfg = parse_configs("inference", [TINY_V1, *SMALL, "--prompt", "x"])
    gen = pipeline.build_models(cfg, torch.device("cpu"), torch.float32)
    seen = []
    forward = type(gen.model).forward

    def spy(self, *args, **kwargs):
        seen.append(kwargs)
        return forward(self, *args, **kwargs)

    monkeypatch.setattr(type(gen.model), "forward", spy)
    text = "A Dog <b>barks</b>!"
    assert pipeline.process_prompt(text, cfg) == text  # no v0.1 cleaning, no score suffix
    pipeline.generate(gen, [text, "rain"], (17, 32, 48), 16, torch.float32,
                      [torch.Generator().manual_seed(s) for s in (1, 2)])
    negative = gen.text_encoder.encode([cfg.neg_prompt])
    positive = gen.text_encoder.encode([text, "rain"])
    y, mask = seen[0]["y"], seen[0]["mask"]
    assert y.shape[0] == 4 and torch.equal(y[:2], positive["y"]) and torch.equal(mask[:2], positive["mask"])
    assert torch.equal(y[2:], negative["y"].expand(2, -1, -1)) and torch.equal(mask[2:], negative["mask"].expand(2, -1))
    assert set(seen[0]) == {"x", "timestep", "y", "mask"}  # no v0.1 size conditioning
    assert len(seen) == 4  # one batched call per step


def test_a_v1_config_without_a_negative_prompt_is_one_error(tmp_path, capsys):
    out = tmp_path / "out"
    code = cli.main("inference", [TINY_V1, *SMALL, "--prompt", "x", "--save-dir", str(out),
                                  "--cfg-options", "neg_prompt=None"])
    errors = [line for line in capsys.readouterr().err.splitlines() if line.startswith("error:")]
    assert code == 2 and errors == ["error: Wan2_1_T2V_1_3B guides against a negative prompt: set neg_prompt in the config"]
    assert not list(out.iterdir())


def test_seconds_at_16_fps_are_n_fps_plus_one_frames():
    assert [parse_num_frames(f"{n}s", 16) for n in (2, 3, 4, 5)] == [33, 49, 65, 81]  # spec §8
    assert parse_num_frames("4s") == 102 and parse_num_frames("4s", 24) == 102  # v0.1: Open-Sora's table
    assert parse_num_frames("65", 16) == 65
    with pytest.raises(ConfigError, match="invalid number of frames '3s'"):
        parse_num_frames("3s", 24)


def test_upstream_shift_reproduces_the_published_ratios():
    def ratio(h, w, f):
        tau = float(upstream_timestep_transform(torch.tensor([500.0]), h, w, f)) / 1000
        return tau / (1 - tau)  # tau' = r tau / (1 + (r - 1) tau) at tau = 1/2

    expected = {(240, 426, 65): 2.421875, (240, 426, 81): 2.796875, (240, 426, 33): 1.3984375,
                (360, 640, 65): 3.625, (480, 854, 65): 4.84375, (480, 854, 81): 5.59375, (240, 426, 102): 3.421875}
    for size, r in expected.items():
        assert ratio(*size) == pytest.approx(r, rel=1e-6), size
    sampler = RFlow(num_sampling_steps=50, use_timestep_transform=True, transform_scale=5.0, shift_formula="upstream")
    steps = [float(t) for t in sampler.timesteps(240, 426, 65)]
    assert steps[:3] == pytest.approx([1000.0, 991.64, 983.09], abs=0.01) and steps[-1] == pytest.approx(47.10, abs=0.01)
    # training draws are shifted with transform_scale (5), sampling with 1 (spec §9.2, §14.1)
    trained = sampler.sample_timesteps(1, 240, 426, 65, generator=torch.Generator().manual_seed(0))
    plain = RFlow(use_timestep_transform=True, shift_formula="upstream")
    assert float(trained) > float(plain.sample_timesteps(1, 240, 426, 65, generator=torch.Generator().manual_seed(0)))
    with pytest.raises(ConfigError, match="0 for 9 frames"):
        sampler.timesteps(240, 426, 9)


@pytest.mark.parametrize("name, params", [("sample.py", 2_252_388_960), ("audio_sample.py", 1_426_119_200)])
def test_published_v1_configs_parse_and_build_the_published_model(name, params):
    from javisdit.registry import MODELS, build_module

    cfg = parse_configs("inference", [str(REPO / "configs" / "javisdit-v1-0" / "inference" / name)])
    assert cfg.fps == 16 and cfg.scheduler.num_sampling_steps == 50 and cfg.scheduler.cfg_scale == 5.0
    assert cfg.model.from_pretrained == "JavisVerse/JavisDiT-v1.0-jav" and cfg.use_text_preprocessing is False
    with torch.device("meta"):
        model = build_module(cfg.model, MODELS, from_pretrained=None)
    assert sum(p.numel() for p in model.parameters()) == params
    assert cfg.get("lora_enabled", True) is (name == "sample.py")


def test_benchmark_script_measures_every_phase(tmp_path, capsys):
    import importlib.util
    import json

    spec = importlib.util.spec_from_file_location("v1_bench", REPO / "scripts" / "benchmarks" / "v1.py")
    bench = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(bench)
    assert bench.main(["--tiny", "--json", str(tmp_path / "out.json")]) == 0
    rows = {r["case"]: r for r in json.loads((tmp_path / "out.json").read_text())}
    assert set(rows) == set(bench.CASES)
    assert all(r["seconds"] > 0 and r["peak_rss_gb"] > 0 for r in rows.values())
    assert rows["v1.0-step"]["batch"] == 2 and rows["v1.0-step"]["sample_50_steps_s"] == 50 * rows["v1.0-step"]["seconds"]
    assert rows["wan-vae-decode"]["frames"] == 9
    assert len([line for line in capsys.readouterr().out.splitlines() if "peak RSS" in line]) == len(bench.CASES)
