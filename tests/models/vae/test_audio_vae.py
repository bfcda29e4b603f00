"""AudioLDM2 wrapper and the mel front-end."""

import math

import numpy as np
import pytest
import torch

from javisdit.models.loading import MissingWeightsError
from javisdit.models.vae.audio import AudioLDM2, build_audioldm2
from javisdit.models.vae.mel import MelFrontEnd, to_mono_16k
from javisdit.registry import MODELS, build_module


@pytest.fixture(scope="module")
def tiny():
    torch.manual_seed(0)
    return build_module(dict(type="AudioLDM2", preset="tiny"), MODELS)


def test_sine_energy_lands_in_its_mel_bin():
    import librosa

    mel = MelFrontEnd()
    t = torch.arange(int(2.125 * 16000)) / 16000
    log_mel = mel(torch.sin(2 * math.pi * 1000 * t), duration=2.125)
    assert log_mel.shape == (1, 1, 224, 64)  # 212 frames rounded up to 224
    centres = librosa.mel_frequencies(66, fmin=0, fmax=8000)[1:-1]
    expected = int(np.argmin(np.abs(centres - 1000)))
    assert (log_mel[0, 0, 5:200].argmax(dim=-1) == expected).all()
    assert (log_mel[0, 0, 214:] == 0).all()  # padding rows are 0 in the log domain (the original's)
    assert log_mel[0, 0, :213].min() >= math.log(1e-5)


def test_mel_from_audio_cfg():
    cfg = dict(preprocessing=dict(audio=dict(sampling_rate=16000), stft=dict(filter_length=1024, hop_length=160,
               win_length=1024), mel=dict(n_mel_channels=64, mel_fmin=0, mel_fmax=8000)))
    assert MelFrontEnd.from_audio_cfg(cfg).mel_basis.shape == (64, 513)


def test_encode_decode_lengths(tiny):
    assert tiny.latent_size(4.25) == (8, 112, 16)
    noise, samples = tiny.prepare_latents(4.25, 2)
    assert noise.shape == (2, 8, 112, 16) and samples == 68000
    wave = tiny.decode(noise, samples)
    assert wave.shape == (2, 68000) and wave.dtype == torch.float32
    latents = tiny.encode_waveform(torch.randn(2, 68000), duration=4.25)
    assert latents.shape == (2, 8, 112, 16)
    with pytest.raises(ValueError, match=r"mel must be \[B, 1, T, 64\] with T a multiple of 4"):
        tiny.encode(torch.zeros(1, 1, 30, 64))


def _hub_layout(model: AudioLDM2, folder):
    model.vae.save_pretrained(folder / "vae")
    model.vocoder.save_pretrained(folder / "vocoder")
    return folder


def test_loads_vae_and_vocoder_subfolders(tiny, tmp_path):
    folder = _hub_layout(tiny, tmp_path / "audioldm2")
    (folder / "unet").mkdir()  # other parts of the pipeline are never read
    loaded = build_module(dict(type="AudioLDM2", from_pretrained=str(folder)), MODELS)
    assert loaded.scaling_factor == pytest.approx(0.4110932946205139)
    z = torch.randn(1, 8, 8, 16)
    torch.testing.assert_close(loaded.decode(z, 5000), tiny.decode(z, 5000))


def test_missing_weights_offline():
    with pytest.raises(MissingWeightsError) as err:
        build_audioldm2(from_pretrained="cvssp/audioldm2")
    assert "huggingface-cli download cvssp/audioldm2 --include 'vae/*' 'vocoder/*' --local-dir ./checkpoints/audioldm2" in str(err.value)
    assert "audio_vae.from_pretrained=./checkpoints/audioldm2" in str(err.value)


def test_to_mono_16k(caplog):
    stereo = torch.stack([torch.ones(8000), -torch.ones(8000)])
    with caplog.at_level("INFO"):
        mono = to_mono_16k(stereo, 16000, "clip.wav")
    assert mono.shape == (8000,) and mono.abs().max() == 0
    with caplog.at_level("INFO"):
        resampled = to_mono_16k(torch.randn(44100), 44100, "clip.wav")
    assert resampled.shape == (16000,)
    assert "2 channels mixed down" in caplog.text and "resampled from 44100 Hz to 16000 Hz" in caplog.text


def test_bf16_module_keeps_an_fp32_mel(tiny):
    import copy

    half = copy.deepcopy(tiny).to(torch.bfloat16)
    wave = torch.randn(1, 8000)
    torch.testing.assert_close(half.mel(wave), tiny.mel(wave))
    assert half.encode_waveform(wave, duration=0.5).dtype == torch.bfloat16


def test_constructor_builds_layers_without_loading(refuse_loading):
    from javisdit.models.vae import audio

    refuse_loading(audio)
    model = AudioLDM2.from_preset("tiny", sample_posterior=False)
    assert model.sample_posterior is False and model.latent_channels == 8
    assert not any(p.is_meta or p.requires_grad for p in model.parameters())
    preset = audio.AUDIO_VAE_PRESETS["tiny"]
    parts = AudioLDM2(*audio.build_parts(preset["vae"], preset["vocoder"]))
    assert parts.sample_posterior is True and parts.decode(torch.zeros(1, 8, 4, 16), 2000).shape == (1, 2000)
    with pytest.raises(ValueError, match="unknown audio VAE preset 'big'; valid: audioldm2, tiny"):
        AudioLDM2.from_preset("big")


def test_builder_loads_strictly(tiny, tmp_path):
    from safetensors.torch import load_file, save_file

    from javisdit.models.loading import WeightsMismatchError

    folder = _hub_layout(tiny, tmp_path / "audioldm2")
    loaded = build_module(dict(type="AudioLDM2", from_pretrained=str(folder), sample_posterior=False), MODELS)
    assert loaded.sample_posterior is False
    assert not any(p.is_meta for p in loaded.parameters())  # every meta tensor was replaced by a checkpoint one
    reference = tiny.state_dict()
    for key, value in loaded.state_dict().items():
        assert torch.equal(value, reference[key]), key
    file = folder / "vocoder" / "model.safetensors"
    state = load_file(file)
    state["extra.weight"] = torch.zeros(1)
    save_file(state, file)
    expected = r"/vocoder does not fit SpeechT5HifiGan: 1 unexpected: extra\.weight"
    with pytest.raises(WeightsMismatchError, match=expected):
        build_audioldm2(from_pretrained=str(folder))
