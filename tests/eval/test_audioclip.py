"""AudioCLIP's ESResNeXt-FBSP audio head (FAD): file layout, the §2.4 golden values of the front end
(EVAL_MODELS.md), trunk shapes, FAD inputs and the loader's errors."""

from __future__ import annotations

import logging

import numpy as np
import pytest
import torch
from conftest import read_manifest, spec_audio_a

from javisdit.errors import MissingWeightsError, WeightsMismatchError
from javisdit.eval.networks.audioclip import (
    FAD_SCALE,
    PRESETS,
    AudioCLIPAudio,
    audioclip_features,
    build_audioclip,
    fad_input,
    load_audioclip,
    write_random_audioclip,
)
from javisdit.eval.networks.esresnext import N_FFT, frame_signal, int16_rescale

AUDIO_PARAMS = 32_104_771  # EVAL_MODELS.md §0
DB_ABS = 1e-4  # the spec's tolerance for dB values
# Bins ~100 dB below the DC/tone peaks hold float32 rounding noise of the 2048-term FBSP sums (a float64 sum
# moves them by up to 5e-3 dB, the global minimum by 0.26 dB): checked to what float32 can reproduce.
NOISE_FLOOR_DB_ABS = 1e-2
GLOBAL_MIN_DB_ABS = 0.3


def _input_a() -> torch.Tensor:
    """Input A of §2.4 as [1, 1, 64000]."""
    return torch.from_numpy(spec_audio_a())[None, None]


@pytest.fixture(scope="module")
def head():
    return build_audioclip("tiny").audio  # the front end (window, FBSP) is the full one in every preset


def _second_setting(head) -> None:
    k = torch.arange(1025, dtype=torch.float32)
    with torch.no_grad():
        head.fbsp.m.copy_(0.25 + 0.5 * k / 1024)
        head.fbsp.fb.copy_(1 + k / 1024)
        head.fbsp.fc.copy_(0.9 * k)


def test_full_head_is_the_files_audio_keys():
    manifest = {k: v for k, v in read_manifest("eval_audioclip_full").items() if k.startswith("audio.")}
    with torch.device("meta"):
        model = AudioCLIPAudio(**PRESETS["full"])
    state = model.state_dict()
    assert len(manifest) == 370
    assert list(state) == list(manifest)  # same keys, same order (window first, fbsp last)
    assert {k: tuple(v.shape) for k, v in state.items()} == manifest
    assert state["audio.fbsp.bias"].shape == (0,)
    assert state["audio.layer1.0.bn1.num_batches_tracked"].dtype == torch.int64
    assert sum(p.numel() for p in model.parameters()) == AUDIO_PARAMS


def test_full_trunk_shapes():
    with torch.device("meta"):
        model = AudioCLIPAudio(**PRESETS["full"]).eval()
    shapes = {}
    for name in ("conv1", "layer1", "layer2", "layer3", "layer4"):
        getattr(model.audio, name).register_forward_hook(lambda m, i, o, name=name: shapes.__setitem__(name, o.shape))
    model.audio.layer1.register_forward_pre_hook(lambda m, i: shapes.__setitem__("maxpool", i[0].shape))
    out = model(torch.empty(1, 1, 64000, device="meta"))
    assert {k: tuple(v) for k, v in shapes.items()} == {
        "conv1": (1, 64, 171, 57), "maxpool": (1, 64, 86, 29), "layer1": (1, 256, 86, 29),
        "layer2": (1, 512, 43, 15), "layer3": (1, 1024, 22, 8), "layer4": (1, 2048, 11, 4)}
    assert tuple(out.shape) == (1, 1024)


def test_input_a_window_rescale_and_frames(head):
    x = _input_a()
    assert x.mean().item() == pytest.approx(0.1250792, rel=1e-5)
    assert x[0, 0, :4].tolist() == pytest.approx([0, 0.0938209, 0.185078, 0.271276], rel=1e-5)
    window = head.window
    assert window.shape == (1654,) and window.dtype == torch.float32
    assert window.sum().item() == pytest.approx(593.3725, rel=1e-6)
    assert window[0].item() == pytest.approx(6.0e-05, rel=1e-4) and window[827].item() == 1.0
    y = int16_rescale(x)
    assert (y.mean().item(), y.min().item(), y.max().item()) == pytest.approx(
        (1.908652e-05, -6.079674e-06, 4.422665e-05), rel=1e-5)
    assert y[0, 0, :3].tolist() == pytest.approx([1.52588e-05, 1.81198e-05, 2.08616e-05], rel=1e-5)
    frames = frame_signal(y.reshape(1, -1), window)
    assert frames.shape == (1, 113, 1654)
    assert frames.sum().item() == pytest.approx(1.279536, rel=1e-5)
    assert frames[0, 0, :243].abs().max().item() == 0.0  # the left zero padding
    assert frames[0, 0, 240:246].tolist() == pytest.approx([0, 0, 0, 5.58489e-07, 6.72216e-07, 7.84413e-07],
                                                           rel=1e-5)


