"""The autoencoder stage (``scripts/train_vae.py``): the tiny video and audio VAEs learn, the saved folders
load strictly through the inference builders with latents of unit variance, a run resumes, and a wrong
``autoencoder`` is a one-line error. Training runs in this process (ddp on CPU)."""

from __future__ import annotations

import json
import math
from pathlib import Path

import pytest
import torch
from conftest import REPO

from javisdit import cli
from javisdit.config import parse_configs
from javisdit.models.vae.mel import MelFrontEnd
from javisdit.models.vae.video import SCALE, SHIFT
from javisdit.registry import MODELS, build_module
from javisdit.schedulers.rflow import foreground_weights
from javisdit.training.autoencoder import AutoencoderStage
from javisdit.utils.seed import sample_generators

pytestmark = pytest.mark.usefixtures("restore_process_state", "one_thread")  # training runs in-process

TINY = REPO / "configs" / "tiny"
CPU = torch.device("cpu")


def _stage(name: str, *options: str) -> tuple[AutoencoderStage, torch.nn.Module]:
    cfg = parse_configs("train_vae", [str(TINY / name), *(["--cfg-options", *options] if options else [])])
    stage = AutoencoderStage(cfg)
    return stage, stage.build(CPU, torch.float32)


def _video(B: int = 1, T: int = 20, H: int = 16, W: int = 16, seed: int = 0) -> torch.Tensor:
    """Smooth moving patterns in [-1, 1]: [B, 3, T, H, W] (T = 20: a chunk of 17 frames and one of 3)."""
    g = torch.Generator().manual_seed(seed)
    phase = torch.rand(B, 3, 1, 1, 1, generator=g) * 6.28
    t = torch.arange(T).view(1, 1, T, 1, 1) * 0.3
    y, x = torch.arange(H).view(1, 1, 1, H, 1) / H, torch.arange(W).view(1, 1, 1, 1, W) / W
    return 0.8 * torch.sin(6.28 * (x + y) + phase + t)


