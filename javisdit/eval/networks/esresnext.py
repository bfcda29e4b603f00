"""ESResNeXt-FBSP: the audio head of AudioCLIP, whose raw 1024-d output is the FAD embedding
(``EVAL_MODELS.md`` §2.2; loading and inputs live in ``javisdit.eval.networks.audioclip``).

The head turns a waveform into a learned spectrogram and runs an image network on it:

1. int16-range rescale ``(x + 32768) * 2 / 65535 - 1`` (the head was trained on int16-valued floats);
2. framing: frames of 1654 samples at hop 561 of the signal zero-padded on both sides (left gets the
   smaller half), times a periodic Blackman-Harris window, each zero-padded to 2048;
3. ``LinearFBSP``: a learned complex "Fourier basis" with a sinc window raised to a learned real power
   (1025 bins);
4. power ``re² + im²`` of bins 0..1022 split into three bands of 341 bins (the three "colour" channels),
   values <= 0 floored at 1e-18, then 10·log10;
5. ResNeXt-50 32x4d (torchvision v1.5 bottlenecks) with five ``Attention2d`` gates, average pool, and
   ``fc`` 2048 -> 1024. Channel groups of the input (one for mono) are summed before ``fc``.

The float32 order of operations of steps 1-4 follows upstream: the rescale is quantised to float32 steps
near 1 (6e-8), which is what the golden values of §2.4 show.

Shape legend: B clips, C input channels (1), L samples, F frames (113 for 64,000 samples), K = 1025 bins,
N = B·C spectrogram images of 3 x 341 x F.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import scipy.signal
import torch
import torch.nn.functional as F
from torch import nn

N_FFT = 2048
HOP_LENGTH = 561
WIN_LENGTH = 1654
NUM_BANDS = 3  # the three "colour" channels of the image network
LOG10_FLOOR = 1e-18
FBSP_EPS = 1e-8

# --------------------------------------------------------------------------------------------- helpers


def blackman_harris_window(length: int = WIN_LENGTH) -> torch.Tensor:
    """The periodic Blackman-Harris window of scipy (``fftbins=True``), float64 -> float32: [length].

    Made on the current default device, so that a model built on the meta device holds no data."""
    return torch.tensor(scipy.signal.get_window("blackmanharris", length, fftbins=True), dtype=torch.float32)


def int16_rescale(x: torch.Tensor) -> torch.Tensor:
    """Map int16-range samples to [-1, 1]: ``(x + 32768) * 2 / 65535 - 1``, in upstream's float order."""
    return (x + 32768.0) * 2.0 / 65535.0 - 1.0