def _check_db(x_db, mean, std, db_min, db_max, bin14, band_means, min_tol):
    assert x_db.shape == (1, 1, 3, 341, 113)
    assert x_db.mean().item() == pytest.approx(mean, abs=DB_ABS)
    assert x_db.std().item() == pytest.approx(std, abs=DB_ABS)
    assert x_db.max().item() == pytest.approx(db_max, abs=DB_ABS)
    assert x_db.min().item() == pytest.approx(db_min, abs=min_tol)
    assert x_db[0, 0, 0, 14, 50:53].tolist() == pytest.approx(bin14, abs=NOISE_FLOOR_DB_ABS)
    assert x_db[0, 0].mean(dim=(1, 2)).tolist() == pytest.approx(band_means, abs=DB_ABS)


def test_fbsp_and_spectrogram_at_initial_values(head):
    weights = head.fbsp.weights(N_FFT)
    assert weights.shape == (1025, 2048, 2)
    assert weights[1, 0:3, 0].tolist() == pytest.approx([-0.0220971, -0.0220970, -0.0220967], rel=1e-5)
    assert weights[1, 0:3, 1].tolist() == pytest.approx([-1.93179e-09, 6.78228e-05, 1.35647e-04], rel=1e-4)
    assert weights[500, 1024].tolist() == pytest.approx([0.0159041, -0.0153408], rel=1e-5)
    with torch.no_grad():
        x_db = head.spectrogram_db(_input_a())
    _check_db(x_db, -156.0482, 12.54759, -213.6603, -70.44992, [-169.104, -156.318, -162.716],
              [-153.83038, -156.91124, -157.40292], GLOBAL_MIN_DB_ABS)
    assert x_db[0, 0, 0, 0, 0:4].tolist() == pytest.approx([-73.9934, -73.9692, -73.9692, -73.9703], abs=DB_ABS)
    assert x_db[0, 0, 2, 340, 112].item() == pytest.approx(-164.0655, abs=1e-3)


def test_fbsp_and_spectrogram_with_the_sinc_window_power():
    head = build_audioclip("tiny").audio
    _second_setting(head)
    weights = head.fbsp.weights(N_FFT)
    assert weights[1, 0:3, 0].tolist() == pytest.approx([-0.00346683, -0.00413169, -0.00458101], rel=1e-5)
    assert weights[1, 0:3, 1].tolist() == pytest.approx([-0.00177314, -0.00209881, -0.00231116], rel=1e-5)
    with torch.no_grad():
        x_db = head.spectrogram_db(_input_a())
    _check_db(x_db, -146.0289, 17.02499, -206.9423, -72.94501, [-108.075, -110.531, -107.926],
              [-130.81007, -152.1707, -155.10583], NOISE_FLOOR_DB_ABS)


def test_tiny_forward_shapes_and_batch_independence():
    model = build_audioclip("tiny")
    wave = torch.randn(2, 1, 16000, generator=torch.Generator().manual_seed(0)) * 3000
    out = audioclip_features(model, wave)
    assert out.shape == (2, 1024) and out.dtype == torch.float32 and not out.requires_grad
    assert torch.isfinite(out).all()
    assert torch.allclose(audioclip_features(model, wave[1:]), out[1:], rtol=1e-4, atol=1e-4)
    assert torch.allclose(model(wave[:, 0]).detach(), out, rtol=1e-5, atol=1e-5)  # [B, L] = [B, 1, L]
    with pytest.raises(ValueError, match="unknown AudioCLIP size 'huge'; valid: full, tiny"):
        build_audioclip("huge")


