"""X-conditional masks: the named modes against the stage-3 training tasks, time ranges to latent frames."""

from types import SimpleNamespace

import pytest
import torch
import torch.nn.functional as F

from javisdit.errors import UserError
from javisdit.inference.conditioning import MODES, TRAINING_TASK, FrameMasks, generate_conditioned, keep_ranges, mode_masks
from javisdit.inference.references import Reference, encode_references, read_audio_file, read_image, read_video
from javisdit.models import geometry
from javisdit.models.geometry import video_latent_spans
from javisdit.training.masks import VAMaskGenerator


def test_latent_spans_follow_the_chunks_of_17_frames():
    assert video_latent_spans(17) == [(0, 0), (1, 4), (5, 8), (9, 12), (13, 16)]
    spans = video_latent_spans(51)
    assert len(spans) == 15 and spans[5] == (17, 17) and spans[-1] == (47, 50)
    assert video_latent_spans(20) == [(0, 0), (1, 4), (5, 8), (9, 12), (13, 16), (17, 17), (18, 19)]
    assert video_latent_spans(17, time_stride=2)[:3] == [(0, 0), (1, 2), (3, 4)] and len(video_latent_spans(51, 2)) == 27


@pytest.mark.parametrize("mode", MODES)
def test_modes_are_the_training_tasks(mode):
    """Each mode's masks equal what VAMaskGenerator draws for its stage-3 task (True = generate)."""
    tv, ta = 15, 53
    generator = VAMaskGenerator({TRAINING_TASK[mode]: 1.0})
    for seed in range(20):
        video, audio, name = generator.sample_masks(tv, ta, torch.Generator().manual_seed(seed))
        if mode == "interpolate" and not bool(video[1]):  # training also keeps the odd frames; we keep the even
            continue
        if mode == "extend":
            head = int((~video).sum())
            masks = mode_masks(mode, tv, ta, head_latents=head)
        else:
            masks = mode_masks(mode, tv, ta)
        assert name == TRAINING_TASK[mode]
        assert torch.equal(masks.video, video.float()) and torch.equal(masks.audio, audio.float()), seed


def test_mode_masks_by_hand():
    m = mode_masks("v2a", 5, 8)
    assert m.video.tolist() == [0] * 5 and m.audio.tolist() == [1] * 8 and m.keeps_video and not m.keeps_audio
    m = mode_masks("ia2v", 5, 8)
    assert m.video.tolist() == [0, 1, 1, 1, 1] and m.audio.tolist() == [0] * 8
    m = mode_masks("extend", 4, 8, head_latents=1)
    assert m.video.tolist() == [0, 1, 1, 1] and m.audio.tolist() == [0, 0, 1, 1, 1, 1, 1, 1]
    m = mode_masks("interpolate", 5, 10)
    assert m.video.tolist() == [0, 1, 0, 1, 0] and m.audio.tolist() == [0, 0, 1, 1, 0, 0, 1, 1, 0, 0]


def test_keep_ranges_keep_whole_latent_frames_only():
    # 51 frames at 24 fps, stride 4; audio latent frames of 40 ms
    m = keep_ranges(51, 24.0, 53, video=[(0.0, 1.0)], audio=[(1.0, 2.0)])
    # frames 0..23 lie inside [0, 1 s): latent frames 0-6 (frames 0, 1-4, 5-8, 9-12, 13-16, 17, 18-21); 7 is 22-25
    assert m.video.tolist() == [0.0] * 7 + [1.0] * 8
    assert m.audio.tolist() == [1.0] * 25 + [0.0] * 25 + [1.0] * 3
    none = keep_ranges(51, 24.0, 53)
    assert not none.keeps_video and not none.keeps_audio
    two = keep_ranges(17, 24.0, 4, video=[(0, 1 / 24), (9 / 24, 13 / 24)])
    assert two.video.tolist() == [0, 1, 1, 0, 1]


