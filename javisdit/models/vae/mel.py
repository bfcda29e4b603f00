"""AudioLDM2's mel front-end: 16 kHz mono waveform -> log-mel [B, 1, T, 64] with a 10 ms hop.

The waveform is centred, peak-normalised to 0.5 and clipped; a 1024-point STFT (periodic Hann,
reflect padding) gives magnitudes, a Slaney mel basis (librosa, 0-8 kHz) maps them to 64 bins, and
``ln(max(mel, 1e-5))`` is transposed to time-major. The length is the clip's, rounded up to a multiple
of 32 frames, with zero rows appended (zero in the log domain, as the original).
"""

from __future__ import annotations

import logging

import torch
from torch import nn

from javisdit.models import geometry

logger = logging.getLogger(__name__)


class MelFrontEnd(nn.Module):
    def __init__(self, sampling_rate: int = geometry.SAMPLE_RATE, n_fft: int = 1024, hop_length: int = geometry.MEL_HOP,
                 win_length: int = 1024, n_mels: int = geometry.MEL_BINS, fmin: float = 0.0, fmax: float = 8000.0):
        super().__init__()
        import librosa

        self.sampling_rate, self.n_fft, self.hop_length, self.win_length = sampling_rate, n_fft, hop_length, win_length
        basis = librosa.filters.mel(sr=sampling_rate, n_fft=n_fft, n_mels=n_mels, fmin=fmin, fmax=fmax)
        # Plain fp32 tensors, not buffers: a module cast to bf16 must still compute its mel in fp32.
        self.mel_basis = torch.from_numpy(basis).float()
        self.window = torch.hann_window(win_length, periodic=True)

    @classmethod
    def from_audio_cfg(cls, audio_cfg: dict) -> "MelFrontEnd":
        """From the configs' ``audio_cfg`` (``preprocessing.{audio,stft,mel}``)."""
        pre = audio_cfg["preprocessing"]
        return cls(pre["audio"]["sampling_rate"], pre["stft"]["filter_length"], pre["stft"]["hop_length"],
                   pre["stft"]["win_length"], pre["mel"]["n_mel_channels"], pre["mel"]["mel_fmin"],
                   pre["mel"]["mel_fmax"])

    def num_frames(self, duration: float) -> int:
        """Target mel length of a clip of ``duration`` seconds (multiple of 32)."""
        return geometry.mel_frames(duration)

    def forward(self, waveform: torch.Tensor, duration: float | None = None) -> torch.Tensor:
        """waveform [S] or [B, S] at ``sampling_rate`` -> log-mel [B, 1, T, n_mels].

        Args:
            duration: clip length in seconds that sets T (default: the waveform's own length).
        """
        if waveform.dim() == 1:
            waveform = waveform[None]
        if waveform.dim() != 2:
            raise ValueError(f"waveform must be [S] or [B, S] (mono), got {list(waveform.shape)}")
        w = waveform.float()
        w = w - w.mean(dim=-1, keepdim=True)
        w = (0.5 * w / (w.abs().amax(dim=-1, keepdim=True) + 1e-8)).clamp(-1.0, 1.0)
        if self.window.device != w.device:
            self.mel_basis, self.window = self.mel_basis.to(w.device), self.window.to(w.device)
        spec = torch.stft(w, self.n_fft, self.hop_length, self.win_length, self.window, center=True,
                          pad_mode="reflect", return_complex=True).abs()
        log_mel = torch.log(torch.clamp(self.mel_basis @ spec, min=1e-5)).transpose(1, 2)  # [B, T, mels]
        if duration is None:
            duration = w.shape[-1] / self.sampling_rate
        target = self.num_frames(duration)
        frames = log_mel.shape[1]
        log_mel = log_mel[:, :target] if frames >= target else torch.nn.functional.pad(log_mel, (0, 0, 0, target - frames))
        return log_mel[:, None]


_REPORTED: set[tuple[str, str]] = set()


def _log_once(name: str, kind: str, message: str, *args) -> None:
    if (name, kind) not in _REPORTED:
        _REPORTED.add((name, kind))
        logger.info(message, name, *args)


def to_mono_16k(waveform: torch.Tensor, sample_rate: int, name: str = "audio") -> torch.Tensor:
    """A float mono waveform at 16 kHz: channels [C, S] are averaged and other rates resampled
    (librosa / soxr), each with a log line (once per file name)."""
    if waveform.dim() == 2:
        if waveform.shape[0] > 1:
            _log_once(name, "mix", "%s: %d channels mixed down to mono", waveform.shape[0])
        waveform = waveform.float().mean(dim=0)
    if waveform.dim() != 1:
        raise ValueError(f"{name}: expected a waveform [S] or [C, S], got {list(waveform.shape)}")
    if sample_rate != geometry.SAMPLE_RATE:
        import librosa

        _log_once(name, "rate", "%s: resampled from %d Hz to %d Hz", sample_rate, geometry.SAMPLE_RATE)
        waveform = torch.from_numpy(
            librosa.resample(waveform.float().numpy(), orig_sr=sample_rate, target_sr=geometry.SAMPLE_RATE)
        )
    return waveform.float()