def frame_signal(signal: torch.Tensor, window: torch.Tensor, hop_length: int = HOP_LENGTH) -> torch.Tensor:
    """Windowed frames of [N, L] -> [N, F, len(window)].

    F = 1 + ceil((L - len(window)) / hop) (1 when L <= len(window)); the signal is zero-padded to
    (F - 1)·hop + len(window) samples, the smaller half of the padding on the left.
    """
    frame_length, length = window.shape[0], signal.shape[-1]
    num_frames = 1 if length <= frame_length else 1 + math.ceil((length - frame_length) / hop_length)
    extra = (num_frames - 1) * hop_length + frame_length - length
    padded = F.pad(signal, (extra // 2, extra - extra // 2))
    return padded.unfold(-1, frame_length, hop_length) * window


# ---------------------------------------------------------------------------------------------- layers


class LinearFBSP(nn.Module):
    """The learned "Fourier basis" of the head: K complex outputs of real frames [..., n_in].

    Output k uses the basis W[k, j] = sqrt(fb_k) · w_kj^m_k · exp(-i fc_k t_j) / sqrt(n_in) (``normalized``),
    t_j = π·linspace(-1, 1, n_in)_j + 1e-8 and the real window w_kj = sinc(fb_k t_j / (m_k + 1e-8)). The
    real power of the real w is taken as a complex number: modulus |w|^m, angle m·arg(w) (arg = π for w < 0).
    At the initial values (m = 0, fb = 1, fc = k) W is the plain DFT basis. ``bias`` is the empty
    parameter upstream keeps (built with ``bias=False``); it is never used.
    """

    def __init__(self, out_features: int = N_FFT // 2 + 1, normalized: bool = True) -> None:
        super().__init__()
        self.out_features, self.normalized = out_features, normalized
        self.m = nn.Parameter(torch.zeros(out_features))
        self.fb = nn.Parameter(torch.ones(out_features))
        self.fc = nn.Parameter(torch.arange(out_features, dtype=torch.float32))
        self.bias = nn.Parameter(torch.empty(0))

    def weights(self, in_features: int) -> torch.Tensor:
        """The complex basis as [K, in_features, 2] (real, imaginary)."""
        t = math.pi * torch.linspace(-1.0, 1.0, in_features, dtype=self.m.dtype, device=self.m.device) + FBSP_EPS
        t = t.reshape(1, -1)  # [1, n_in]
        m, fb, fc = (p.reshape(-1, 1) for p in (self.m, self.fb, self.fc))  # [K, 1]
        kernel_re, kernel_im = torch.cos(fc * t), -torch.sin(fc * t)
        arg = fb * t / (m + FBSP_EPS)
        window = torch.where(arg == 0, torch.ones_like(arg), torch.sin(arg) / arg)
        modulus = (window * window) ** (0.5 * m)
        angle = m * torch.where(window < 0, math.pi, 0.0)
        window_re, window_im = modulus * torch.cos(angle), modulus * torch.sin(angle)
        weights = fb.sqrt().unsqueeze(-1) * torch.stack(
            (window_re * kernel_re - window_im * kernel_im, window_re * kernel_im + window_im * kernel_re), dim=-1)
        return weights / in_features**0.5 if self.normalized else weights

    def forward(self, frames: torch.Tensor) -> torch.Tensor:
        """[..., n_in] real -> [..., K, 2]."""
        weights = self.weights(frames.shape[-1])
        return torch.stack((F.linear(frames, weights[..., 0]), F.linear(frames, weights[..., 1])), dim=-1)


class Attention2d(nn.Module):
    """A gate: max-pool to the target size, depth-wise conv, 1x1 conv, BatchNorm, sigmoid."""

    def __init__(self, in_channels: int, out_channels: int, kernel_size: tuple[int, int],
                 padding: tuple[int, int]) -> None:
        super().__init__()
        self.conv_depth = nn.Conv2d(in_channels, in_channels, kernel_size, padding=padding, groups=in_channels)
        self.conv_point = nn.Conv2d(in_channels, out_channels, 1)
        self.bn = nn.BatchNorm2d(out_channels)

    def forward(self, x: torch.Tensor, size: Sequence[int]) -> torch.Tensor:
        """[N, in, h, w] -> [N, out, *size] in (0, 1)."""
        x = F.adaptive_max_pool2d(x, tuple(size))
        return torch.sigmoid(self.bn(self.conv_point(self.conv_depth(x))))


class Bottleneck(nn.Module):
    """torchvision v1.5 bottleneck: 1x1 -> grouped 3x3 (with the stride) -> 1x1, plus the shortcut."""

    def __init__(self, in_channels: int, width: int, out_channels: int, groups: int, stride: int = 1) -> None:
        super().__init__()
        self.conv1 = nn.Conv2d(in_channels, width, 1, bias=False)
        self.bn1 = nn.BatchNorm2d(width)
        self.conv2 = nn.Conv2d(width, width, 3, stride=stride, padding=1, groups=groups, bias=False)
        self.bn2 = nn.BatchNorm2d(width)
        self.conv3 = nn.Conv2d(width, out_channels, 1, bias=False)
        self.bn3 = nn.BatchNorm2d(out_channels)
        self.downsample = None
        if stride != 1 or in_channels != out_channels:
            self.downsample = nn.Sequential(nn.Conv2d(in_channels, out_channels, 1, stride=stride, bias=False),
                                            nn.BatchNorm2d(out_channels))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        shortcut = x if self.downsample is None else self.downsample(x)
        y = F.relu(self.bn1(self.conv1(x)))
        y = F.relu(self.bn2(self.conv2(y)))
        return F.relu(self.bn3(self.conv3(y)) + shortcut)


# ----------------------------------------------------------------------------------------------- model

# (depth-wise kernel, padding) of the gates att1..att5 (§2.2 table)
GATE_KERNELS = (((3, 1), (1, 0)), ((1, 5), (0, 2)), ((3, 1), (1, 0)), ((1, 5), (0, 2)), ((3, 5), (1, 2)))


class ESResNeXtFBSP(nn.Module):
    """Waveform [B, C, L] (or [B, L]) -> raw embedding [B, embed_dim]; see the module docstring.

    State-dict keys (children in this registration order): ``window``, ``conv1``, ``bn1``, ``layer1``,
    ``att1``, ..., ``layer4``, ``att4``, ``att5``, ``fc``, ``fbsp``, as upstream's module.

    Args:
        stem: channels of ``conv1``.
        widths: inner (grouped-conv) channels of the bottlenecks of layer1..4.
        channels: output channels of layer1..4.
        blocks: bottlenecks per layer.
        groups: groups of the 3x3 convs.
        embed_dim: outputs of ``fc``.
    """

    def __init__(self, stem: int = 64, widths: Sequence[int] = (128, 256, 512, 1024),
                 channels: Sequence[int] = (256, 512, 1024, 2048), blocks: Sequence[int] = (3, 4, 6, 3),
                 groups: int = 32, embed_dim: int = 1024) -> None:
        super().__init__()
        self.register_buffer("window", blackman_harris_window(WIN_LENGTH))
        self.conv1 = nn.Conv2d(NUM_BANDS, stem, 7, stride=2, padding=3, bias=False)
        self.bn1 = nn.BatchNorm2d(stem)
        in_channels = stem
        for i, (width, out, count) in enumerate(zip(widths, channels, blocks)):
            stride = 1 if i == 0 else 2
            layer = [Bottleneck(in_channels if j == 0 else out, width, out, groups, stride if j == 0 else 1)
                     for j in range(count)]
            self.add_module(f"layer{i + 1}", nn.Sequential(*layer))
            self.add_module(f"att{i + 1}", Attention2d(in_channels, out, *GATE_KERNELS[i]))
            in_channels = out
        self.att5 = Attention2d(in_channels, in_channels, *GATE_KERNELS[4])
        self.fc = nn.Linear(in_channels, embed_dim)
        self.fbsp = LinearFBSP(N_FFT // 2 + 1, normalized=True)
        for module in self.modules():
            if isinstance(module, nn.Conv2d):
                nn.init.kaiming_normal_(module.weight, mode="fan_out", nonlinearity="relu")

    def spectrogram_db(self, x: torch.Tensor) -> torch.Tensor:
        """Steps 1-4: waveform [B, C, L] -> band-split log power [B, C, 3, 341, F] in dB."""
        batch, length = x.shape[0], x.shape[-1]
        x = int16_rescale(x.float()).reshape(-1, length)  # [N, L]
        frames = frame_signal(x, self.window)  # [N, F, 1654]
        pad = N_FFT - WIN_LENGTH
        frames = F.pad(frames, (pad // 2, pad - pad // 2))  # [N, F, 2048]
        spec = self.fbsp(frames).transpose(-2, -3)  # [N, K, F, 2]
        band = spec.shape[-3] // NUM_BANDS
        spec = spec[:, : NUM_BANDS * band].reshape(batch, -1, NUM_BANDS, band, *spec.shape[-2:])
        power = spec[..., 0] ** 2 + spec[..., 1] ** 2  # [B, C, 3, 341, F]
        power = torch.where(power > 0.0, power, torch.full_like(power, LOG10_FLOOR))
        return torch.log10(power) * 10.0

    def features(self, x: torch.Tensor) -> torch.Tensor:
        """Step 5 up to the reduction: [N, 3, H, W] -> [N, channels[-1]]."""
        x = F.max_pool2d(F.relu(self.bn1(self.conv1(x))), 3, stride=2, padding=1)
        for i in range(1, 5):
            gate_input = x
            x = getattr(self, f"layer{i}")(x)
            x = x * getattr(self, f"att{i}")(gate_input, x.shape[-2:])
        pooled = F.adaptive_avg_pool2d(x, 1)  # [N, D, 1, 1]
        return torch.flatten(pooled * self.att5(x, pooled.shape[-2:]), 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """[B, C, L] or [B, L] waveform -> [B, embed_dim] (no normalisation)."""
        if x.dim() == 2:
            x = x[:, None]
        if x.dim() != 3:
            raise ValueError(f"expected a waveform batch [B, C, L] or [B, L], got shape {list(x.shape)}")
        x_db = self.spectrogram_db(x)  # [B, C, 3, H, F]
        batch, groups = x_db.shape[:2]
        pooled = self.features(x_db.flatten(0, 1)).reshape(batch, groups, -1).sum(dim=1)  # [B, D]
        return self.fc(pooled)