def test_strength_and_errors():
    m = mode_masks("i2av", 3, 4).with_strength(0.4)
    assert m.video.tolist() == pytest.approx([0.4, 1, 1]) and m.audio.tolist() == [1] * 4
    assert isinstance(m, FrameMasks)
    with pytest.raises(UserError, match=r"edit strength must be in \[0, 1\], got 1.5"):
        m.with_strength(1.5)
    with pytest.raises(UserError, match="unknown conditioning mode 'x2y'; valid: v2a, a2v"):
        mode_masks("x2y", 3, 4)
    with pytest.raises(UserError, match="extend keeps 1 to 2 video latent frames of the head, got 3"):
        mode_masks("extend", 3, 4, head_latents=3)
    with pytest.raises(UserError, match=r"video keep range \(2.0, 1.0\): needs 0 <= start < end"):
        keep_ranges(17, 24.0, 4, video=[(2.0, 1.0)])


# ----- references ---------------------------------------------------------------------------------------------


@pytest.fixture
def media(tmp_path):
    """A 12-frame 24 fps mp4 (frame i has grey level 20 i) with a click at 0.25 s, a 1 s wav, a png."""
    import numpy as np

    from javisdit.inference.media import write_mp4, write_png, write_wav

    frames = np.stack([np.full((32, 48, 3), 20 * i, np.uint8) for i in range(12)])
    wave = np.zeros(8000, np.float32)
    wave[4000:4100] = 0.8
    write_mp4(tmp_path / "clip.mp4", frames, 24, wave, 16000)
    write_mp4(tmp_path / "silent.mp4", frames, 24)
    write_wav(tmp_path / "sound.wav", np.tile(wave, 2), 16000)
    write_png(tmp_path / "image.png", frames[6])
    (tmp_path / "broken.mp4").write_bytes(b"not a video")
    return tmp_path


def test_read_video_pads_and_records_what_it_holds(media):
    ref = read_video(str(media / "clip.mp4"), num_frames=17, fps=24, height=16, width=16)
    assert ref.video.shape == (3, 17, 16, 16) and ref.video_seconds == pytest.approx(12 / 24)
    grey = (ref.video[0, :, 8, 8] + 1) / 2 * 255
    assert grey[:12].tolist() == pytest.approx([20.0 * i for i in range(12)], abs=6)  # H.264 rounding
    assert torch.equal(ref.video[:, 12], ref.video[:, 16])  # the last frame repeated
    assert ref.audio.shape == (geometry.audio_samples(17 / 24),) and ref.audio_seconds == pytest.approx(0.5, abs=0.03)
    click = int(ref.audio.abs().argmax())
    assert abs(click - 4000) < 400  # the click at 0.25 s survives the AAC round trip
    masks = mode_masks("v2a", 5, 4)
    with pytest.raises(UserError, match=r"clip.mp4: holds 0.50 s of video, but the condition keeps video up to 0.71 s"):
        ref.check_covers(masks, 17, 24, name=str(media / "clip.mp4"))
    ref.check_covers(keep_ranges(17, 24, 4, video=[(0, 0.5)]), 17, 24)  # within what it holds: fine


def test_read_image_audio_and_errors(media):
    ref = read_image(str(media / "image.png"), 5, 16, 16)
    assert ref.video.shape == (3, 5, 16, 16) and ref.audio is None
    assert float((ref.video[0, 0, 8, 8] + 1) / 2 * 255) == pytest.approx(120, abs=1)
    ref.check_covers(mode_masks("i2av", 2, 4), 5, 24)
    with pytest.raises(UserError, match="holds 0.04 s of video, but the condition keeps video up to 0.21 s"):
        ref.check_covers(mode_masks("v2a", 2, 4), 5, 24)
    with pytest.raises(UserError, match="holds no audio, but the condition keeps audio"):
        ref.check_covers(mode_masks("ia2v", 2, 4), 5, 24)
    sound = read_audio_file(str(media / "sound.wav"), 0.5)
    assert sound.audio.shape == (8000,) and sound.audio_seconds == 0.5 and sound.video is None
    assert read_video(str(media / "silent.mp4"), 12, 24, 16, 16).audio is None
    with pytest.raises(UserError, match="broken.mp4: cannot read video"):
        read_video(str(media / "broken.mp4"), 12, 24, 16, 16)
    with pytest.raises(UserError, match="image.png: no audio stream|image.png: cannot read audio"):
        read_audio_file(str(media / "image.png"), 0.5)
    with pytest.raises(UserError, match="sound.wav: not a readable image"):
        read_image(str(media / "sound.wav"), 5, 16, 16)
    with pytest.raises(UserError, match="missing.wav: no such file"):
        read_audio_file(str(media / "missing.wav"), 0.5)


