"""The Griffin-Lim vocoder: a round trip through the mel front-end, and its choice in ``audio_vae``."""

import math

import librosa
import numpy as np
import pytest
import torch

from javisdit.errors import ConfigError
from javisdit.models.vae.audio import AudioLDM2, build_audioldm2
from javisdit.models.vae.griffin_lim import GriffinLimVocoder
from javisdit.models.vae.mel import MelFrontEnd
from javisdit.registry import MODELS, build_module

SR = 16000
SECONDS = 2.0
BURSTS = [(0.30, 200.0), (0.70, 1200.0), (1.10, 200.0), (1.50, 1200.0)]  # (onset s, pitch Hz)


def _bursts() -> torch.Tensor:
    """Decaying tone bursts (time constant 60 ms, like an impact), 2 s at 16 kHz."""
    t = torch.arange(int(SECONDS * SR), dtype=torch.float64) / SR
    wave = torch.zeros_like(t)
    for onset, hz in BURSTS:
        after = (t - onset).clamp(min=0)
        wave += (t >= onset) * torch.sin(2 * math.pi * hz * after) * torch.exp(-after / 0.06)
    return wave.float()


def _envelope_db(wave: torch.Tensor) -> torch.Tensor:
    """Energy of 5 ms windows starting at every ms, in dB re the loudest."""
    energy = torch.nn.functional.avg_pool1d((wave**2)[None, None], SR // 200, stride=SR // 1000)[0, 0]
    return 10 * torch.log10(energy / energy.max() + 1e-12)


def _onsets(wave: torch.Tensor, on_db: float = -20.0, rearm_db: float = -40.0) -> list[float]:
    """Seconds at which the envelope rises through ``on_db``, each after it fell below ``rearm_db``."""
    found, armed = [], True
    for ms, level in enumerate(_envelope_db(wave).tolist()):
        if armed and level > on_db:
            found.append(ms / 1000)
            armed = False
        elif level < rearm_db:
            armed = True
    return found


def _pitch(wave: torch.Tensor, onset: float) -> float:
    """The strongest frequency (1 Hz resolution) of the first 100 ms of a burst."""
    segment = wave[int(onset * SR): int((onset + 0.1) * SR)]
    spectrum = torch.fft.rfft(segment * torch.hann_window(len(segment), periodic=False), n=SR).abs()
    return float(spectrum.argmax())


@pytest.fixture(scope="module")
def round_trip():
    """(waveform, its log-mel [1, 1, 224, 64], the Griffin-Lim waveform of that mel cropped to 2 s)."""
    wave = _bursts()
    mel = MelFrontEnd()(wave, SECONDS)
    rebuilt = GriffinLimVocoder()(mel.squeeze(1))
    assert rebuilt.shape == (1, 224 * 160) and rebuilt.dtype == torch.float32
    return wave, mel, rebuilt[0, : len(wave)]


def _mel_errors(mel: torch.Tensor, wave: torch.Tensor) -> tuple[float, float]:
    """Mean |log-mel error| of ``wave`` against ``mel`` over the clip's 200 frames (the rest is padding):
    over all bins, and over the bins within 6 nats (52 dB) of the loudest after removing the one gain
    offset that the front-end's peak normalisation leaves (GL changes the crest factor, so the peak)."""
    error = (MelFrontEnd()(wave, SECONDS) - mel)[0, 0, :200]
    reference = mel[0, 0, :200]
    active = reference > reference.max() - 6
    offset = error[active].median()
    return error.abs().mean().item(), (error[active] - offset).abs().mean().item()


def test_round_trip_gives_back_the_mel(round_trip):
    wave, mel, rebuilt = round_trip
    overall, active = _mel_errors(mel, rebuilt)
    assert overall < 0.3 and active < 0.2  # measured 0.24 and 0.15 nats
    # the phase iterations do the work: the initial random phase alone is far off
    no_iterations = GriffinLimVocoder(n_iter=0)(mel.squeeze(1))[0, : len(wave)]
    assert _mel_errors(mel, no_iterations)[1] > 2 * active
    assert 0.3 < rebuilt.abs().max() < 1.0  # the front-end's scale (peak 0.5) comes back, unclipped


def test_round_trip_keeps_onsets_and_pitch(round_trip):
    wave, _, rebuilt = round_trip
    original = _onsets(wave)
    assert original == pytest.approx([onset for onset, _ in BURSTS], abs=0.005)  # the detector itself
    assert _onsets(rebuilt) == pytest.approx(original, abs=0.010)  # measured: 3-5 ms early (pre-echo)
    centres = librosa.mel_frequencies(66, fmin=0, fmax=8000)
    for onset, hz in BURSTS:
        # a 64-bin mel cannot say more than which filters a tone excites: half their spacing at ``hz``
        spacing = np.diff(centres)[np.searchsorted(centres, hz) - 1]
        assert abs(_pitch(rebuilt, onset) - hz) < spacing / 2, (onset, hz, _pitch(rebuilt, onset))


def test_deterministic_and_parameter_free():
    mel = torch.randn(2, 16, 64) - 5
    vocoder = GriffinLimVocoder(n_iter=2)
    first = vocoder(mel)
    assert torch.equal(first, vocoder(mel)) and torch.equal(first, GriffinLimVocoder(n_iter=2)(mel))
    assert not torch.equal(first, GriffinLimVocoder(n_iter=2, seed=1)(mel))
    # unbatched [T, 64] -> [S]; the batch does not mix (batched FFTs may round differently)
    torch.testing.assert_close(vocoder(mel[1]), first[1], rtol=1e-4, atol=1e-6)
    assert vocoder.state_dict() == {} and not list(vocoder.parameters())
    with torch.device("meta"):  # as the checkpoint builder makes the parts: nothing of it is meta
        built = GriffinLimVocoder(n_iter=2)
    assert torch.equal(built(mel), first)


def test_decode_lengths_with_griffin_lim():
    torch.manual_seed(0)
    audio_vae = build_module(dict(type="AudioLDM2", preset="tiny", vocoder="griffin_lim"), MODELS)
    assert isinstance(audio_vae.vocoder, GriffinLimVocoder)
    assert all(key.startswith("vae.") for key in audio_vae.state_dict())  # nothing to load for the vocoder
    noise, samples = audio_vae.prepare_latents(SECONDS, 1)
    assert noise.shape == (1, 8, 56, 16) and samples == 32000
    wave = audio_vae.decode(noise, samples)
    assert wave.shape == (1, 32000) and wave.dtype == torch.float32
    with pytest.raises(ValueError, match="asked for 5200 samples but 8 latent frames give 5120"):
        audio_vae.decode(noise[:, :, :8], 5200)
    half = audio_vae.to(torch.bfloat16)  # as the pipeline casts it: the inversion still runs in fp32
    assert half.decode(noise[:, :, :8].bfloat16(), 5000).dtype == torch.float32


def test_chosen_in_the_config(repo):
    from javisdit.config import parse_command_line

    base = [str(repo / "configs" / "tiny" / "inference.py"), "--cfg-options"]
    cfg, _ = parse_command_line("inference", [*base, "audio_vae.vocoder=griffin_lim"])
    assert isinstance(build_module(cfg.audio_vae, MODELS).vocoder, GriffinLimVocoder)  # the pipeline's call
    cfg, _ = parse_command_line("inference", base[:1])
    assert type(build_module(cfg.audio_vae, MODELS).vocoder).__name__ == "SpeechT5HifiGan"  # the default
    options = build_audioldm2(preset="tiny", vocoder=dict(type="griffin_lim", n_iter=8, momentum=0.0)).vocoder
    assert (options.n_iter, options.momentum, options.nnls_iter) == (8, 0.0, 32)

    cfg, _ = parse_command_line("inference", [*base, "audio_vae.vocoder=wavenet"])
    with pytest.raises(ConfigError) as err:
        build_module(cfg.audio_vae, MODELS)
    assert str(err.value) == "audio_vae.vocoder: unknown vocoder 'wavenet'; valid: griffin_lim, hifigan"
    valid = "momentum, n_iter, nnls_iter, seed"
    with pytest.raises(ConfigError, match=f"griffin_lim has no option 'iters'; valid: {valid}"):
        build_audioldm2(preset="tiny", vocoder=dict(type="griffin_lim", iters=8))
    with pytest.raises(ConfigError, match=r"hifigan has no option 'n_iter'; valid: none"):
        build_audioldm2(preset="tiny", vocoder=dict(type="hifigan", n_iter=8))
    with pytest.raises(ConfigError, match=r"audio_vae.vocoder: momentum must be in \[0, 1\), got 1.5"):
        build_audioldm2(preset="tiny", vocoder=dict(type="griffin_lim", momentum=1.5))


def test_from_pretrained_reads_only_the_vae(tmp_path):
    torch.manual_seed(0)
    reference = AudioLDM2.from_preset("tiny", vocoder="griffin_lim")
    reference.vae.save_pretrained(tmp_path / "audioldm2" / "vae")  # no vocoder/ folder
    loaded = build_audioldm2(from_pretrained=str(tmp_path / "audioldm2"), vocoder="griffin_lim")
    z = torch.randn(1, 8, 8, 16)
    torch.testing.assert_close(loaded.decode(z, 5000), reference.decode(z, 5000))
    missing = r"vocoder/config.json is missing \(expected AudioLDM2's vae/ and vocoder/\)"
    with pytest.raises(ValueError, match=missing):  # the HiFi-GAN still needs its weights
        build_audioldm2(from_pretrained=str(tmp_path / "audioldm2"))
    with pytest.raises(ConfigError, match="unknown vocoder"):  # checked before any weights are looked for
        build_audioldm2(from_pretrained=str(tmp_path / "nowhere"), vocoder="wavenet")