def _mel(B: int = 1, seconds: float = 0.3) -> torch.Tensor:
    """log-mels [B, 1, 32, 64] of clicks over a hum, from the project's mel front-end."""
    n = int(seconds * 16000)
    t = torch.arange(n) / 16000
    waves = []
    for i in range(B):
        wave = 0.3 * torch.sin(2 * math.pi * (220 + 110 * i) * t)
        wave[n // 3 : n // 3 + 200] += torch.linspace(1, 0, 200)
        waves.append(wave)
    return MelFrontEnd()(torch.stack(waves), seconds)


def _overfit(stage, model, batch: dict, steps: int = 20, lr: float = 3e-3) -> list[float]:
    optimizer = torch.optim.AdamW([p for p in model.parameters() if p.requires_grad], lr=lr)
    losses = []
    for _ in range(steps):
        loss, terms = stage.loss(model, batch, sample_generators([0] * len(next(iter(batch.values())))))
        assert set(terms) == {"loss/reconstruction", "loss/kl"} and all(torch.isfinite(v) for v in terms.values())
        loss.backward()
        optimizer.step()
        optimizer.zero_grad()
        losses.append(float(loss.detach()))
    return losses


def _learned(losses: list[float]) -> bool:
    return all(math.isfinite(v) for v in losses) and sum(losses[-3:]) < 0.7 * sum(losses[:3])


# ----- the objectives learn -------------------------------------------------------------------------------


def test_video_autoencoder_overfits_one_batch():
    torch.manual_seed(0)
    stage, model = _stage("vae_video.py")
    losses = _overfit(stage, model, {"video": _video(T=9)}, steps=15)
    assert _learned(losses), losses
    # spatial and temporal VAEs train together, over chunks of 17 frames: every weight gets a gradient
    loss, _ = stage.loss(model, {"video": _video(T=20)}, sample_generators([0]))
    loss.backward()
    assert all(p.grad is not None and p.grad.abs().sum() > 0 for p in model.parameters())


def test_audio_autoencoder_overfits_one_batch():
    torch.manual_seed(0)
    stage, model = _stage("vae_audio.py")
    losses = _overfit(stage, model, {"audio": _mel()}, lr=1e-2)
    assert _learned(losses), losses
    vocoder = model.autoencoder.vocoder
    assert not any(p.requires_grad for p in vocoder.parameters())  # the vocoder is not trained


def test_loss_of_a_sample_does_not_depend_on_its_batch_mates():
    stage, model = _stage("vae_video.py")
    video = _video(B=2, T=5)
    both, _ = stage.loss(model, {"video": video}, sample_generators([3, 4]))
    alone = [stage.loss(model, {"video": video[i : i + 1]}, sample_generators([s]))[0] for i, s in enumerate((3, 4))]
    assert torch.allclose(both, sum(alone) / 2, rtol=1e-5)


# ----- saved folders: strict loading and unit-variance latents ----------------------------------------------


def test_saved_video_vae_loads_strictly_with_unit_variance_latents(tmp_path):
    stage, model = _stage("vae_video.py")
    batches = [(_video(B=2, T=9, seed=i), [7 + 2 * i, 8 + 2 * i]) for i in range(2)]
    for video, seeds in batches:
        stage.loss(model, {"video": video}, sample_generators(seeds))
    stage.save_model(model, tmp_path / "vae")

    spec = dict(type="OpenSoraVAE_V1_2", from_pretrained=str(tmp_path / "vae"), preset="tiny")
    loaded = build_module(spec, MODELS)  # the inference builder: strict
    assert not torch.allclose(loaded.scale.flatten(), torch.tensor(SCALE))
    assert not torch.allclose(loaded.shift.flatten(), torch.tensor(SHIFT))
    # the latents of the saved batches, drawn as the step drew them, through the public encode
    z = torch.cat([loaded.encode(video, sample_generators(seeds)) for video, seeds in batches])  # [4, 4, T', h, w]
    per_channel = z.transpose(0, 1).flatten(1).double()
    assert torch.allclose(per_channel.mean(dim=1), torch.zeros(4, dtype=torch.float64), atol=1e-5)
    assert torch.allclose(per_channel.std(dim=1, correction=0), torch.ones(4, dtype=torch.float64), atol=1e-5)


def test_saved_audio_vae_loads_strictly_with_unit_variance_latents(tmp_path):
    stage, model = _stage("vae_audio.py")
    mels = [_mel(B=2), _mel(B=2, seconds=0.25)]
    for i, mel in enumerate(mels):
        stage.loss(model, {"audio": mel}, sample_generators([i, 10 + i]))
    stage.save_model(model, tmp_path / "audio")
    assert {p.name for p in (tmp_path / "audio").iterdir()} == {"vae", "vocoder"}

    spec = dict(type="AudioLDM2", from_pretrained=str(tmp_path / "audio"), preset="tiny")
    loaded = build_module(spec, MODELS)  # vae/ and vocoder/, strictly
    factor = json.loads((tmp_path / "audio" / "vae" / "config.json").read_text())["scaling_factor"]
    assert loaded.scaling_factor == factor != pytest.approx(0.4110932946205139)
    raw = torch.cat([(loaded.encode(mel, sample_generators([i, 10 + i])) / factor).flatten()
                     for i, mel in enumerate(mels)]).double()
    assert factor == pytest.approx(1.0 / float(raw.std(correction=0)), rel=1e-5)
    # the vocoder folder is the preset's, unchanged
    assert all(torch.equal(a, b) for a, b in zip(loaded.vocoder.state_dict().values(),
                                                 model.autoencoder.vocoder.state_dict().values()))


def test_audio_vae_with_griffin_lim_saves_vae_alone(tmp_path):
    """With the weight-free Griffin-Lim vocoder the saved folder is vae/ alone, and it loads back."""
    stage, model = _stage("vae_audio.py", "audio_vae.vocoder=griffin_lim")
    stage.loss(model, {"audio": _mel(B=2)}, sample_generators([0, 1]))
    stage.save_model(model, tmp_path / "audio")
    assert {p.name for p in (tmp_path / "audio").iterdir()} == {"vae"}
    spec = dict(type="AudioLDM2", from_pretrained=str(tmp_path / "audio"), preset="tiny", vocoder="griffin_lim")
    loaded = build_module(spec, MODELS)
    assert all(torch.equal(a, b) for a, b in zip(loaded.vae.state_dict().values(),
                                                 model.autoencoder.vae.state_dict().values()))
    stage.load_weights(model, tmp_path / "audio")


# ----- the command line --------------------------------------------------------------------------------------


@pytest.mark.parametrize("options, message", [
    (["autoencoder=image"], "error: autoencoder must be one of 'video', 'audio' (the one this run trains), "
                            "got 'image'"),
    (["autoencoder=audio"], "error: autoencoder='audio' trains the config's audio_vae, which it lacks"),
    (["kl_weight=-0.5"], "error: kl_weight must be >= 0, got -0.5"),
])
def test_bad_autoencoder_settings_are_one_line_errors(synthetic_data, tmp_path, capsys, options, message):
    code = cli.main("train_vae", [str(TINY / "vae_video.py"), "--data-path", str(synthetic_data["stage3_jav"]),
                                  "--outputs", str(tmp_path), "--cfg-options", *options])
    assert code == 2
    err = capsys.readouterr().err
    assert err.splitlines()[-1] == message and "Traceback" not in err
    assert not any(tmp_path.iterdir())  # refused before anything was made


def test_train_vae_reads_its_keys_and_refuses_model_flags(capsys):
    cfg = parse_configs("train_vae", [str(TINY / "vae_audio.py"), "--lr", "2e-4", "--cfg-options", "ema_decay=0.99"])
    assert (cfg.lr, cfg.kl_weight, cfg.ema_decay, cfg.latent_stats_batches) == (2e-4, 1e-6, 0.99, 2)
    assert parse_configs("train_vae", [str(TINY / "vae_video.py")]).ema_decay is None  # no EMA unless asked
    for flag in ("--flash-attn", "--ckpt-path", "--layernorm-kernel"):  # they set the diffusion model's keys
        with pytest.raises(SystemExit):
            parse_configs("train_vae", [str(TINY / "vae_video.py"), flag, "1"])
        assert f"unrecognized arguments: {flag} 1" in capsys.readouterr().err


def _losses(run: Path) -> dict[int, float]:
    rows = [json.loads(line) for line in (run / "metrics.jsonl").read_text().splitlines()]
    return {row["global_step"]: row["loss"] for row in rows if "loss" in row}


def _train(config: str, data: Path, outputs: Path, *argv: str) -> Path:
    before = set(outputs.iterdir()) if outputs.is_dir() else set()
    assert cli.main("train_vae", [str(TINY / config), "--data-path", str(data), "--outputs", str(outputs),
                                  *argv]) == 0
    (run,) = set(outputs.iterdir()) - before
    return run


@pytest.mark.slow
def test_video_script_trains_saves_and_resumes(synthetic_data, tmp_path):
    run = _train("vae_video.py", synthetic_data["stage3_jav"], tmp_path)
    assert run.name == "000-OpenSoraVAE_V1_2"
    losses = _losses(run)
    assert sorted(losses) == [1, 2, 3] and all(math.isfinite(v) for v in losses.values())  # 3 clips, batch 1
    assert "autoencoder (video: OpenSoraVAE_V1_2)" in (run / "log.txt").read_text()
    # the inference config reads the run folder (its latest checkpoint) with nothing else changed
    cfg = parse_configs("inference", [str(TINY / "inference.py"), "--cfg-options", f"vae.from_pretrained={run}"])
    vae = build_module(cfg.vae, MODELS)
    assert not torch.allclose(vae.scale.flatten(), torch.tensor(SCALE))

    resumed = _train("vae_video.py", synthetic_data["stage3_jav"], tmp_path, "--load",
                     str(run / "epoch000-global_step2"))
    assert _losses(resumed) == pytest.approx({3: losses[3]}, rel=1e-5)  # step 3 again, as uninterrupted
    states = json.loads((resumed / "epoch000-global_step3" / "running_states.json").read_text())
    assert states["global_step"] == 3
    # resumed where max_steps already stops: nothing more is trained (not one step past it)
    ended = _train("vae_video.py", synthetic_data["stage3_jav"], tmp_path, "--load", str(run / "epoch000-global_step2"),
                   "--cfg-options", "max_steps=2")
    assert "resumed at step 2: max_steps (2) reached, nothing to train" in (ended / "log.txt").read_text()
    assert not list(ended.glob("epoch*")) and not _losses(ended)


@pytest.mark.slow
def test_audio_script_trains_and_saves(synthetic_data, tmp_path):
    run = _train("vae_audio.py", synthetic_data["stage1_audio"], tmp_path)
    assert run.name == "000-AudioLDM2"
    assert sorted(_losses(run)) == [1, 2, 3]
    model = run / "epoch000-global_step3" / "model"
    cfg = parse_configs("inference", [str(TINY / "inference.py"), "--cfg-options",
                                      f"audio_vae.from_pretrained={model}"])
    audio_vae = build_module(cfg.audio_vae, MODELS)
    assert audio_vae.scaling_factor == json.loads((model / "vae" / "config.json").read_text())["scaling_factor"]


@pytest.mark.parametrize("parts", ["spatial", "temporal"])
def test_video_parts_train_alone(parts):
    """autoencoder_parts: only the named VAE gets gradients; "spatial" decodes each frame's own latent."""
    _, model = _stage("vae_video.py", f"autoencoder_parts={parts}")
    spatial, temporal = model.autoencoder.spatial_vae, model.autoencoder.temporal_vae
    trained, frozen = (spatial, temporal) if parts == "spatial" else (temporal, spatial)
    assert all(p.requires_grad for p in trained.parameters())
    assert not any(p.requires_grad for p in frozen.parameters())
    loss, parts_ = model(_video(), sample_generators([0]))
    loss.backward()
    assert loss.item() > 0 and parts_["loss/kl"].item() >= 0
    assert all(p.grad is None for p in frozen.parameters())
    assert any(p.grad is not None and p.grad.abs().sum() > 0 for p in trained.parameters())
    if parts == "spatial":  # the image autoencoder: L1 of each frame's own spatial round trip (posterior means)
        _, deterministic = _stage("vae_video.py", "autoencoder_parts=spatial", "vae.sample_posterior=False")
        deterministic.load_state_dict(model.state_dict())
        video = _video()
        frames = video.transpose(1, 2).flatten(0, 1)
        sp = deterministic.autoencoder.spatial_vae.module
        expected = (sp.decode(sp.encode(frames).latent_dist.mean).sample - frames).abs().mean()
        _, values = deterministic(video, sample_generators([0]))
        torch.testing.assert_close(values["loss/reconstruction"], expected, rtol=1e-6, atol=1e-7)
    else:  # the temporal VAE reconstructs the frozen spatial latents (x 0.18215), chunk by chunk of 17
        from javisdit.models.vae.video import SPATIAL_SCALING

        _, deterministic = _stage("vae_video.py", "autoencoder_parts=temporal", "vae.sample_posterior=False",
                                  "reconstruction_loss=l2")
        deterministic.load_state_dict(model.state_dict())
        video = _video()  # 20 frames: chunks of 17 and 3
        sp, tv = deterministic.autoencoder.spatial_vae.module, deterministic.autoencoder.temporal_vae
        z = sp.encode(video.transpose(1, 2).flatten(0, 1)).latent_dist.mean.unflatten(0, (1, 20)).transpose(1, 2)
        z = z * SPATIAL_SCALING
        errors = [(tv.decode(tv.encode(part)[0], num_frames=part.shape[2]) - part).pow(2).mean() * part.shape[2] / 20
                  for part in z.split(17, dim=2)]
        _, values = deterministic(video, sample_generators([0]))
        torch.testing.assert_close(values["loss/reconstruction"], sum(errors), rtol=1e-5, atol=1e-7)


def test_audio_refuses_parts():
    with pytest.raises(Exception, match="autoencoder_parts must be one of"):
        _stage("vae_audio.py", "autoencoder_parts=spatial")


def test_posterior_means_make_the_loss_noise_free():
    """sample_posterior=False trains a deterministic autoencoder: the loss does not depend on the noise."""
    _, model = _stage("vae_video.py", "vae.sample_posterior=False")
    video = _video()
    a = model(video, sample_generators([0]))[0]
    b = model(video, sample_generators([7]))[0]
    torch.testing.assert_close(a, b, rtol=0, atol=0)
    _, sampled = _stage("vae_video.py")
    sampled.load_state_dict(model.state_dict())
    assert not torch.equal(sampled(video, sample_generators([0]))[0], sampled(video, sample_generators([7]))[0])


def test_l2_reconstruction_loss_is_the_mean_squared_error():
    _, model = _stage("vae_video.py", "autoencoder_parts=spatial", "vae.sample_posterior=False", "reconstruction_loss=l2")
    video = _video()
    frames = video.transpose(1, 2).flatten(0, 1)
    sp = model.autoencoder.spatial_vae.module
    expected = (sp.decode(sp.encode(frames).latent_dist.mean).sample - frames).pow(2).mean()
    _, values = model(video, sample_generators([0]))
    torch.testing.assert_close(values["loss/reconstruction"], expected, rtol=1e-6, atol=1e-7)
    _, audio = _stage("vae_audio.py", "audio_vae.sample_posterior=False", "reconstruction_loss=l2")
    mel = _mel()
    vae = audio.autoencoder.vae
    expected = (vae.decode(vae.encode(mel).latent_dist.mean).sample - mel).pow(2).mean()
    torch.testing.assert_close(audio(mel, sample_generators([0]))[1]["loss/reconstruction"], expected, rtol=1e-6, atol=1e-7)
    with pytest.raises(Exception, match="reconstruction_loss must be one of 'l1', 'l2'"):
        _stage("vae_video.py", "reconstruction_loss=l3")


def test_foreground_weighted_pixel_loss_by_hand():
    """foreground_weight w: each pixel's squared error weighs 1 + w·d/mean(d), d its L1 distance (over RGB)
    from the clip's median colour; the loss is the weighted mean over pixels and channels. w = 0 is the plain mean."""
    video = torch.full((1, 3, 2, 16, 16), -0.8)
    video[:, :, :, 4:7, 5:8] = torch.tensor([0.9, -0.6, 0.2]).view(1, 3, 1, 1, 1)  # a 3x3 "ball": d = 1.7 + 0.2 + 1.0
    options = ("autoencoder_parts=spatial", "vae.sample_posterior=False", "reconstruction_loss=l2")
    _, plain = _stage("vae_video.py", *options)
    _, weighted = _stage("vae_video.py", *options, "foreground_weight=4.0")
    weighted.load_state_dict(plain.state_dict())
    frames = video.transpose(1, 2).flatten(0, 1)
    sp = plain.autoencoder.spatial_vae.module
    error = (sp.decode(sp.encode(frames).latent_dist.mean).sample - frames).pow(2)  # [2, 3, 16, 16]
    d = torch.zeros(2, 1, 16, 16)
    d[..., 4:7, 5:8] = 2.9
    weight = 1 + 4.0 * d / d.mean()  # 1 in the background, 1 + 4 * 256 / 9 on the ball
    expected = (error * weight).sum() / (weight.sum() * 3)
    torch.testing.assert_close(weighted(video, sample_generators([0]))[1]["loss/reconstruction"], expected,
                               rtol=1e-5, atol=1e-7)
    torch.testing.assert_close(plain(video, sample_generators([0]))[1]["loss/reconstruction"], error.mean(),
                               rtol=1e-5, atol=1e-7)
    assert expected.item() != pytest.approx(error.mean().item(), rel=1e-3)
    for bad, message in (("foreground_weight=-1.0", "foreground_weight must be a finite number >= 0"),
                         ("foreground_weight=True", "foreground_weight must be a finite number >= 0")):
        with pytest.raises(Exception, match=message):
            _stage("vae_video.py", *options, bad)
    with pytest.raises(Exception, match="foreground_weight weights the video autoencoder's loss"):
        _stage("vae_audio.py", "foreground_weight=2.0")


def test_foreground_weight_of_the_temporal_vae_weighs_its_latent_targets():
    """Trained alone, the temporal VAE's targets are the spatial latents: the weights come from them."""
    options = ("autoencoder_parts=temporal", "vae.sample_posterior=False")
    _, plain = _stage("vae_video.py", *options)
    _, weighted = _stage("vae_video.py", *options, "foreground_weight=3.0")
    weighted.load_state_dict(plain.state_dict())
    video = _video(T=17)
    video[:, :, :, 2:6, 2:6] = 0.9
    z = plain.autoencoder.encode_spatial(video)  # x 0.18215, as the objective's target
    z_hat, _ = plain._temporal_chain(z, sample_generators([0]))
    error = (z_hat - z).abs()
    weight = foreground_weights(z, 3.0)
    expected = (error * weight).sum() / (weight.sum() * z.shape[1])
    torch.testing.assert_close(weighted(video, sample_generators([0]))[1]["loss/reconstruction"], expected,
                               rtol=1e-5, atol=1e-7)
    torch.testing.assert_close(plain(video, sample_generators([0]))[1]["loss/reconstruction"], error.mean(),
                               rtol=1e-5, atol=1e-7)
    assert expected.item() != pytest.approx(error.mean().item(), rel=1e-3)


def test_temporal_vae_trains_from_extracted_spatial_latents():
    """load_va_features: the batches hold the spatial latents (x 0.18215) that ``encode_spatial`` gives, and
    the loss, its gradients and the saved latent statistics equal those of the run that encodes the pixels."""
    options = ("autoencoder_parts=temporal", "vae.sample_posterior=False")
    _, from_pixels = _stage("vae_video.py", *options)
    stage, from_latents = _stage("vae_video.py", *options, "load_va_features=True")
    from_latents.load_state_dict(from_pixels.state_dict())
    video = _video(B=2)
    z = from_pixels.autoencoder.encode_spatial(video)
    assert z.shape == (2, 4, 20, 2, 2)  # every frame, 16x16 pixels -> 2x2 latents (tiny VAE)
    expected, _ = from_pixels(video, sample_generators([0, 1]))
    loss, _ = from_latents(z, sample_generators([0, 1]))
    torch.testing.assert_close(loss, expected, rtol=1e-6, atol=1e-8)
    loss.backward()
    assert any(p.grad is not None and p.grad.abs().sum() > 0 for p in from_latents.autoencoder.temporal_vae.parameters())
    from javisdit.training.autoencoder import video_latent_statistics

    batches = [(video, [g.get_state() for g in sample_generators([0, 1])])]
    pixel_stats = video_latent_statistics(from_pixels.autoencoder, batches)
    latent_stats = video_latent_statistics(from_latents.autoencoder, [(z, batches[0][1])], from_latents=True)
    for a, b in zip(pixel_stats, latent_stats):
        torch.testing.assert_close(a, b)


def test_spatial_latents_need_the_temporal_part():
    with pytest.raises(Exception, match="load_va_features=True trains the temporal VAE from extracted spatial "
                                        "latents: it needs autoencoder='video' and autoencoder_parts='temporal', "
                                        "got 'video' / 'all'"):
        _stage("vae_video.py", "load_va_features=True")


@pytest.mark.slow
def test_temporal_script_trains_from_spatial_latent_bins(synthetic_data, tmp_path):
    """extract_feat.py with video_latents="spatial" -> bins that train_vae.py trains the temporal VAE on."""
    extract = cli.main("extract", [str(TINY / "extract_va.py"), "--data-path", str(synthetic_data["stage3_jav"]),
                                   "--save-dir", str(tmp_path / "bins"), "--cfg-options", "video_latents=spatial",
                                   "audio_vae=None"])
    assert extract == 0
    run = _train("vae_video.py", tmp_path / "bins", tmp_path / "runs", "--cfg-options", "autoencoder_parts=temporal",
                 "load_va_features=True", "dataset.type=BatchFeatureDataset", "bucket_config=None", "epochs=2")
    losses = _losses(run)
    assert sorted(losses) == [1, 2] and all(math.isfinite(v) for v in losses.values())
    vae = build_module(dict(type="OpenSoraVAE_V1_2", from_pretrained=str(run), preset="tiny"), MODELS)
    assert not torch.allclose(vae.scale.flatten(), torch.tensor(SCALE))  # the statistics of the trained weights