# ----- generation with tiny models ------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def tiny():
    """The tiny inference models (random weights, sync modules acting), a 17-frame 32x48 clip."""
    from conftest import REPO, randomise_sync_modules

    from javisdit.config import parse_configs
    from javisdit.inference.pipeline import build_models
    from javisdit.utils.seed import set_seed

    cfg = parse_configs("inference", [str(REPO / "configs" / "tiny" / "inference.py"), "--prompt", "x",
                                      "--cfg-options", "scheduler.num_sampling_steps=4"])
    set_seed(0)
    gen = build_models(cfg, torch.device("cpu"), torch.float32)
    randomise_sync_modules(gen.model)
    return gen, (17, 32, 48)


@pytest.fixture
def sampled(tiny, monkeypatch):
    """The latents each sampling ends with (the scheduler's output), in call order."""
    gen, _ = tiny
    seen = []
    sample = type(gen.scheduler).sample

    def spy(self, *args, **kwargs):
        z = sample(self, *args, **kwargs)
        seen.append({k: v.clone() for k, v in z.items()})
        return z

    monkeypatch.setattr(type(gen.scheduler), "sample", spy)
    return seen


def _reference(clip, seed=0):
    T, H, W = clip
    g = torch.Generator().manual_seed(seed)
    video = torch.rand((3, T, H, W), generator=g) * 2 - 1
    audio = torch.randn(geometry.audio_samples(T / 24), generator=g) * 0.1
    return Reference(video=video, audio=audio, video_seconds=T / 24, audio_seconds=T / 24)


def _latents(gen, ref, clip, batch=1):
    """The reference's latents, encoded in a batch of ``batch`` as the generation encodes them."""
    return encode_references(gen.vae, gen.audio_vae, [ref] * batch, clip[0] / 24, "cpu", torch.float32)


@pytest.mark.parametrize("mode", ["v2a", "a2v", "i2av", "ia2v", "interpolate"])
def test_kept_latents_are_the_reference_bit_for_bit(tiny, sampled, mode):
    gen, clip = tiny
    ref = _reference(clip)
    out = {}
    for seed in (1, 2):
        video, audio = generate_conditioned(gen, ["a", "b"], clip, 24, torch.float32, [seed, seed + 10], mode=mode,
                                            video=ref if mode in ("v2a", "interpolate") else None,
                                            image=ref if mode in ("i2av", "ia2v") else None,
                                            audio=ref if mode in ("a2v", "ia2v", "interpolate") else None)
        assert video.shape == (2, 3, *clip) and audio.shape == (2, geometry.audio_samples(clip[0] / 24))
        out[seed] = sampled[-1]
    reference = _latents(gen, ref, clip, batch=2)
    masks = mode_masks(mode, reference["video"].shape[2], reference["audio"].shape[2])
    for key in ("video", "audio"):
        keep = (getattr(masks, key) < 1).nonzero().flatten()
        gen_ = (getattr(masks, key) >= 1).nonzero().flatten()
        for seed in (1, 2):
            assert torch.equal(out[seed][key][:, :, keep], reference[key][:, :, keep]), (key, seed)
        if len(gen_):  # the generated frames depend on the seed
            assert not torch.allclose(out[1][key][:, :, gen_], out[2][key][:, :, gen_], atol=1e-3), key


def test_edit_strength_between_keep_and_regenerate(tiny, sampled):
    from javisdit.inference.pipeline import generate

    gen, clip = tiny
    ref = _reference(clip)
    reference = _latents(gen, ref, clip)["video"]
    distance = {}
    for strength in (0.0, 0.3, 0.7, 1.0):
        generate_conditioned(gen, ["a"], clip, 24, torch.float32, [5], mode="v2a", video=ref, strength=strength)
        distance[strength] = float((sampled[-1]["video"] - reference).norm())
    assert distance[0.0] == 0.0
    assert distance[0.0] < distance[0.3] < distance[0.7] < distance[1.0]
    generate(gen, ["a"], clip, 24, torch.float32, [torch.Generator().manual_seed(5)])  # unconditioned
    plain = sampled[-1]
    generate_conditioned(gen, ["a"], clip, 24, torch.float32, [5], mode="v2a", video=ref, strength=1.0)
    for key in ("video", "audio"):
        assert torch.equal(sampled[-1][key], plain[key]), key  # strength 1 ignores the reference


