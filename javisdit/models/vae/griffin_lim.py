"""``GriffinLimVocoder``: a weight-free vocoder that inverts the AudioLDM2 mel front-end (``mel.py``).

A drop-in for the HiFi-GAN of ``AudioLDM2.decode`` (selected with ``audio_vae.vocoder="griffin_lim"``):
it takes the log-mel the VAE decodes, [B, T, 64] in ``ln`` units at a 10 ms hop, and gives a 16 kHz
waveform [B, 160·T]. Three steps, each the inverse of one step of the front-end:

1. ``exp`` undoes ``ln(max(mel, 1e-5))`` (what was clamped stays at 1e-5: the floor, -100 dB);
2. mel -> linear magnitude [B, 513, T]: non-negative least squares ``min ||basis·S - mel||², S >= 0``
   by ``nnls_iter`` multiplicative updates (Lee & Seung), started from ``basisᵀ·mel``. The pseudo-inverse
   clamped at 0 fits the mel about 6x worse (mean |log-mel error| 0.31 against 0.05 on tone bursts), so
   it is not used;
3. phase by fast Griffin-Lim (Perraudin et al., 2013): alternate projections between the
   magnitude and the consistent spectrograms (``torch.stft``/``istft`` with the front-end's 1024-point
   periodic Hann, hop 160, centred, reflect-padded), extrapolated by ``momentum``. The initial phase is
   uniform noise from a generator seeded with ``seed`` on the CPU, one draw for every sample of a batch,
   so a mel gives the same waveform on every call and in any batch (and starts from the same phase on
   any device).

The front-end normalises each clip to a peak of 0.5 before its STFT, so the waveform comes back at
that scale (about 0.5 peak); that normalisation's gain is otherwise lost. The module has no parameters
and no buffers: its state dict is empty and there is nothing to load.

Shapes: B batch, T mel frames (10 ms), M = 64 mel bins, F = 513 linear-frequency bins, S samples.
"""

from __future__ import annotations

import math

import torch
from torch import nn

from javisdit.models.vae.mel import MelFrontEnd

_EPS = 1e-12


class GriffinLimVocoder(nn.Module):
    """log-mel [B, T, 64] -> 16 kHz waveform [B, 160·T], by mel inversion and fast Griffin-Lim.

    Args:
        n_iter: Griffin-Lim iterations (0: the initial random phase only).
        momentum: the fast Griffin-Lim extrapolation, in [0, 1); 0 is plain Griffin-Lim.
        nnls_iter: multiplicative updates of the mel -> magnitude least squares.
        seed: seed of the initial phase.
    """

    def __init__(self, n_iter: int = 32, momentum: float = 0.99, nnls_iter: int = 32, seed: int = 0):
        super().__init__()
        if n_iter < 0 or nnls_iter < 0:
            raise ValueError(f"n_iter and nnls_iter must be >= 0, got {n_iter} and {nnls_iter}")
        if not 0.0 <= momentum < 1.0:
            raise ValueError(f"momentum must be in [0, 1), got {momentum}")
        self.n_iter, self.momentum, self.nnls_iter, self.seed = int(n_iter), float(momentum), int(nnls_iter), int(seed)
        with torch.device("cpu"):  # real tensors even where the checkpoint builder makes the VAE on "meta"
            front = MelFrontEnd()  # the very parameters the mels were made with
        self.sampling_rate, self.n_fft = front.sampling_rate, front.n_fft
        self.hop_length, self.win_length = front.hop_length, front.win_length
        # A plain fp32 tensor, not a buffer: nothing to save or load, and a module cast to bf16 still
        # inverts in fp32 (moved to the mel's device as it comes).
        self.mel_basis = front.mel_basis  # [M, F]

    def extra_repr(self) -> str:
        return f"n_iter={self.n_iter}, momentum={self.momentum}, nnls_iter={self.nnls_iter}, seed={self.seed}"

    def mel_to_magnitude(self, log_mel: torch.Tensor) -> torch.Tensor:
        """log-mel [B, T, M] -> non-negative STFT magnitude [B, F, T] whose mel is closest to it."""
        basis = self.mel_basis.to(log_mel.device)
        mel = log_mel.float().exp().transpose(1, 2)  # [B, M, T]
        target = basis.T @ mel  # [B, F, T]
        magnitude = target.clamp(min=_EPS)
        for _ in range(self.nnls_iter):
            # Lee & Seung: S <- S · Bᵀmel / BᵀB·S keeps S >= 0 and never increases ||B·S - mel||².
            magnitude = magnitude * target / (basis.T @ (basis @ magnitude) + _EPS)
        return magnitude

    def _istft(self, spec: torch.Tensor, window: torch.Tensor, length: int) -> torch.Tensor:
        return torch.istft(spec, self.n_fft, self.hop_length, self.win_length, window, center=True, length=length)

    def _stft(self, wave: torch.Tensor, window: torch.Tensor, frames: int) -> torch.Tensor:
        spec = torch.stft(wave, self.n_fft, self.hop_length, self.win_length, window, center=True,
                          pad_mode="reflect", return_complex=True)
        return spec[..., :frames]  # a centred STFT of 160·T samples has T + 1 frames

    def griffin_lim(self, magnitude: torch.Tensor) -> torch.Tensor:
        """STFT magnitude [B, F, T] -> waveform [B, hop·T] whose STFT magnitude approaches it."""
        frames, length = magnitude.shape[-1], self.hop_length * magnitude.shape[-1]
        window = torch.hann_window(self.win_length, periodic=True, device=magnitude.device)
        generator = torch.Generator().manual_seed(self.seed)
        # one draw [F, T] shared by the batch, so a sample's waveform does not depend on its batch
        angle = torch.rand(magnitude.shape[-2:], generator=generator).to(magnitude.device) * (2 * math.pi)
        phase = torch.polar(torch.ones_like(magnitude), angle.expand_as(magnitude))
        previous = None
        for _ in range(self.n_iter):
            rebuilt = self._stft(self._istft(magnitude * phase, window, length), window, frames)
            accelerated = rebuilt if previous is None else rebuilt + self.momentum * (rebuilt - previous)
            previous = rebuilt
            phase = accelerated / accelerated.abs().clamp(min=_EPS)
        return self._istft(magnitude * phase, window, length)

    @torch.no_grad()
    def forward(self, log_mel: torch.Tensor) -> torch.Tensor:
        """log-mel [B, T, M] or [T, M] (any float dtype) -> fp32 waveform [B, 160·T] or [160·T] at 16 kHz."""
        unbatched = log_mel.dim() == 2
        if unbatched:
            log_mel = log_mel[None]
        if log_mel.dim() != 3 or log_mel.shape[-1] != self.mel_basis.shape[0]:
            raise ValueError(f"log-mel must be [B, T, {self.mel_basis.shape[0]}] or [T, {self.mel_basis.shape[0]}], "
                             f"got {list(log_mel.shape)}")
        wave = self.griffin_lim(self.mel_to_magnitude(log_mel))
        return wave[0] if unbatched else wave