def test_fad_input_lengths_and_modes():
    wave = np.random.default_rng(0).uniform(-0.5, 0.5, 80000).astype(np.float32)  # 5 s at 16 kHz
    cropped = fad_input(wave)
    assert cropped.shape == (1, 64000) and cropped.dtype == torch.float32
    assert torch.equal(cropped[0], torch.from_numpy(wave[:64000]))  # faithful: the floats as they are
    padded = fad_input(wave[:16000], max_audio_len_s=2.0)
    assert padded.shape == (1, 32000) and padded[0, 16000:].abs().max() == 0
    assert torch.equal(padded[0, :16000], torch.from_numpy(wave[:16000]))
    assert FAD_SCALE == 1e4

    import librosa

    tone = (0.6 * np.sin(2 * np.pi * 1000 * np.arange(64000) / 16000)).astype(np.float32)
    corrected = fad_input(tone, 4.0, mode="corrected")
    assert corrected.shape == (1, 176400)  # 4 s at 44.1 kHz
    assert corrected.abs().max() > 15000  # int16 range
    expected = librosa.resample(tone, orig_sr=16000, target_sr=44100, res_type="soxr_hq")
    recovered = int16_rescale(corrected)[0].numpy()  # what the head sees after its own rescale
    assert np.abs(recovered - expected).max() < 1e-6
    with pytest.raises(ValueError, match="unknown FAD input mode 'exact'"):
        fad_input(wave, mode="exact")
    with pytest.raises(ValueError, match="mono"):
        fad_input(np.zeros((2, 100), np.float32))


def test_write_random_then_load_round_trip(tmp_path, caplog):
    path = write_random_audioclip(tmp_path, "tiny", seed=3)
    assert path == tmp_path / "AudioCLIP-Full-Training.pt"
    written = torch.load(path, map_location="cpu", weights_only=True)
    assert {"logit_scale", "logit_scale_ai", "logit_scale_at", "visual.conv1.weight"} <= set(written)
    with caplog.at_level(logging.INFO, logger="javisdit.eval.networks.audioclip"):
        model = load_audioclip(tmp_path, "tiny")
    assert "skipped 5 CLIP keys" in caplog.text
    assert not model.training
    state = model.state_dict()
    assert list(state) == [k for k in written if k.startswith("audio.")]
    assert all(torch.equal(state[k], written[k]) for k in state)
    reference = build_audioclip("tiny")
    reference.load_state_dict({k: v for k, v in written.items() if k.startswith("audio.")})
    wave = torch.stack([fad_input(np.sin(np.arange(24000) * f).astype(np.float32) * 0.5, 1.0, "corrected")
                        for f in (0.05, 0.2)])
    assert torch.equal(audioclip_features(model, wave), audioclip_features(reference, wave))
    assert not torch.equal(written["audio.fbsp.m"], torch.zeros(1025))  # the FBSP values came from the file


def _rewrite(path, edit) -> None:
    state = torch.load(path, map_location="cpu", weights_only=True)
    edit(state)
    torch.save(state, path)


def test_load_errors(tmp_path):
    with pytest.raises(MissingWeightsError, match=r"AudioCLIP-Full-Training\.pt.*github\.com/AndreyGuzhov"):
        load_audioclip(tmp_path, "tiny")
    path = write_random_audioclip(tmp_path, "tiny")
    _rewrite(path, lambda s: s.__setitem__("clap.text_branch.weight", torch.zeros(2)))
    with pytest.raises(WeightsMismatchError, match=r"neither .* clap\.text_branch\.weight"):
        load_audioclip(tmp_path, "tiny")

    write_random_audioclip(tmp_path, "tiny")
    _rewrite(path, lambda s: s.__setitem__("audio.fc.bias", torch.zeros(7)))
    with pytest.raises(WeightsMismatchError, match=r"audio\.fc\.bias \[7\] vs \[1024\]"):
        load_audioclip(tmp_path, "tiny")

    write_random_audioclip(tmp_path, "tiny")
    _rewrite(path, lambda s: (s.pop("audio.window"), s.__setitem__("audio.extra.weight", torch.zeros(1))))
    with pytest.raises(WeightsMismatchError, match=r"missing: audio\.window.*unexpected: audio\.extra\.weight"):
        load_audioclip(tmp_path, "tiny")

    write_random_audioclip(tmp_path, "tiny")  # a tiny file does not fit the full head
    with pytest.raises(WeightsMismatchError, match=r"audio\.conv1\.weight \[4, 3, 7, 7\] vs \[64, 3, 7, 7\]"):
        load_audioclip(tmp_path, "full")