def test_general_form_keeps_time_ranges(tiny, sampled):
    gen, clip = tiny
    ref = _reference(clip)
    reference = _latents(gen, ref, clip)
    generate_conditioned(gen, ["a"], clip, 24, torch.float32, [3], video=ref, audio=ref,
                         keep_video=[(0.0, 9 / 24)], keep_audio=[(0.2, 0.4)])
    z = sampled[-1]
    assert torch.equal(z["video"][:, :, :3], reference["video"][:, :, :3])  # latents 0-2: frames 0-8
    assert not torch.allclose(z["video"][:, :, 3:], reference["video"][:, :, 3:], atol=1e-3)
    assert torch.equal(z["audio"][:, :, 5:10], reference["audio"][:, :, 5:10])  # 0.2-0.4 s: latents 5-9
    assert not torch.allclose(z["audio"][:, :, :5], reference["audio"][:, :, :5], atol=1e-3)


class _BlockAE(torch.nn.Module):
    """A mel autoencoder that keeps time exactly, standing in for a trained one: an audio latent frame is
    the mean of its 4x4 mel block (the VAE's strides), decoding repeats it over the block."""

    config = SimpleNamespace(latent_channels=8, scaling_factor=1.0)
    dtype = torch.float32

    def encode(self, mel):
        z = F.avg_pool2d(mel, geometry.AUDIO_VAE_STRIDE).expand(-1, 8, -1, -1)
        return SimpleNamespace(latent_dist=SimpleNamespace(mean=z, std=torch.zeros_like(z)))

    def decode(self, z):
        mel = F.interpolate(z.mean(1, keepdim=True), scale_factor=geometry.AUDIO_VAE_STRIDE, mode="nearest")
        return SimpleNamespace(sample=mel)


class _EnergyVocoder(torch.nn.Module):
    """Each 10 ms mel frame becomes one hop of samples holding its mean energy (no STFT smear)."""

    def forward(self, log_mel):
        return log_mel.exp().mean(-1).repeat_interleave(geometry.MEL_HOP, dim=-1)


def _click_frame(energy: torch.Tensor, first: int, last: int) -> float:
    """The centre of the mel frames in [first, last) holding at least half the peak energy there."""
    window = energy[first:last]
    loud = (window >= window.max() / 2).nonzero().flatten().float()
    return first + float(loud.mean())


# (click time, what is kept, the kept mel frames by hand): 0.2-0.6 s is audio latents 5-14, mel frames
# 20-59; interpolate keeps video latents 0, 2, 4 of 5, which nearest-map to audio latents 10-14 of 24
# (mel frames 40-59) in the middle (and 0-4, 20-23 at the ends)
@pytest.mark.parametrize("seconds, keep, kept", [(0.21, dict(keep_audio=[(0.2, 0.6)]), (20, 60)),
                                                 (0.41, dict(mode="interpolate"), (40, 60))])
def test_a_click_in_kept_audio_is_still_there_after_decoding(tiny, seconds, keep, kept):
    """A click at a known time in the reference's kept audio is in the decoded output at that time,
    +-1 mel frame, and the output is the reference's exactly on the kept mel frames and not next to
    them: kept seconds -> audio latent frames (the general form's ranges, or a mode's video mask mapped
    to the audio as training did) -> the decoded sound."""
    from dataclasses import replace

    from javisdit.models.vae.audio import AudioLDM2

    gen, clip = tiny
    gen = replace(gen, audio_vae=AudioLDM2(_BlockAE(), _EnergyVocoder(), sample_posterior=False))
    seconds_clip = clip[0] / 24
    wave = torch.zeros(geometry.audio_samples(seconds_clip))
    at = round(seconds * geometry.SAMPLE_RATE)
    wave[at - 20 : at + 20] = torch.tensor([1.0, -1.0]).repeat(20)
    ref = Reference(video=_reference(clip).video, audio=wave, video_seconds=seconds_clip, audio_seconds=seconds_clip)
    _, audio = generate_conditioned(gen, ["a"], clip, 24, torch.float32, [7], video=ref, audio=ref, **keep)

    def energy(sound):  # per mel frame (one hop of samples)
        return sound[: sound.shape[0] // geometry.MEL_HOP * geometry.MEL_HOP].reshape(-1, geometry.MEL_HOP).mean(-1)

    out = energy(audio[0])
    recon = energy(gen.audio_vae.decode(gen.audio_vae.encode_waveform(wave[None], seconds_clip), len(wave))[0])
    first, last = kept
    assert torch.equal(out[first:last], recon[first:last])
    assert not torch.allclose(out[first - 4 : first], recon[first - 4 : first])  # the latent frames either side
    assert not torch.allclose(out[last : last + 4], recon[last : last + 4])  # are generated
    assert abs(_click_frame(out, first, last) - seconds * 100) <= 1


def test_conditioned_generation_errors(tiny):
    gen, clip = tiny
    short = Reference(video=_reference(clip).video, video_seconds=0.5)
    with pytest.raises(UserError, match="prompt 1: holds 0.50 s of video, but the condition keeps video up to 0.71 s"):
        generate_conditioned(gen, ["a", "b"], clip, 24, torch.float32, [0, 1], mode="v2a",
                             video=[_reference(clip), short])
    with pytest.raises(UserError, match="video: 1 references for 2 prompts"):
        generate_conditioned(gen, ["a", "b"], clip, 24, torch.float32, [0, 1], mode="v2a", video=[short])
    with pytest.raises(UserError, match="prompt 0: holds no audio, but the condition keeps audio"):
        generate_conditioned(gen, ["a"], clip, 24, torch.float32, [0], mode="a2v", video=short)
    with pytest.raises(UserError, match="give a reference video or an image, not both"):
        generate_conditioned(gen, ["a"], clip, 24, torch.float32, [0], mode="i2av", video=short, image=short)


def test_extension_overlap_and_length_by_hand():
    from javisdit.inference.extension import extension_length, extension_overlap

    assert extension_overlap(51) == (3, 9)  # 15 latent frames: a quarter is 3, frames 0-8
    assert extension_overlap(17) == (1, 1) and extension_overlap(17, time_stride=2) == (2, 3)
    assert extension_length(51, 3) == (51 + 2 * 42, 34000 + 2 * (34000 - 6000))
    assert extension_length(17, 1) == (17, 11333)
    with pytest.raises(UserError, match="extension needs at least 2 latent video frames; 1 frames give 1"):
        extension_overlap(1)


def test_extend_joins_segments_without_duplicated_or_dropped_frames(tiny, monkeypatch):
    from javisdit.inference import pipeline
    from javisdit.inference.extension import extension_length, extension_overlap, generate_extended

    gen, clip = tiny
    segments, conditions = [], []
    generate = pipeline.generate

    def spy(*args, condition=None, **kwargs):
        video, audio = generate(*args, condition=condition, **kwargs)
        segments.append((video.clone(), audio.clone()))
        conditions.append(condition)
        return video, audio

    monkeypatch.setattr(pipeline, "generate", spy)
    generators = [torch.Generator().manual_seed(s) for s in (1, 2)]
    video, audio = generate_extended(gen, ["a", "b"], clip, 24, torch.float32, generators, loop=3)
    T = clip[0]
    n, overlap = extension_overlap(T)
    frames, samples = extension_length(T, 3)
    assert video.shape == (2, 3, frames, *clip[1:]) and audio.shape == (2, samples)
    assert len(segments) == 3 and conditions[0] is None
    skip = round(overlap / 24 * 16000)
    S = geometry.audio_samples(T / 24)
    assert torch.equal(video[:, :, :T], segments[0][0]) and torch.equal(audio[:, :S], segments[0][1])
    assert torch.equal(video[:, :, T : 2 * T - overlap], segments[1][0][:, :, overlap:])
    assert torch.equal(audio[:, S : 2 * S - skip], segments[1][1][:, skip:])
    assert torch.equal(video[:, :, -(T - overlap):], segments[2][0][:, :, overlap:])
    for k in (1, 2):  # segment k keeps the head latents of the previous segment's tail, and its sound
        masks = conditions[k].masks
        assert masks["video"][0].tolist() == [0.0] * n + [1.0] * (masks["video"].shape[1] - n)
        assert (masks["audio"][0] < 1).sum() == int(overlap / 24 / 0.04 + 1e-6)
        last = segments[k - 1][0][0].clamp(-1, 1)  # its last `overlap` frames, then the last one repeated
        tail = torch.cat([last[:, -overlap:], last[:, -1:].expand(-1, T - overlap, -1, -1)], dim=1)
        tail = encode_references(gen.vae, gen.audio_vae, [Reference(video=tail)], T / 24, "cpu", torch.float32)["video"]
        assert torch.allclose(conditions[k].latents["video"][:1], tail, atol=1e-5)


# ----- audio_after_video: the sound again for the finished picture ----------------------------------------------


def test_audio_after_video_redoes_the_sound_for_the_kept_picture(tiny, monkeypatch):
    import dataclasses

    from javisdit.inference.pipeline import generate

    gen, clip = tiny
    calls = []
    sample = type(gen.scheduler).sample

    def spy(self, model, z, kwargs, **rest):
        out = sample(self, model, z, kwargs, **rest)
        calls.append(dict(start={k: v.clone() for k, v in z.items()}, masks=rest.get("masks"),
                          out={k: v.clone() for k, v in out.items()}))
        return out

    monkeypatch.setattr(type(gen.scheduler), "sample", spy)
    plain_video, plain_audio = generate(gen, ["a", "b"], clip, 24, torch.float32,
                                        [torch.Generator().manual_seed(s) for s in (1, 2)])
    twice = dataclasses.replace(gen, audio_after_video=True)
    video, audio = generate(twice, ["a", "b"], clip, 24, torch.float32,
                            [torch.Generator().manual_seed(s) for s in (1, 2)])
    first, second = calls[1], calls[2]
    assert len(calls) == 3
    torch.testing.assert_close(video, plain_video)  # the first pass is the plain sample, seed for seed
    assert torch.equal(second["start"]["video"], first["out"]["video"])
    assert torch.equal(second["out"]["video"], first["out"]["video"])  # the picture is kept as it is
    assert second["masks"]["video"].tolist() == [[0.0] * first["out"]["video"].shape[2]] * 2
    assert bool((second["masks"]["audio"] == 1).all())
    assert not torch.allclose(second["out"]["audio"], first["out"]["audio"], atol=1e-3)  # new sound
    decoded = gen.audio_vae.decode(second["out"]["audio"], geometry.audio_samples(clip[0] / 24))
    torch.testing.assert_close(audio, decoded)  # what comes back is the second pass's sound
    assert plain_audio.shape == audio.shape
    # nothing to redo when the picture is given (v2a) or the sound is kept (a2v): one pass each
    ref = _reference(clip)
    for mode in ("v2a", "a2v"):
        calls.clear()
        generate_conditioned(twice, ["a"], clip, 24, torch.float32, [3], mode=mode,
                             video=ref if mode == "v2a" else None, audio=ref if mode == "a2v" else None)
        assert len(calls) == 1, mode


def test_audio_after_video_config_errors():
    from conftest import REPO

    from javisdit.config import parse_configs
    from javisdit.errors import ConfigError
    from javisdit.inference.pipeline import build_models

    base = [str(REPO / "configs" / "tiny" / "inference.py"), "--prompt", "x", "--cfg-options"]
    not_audio_only = "audio_after_video generates the sound again for the generated picture"
    for options, message in ((["audio_after_video=2"], "audio_after_video must be true or false, got 2"),
                             (["audio_after_video=true", "audio_only=true"], not_audio_only)):
        cfg = parse_configs("inference", base + options)
        with pytest.raises(ConfigError, match=message):
            build_models(cfg, torch.device("cpu"), torch.float32)
