"""ImageBind's input pipeline as JavisBench feeds it: TV-IB / TA-IB / AV-IB, AVHScore and JavisScore
(``EVAL_MODELS.md`` §3.2, golden values §3.3; ``EVAL.md`` §0 errata 3 and 4, §1.3).

* **Audio** (``audio_inputs``): three 2-s clips placed by pytorchvideo's pinned constant-clips sampler, each
  centred, turned into a Kaldi fbank (128 mels, 25/10 ms, our own torch implementation of
  ``torchaudio.compliance.kaldi.fbank`` with ImageBind's options), zero-padded or cut to 204 frames and
  normalised as (x + 4.268) / 9.138.

  Upstream centres each clip *in place* on a view of the loaded waveform, so a clip that overlaps an
  earlier one sees the step that the earlier centring left (errata 4). ``mode="faithful"`` reproduces that
  on a private copy of the caller's waveform; ``mode="corrected"`` centres each clip on a copy.
* **JavisScore windows** (``javis_windows``, ``window_audio_inputs``): 2-s windows 0.5 s apart in frames and
  samples, stride floor(W·fps) - floor(overlap·fps) (errata 3), the last window clamped to the end, as
  many pairs as the shorter list; in faithful mode all windows are views of one shared buffer, centred in
  place in order.
* **Video** (``video_views``): five 2-s clips, first and last frame of each, /255, short side to 224
  (bilinear, no antialias), CLIP normalisation, three 224 crops: 15 views (3, 2, 224, 224).
* **Frames as images** (``frame_images``, AVHScore and JavisScore): every frame through PIL bicubic resize
  (short side 224), torchvision centre crop, CLIP normalisation.

Shape legend: C audio channels, N samples (16 kHz) or frames, F fbank frames, M mel bins (128),
T frames per clip (2), H x W pixels.
"""

from __future__ import annotations

import math
from fractions import Fraction
from functools import lru_cache

import numpy as np
import torch
import torch.nn.functional as F

__all__ = [
    "CLIP_MEAN", "CLIP_STD", "FBANK_FRAMES", "FBANK_MEAN", "FBANK_STD", "NUM_MEL_BINS", "SAMPLE_RATE",
    "audio_clip_spans", "audio_inputs", "audio_inputs_", "clip_times", "fbank_input", "frame_images",
    "javis_windows", "kaldi_fbank", "short_side_scale", "spatial_crops", "video_clip_indices", "video_views",
    "window_audio_inputs", "window_audio_inputs_",
]

SAMPLE_RATE = 16000
NUM_MEL_BINS = 128
FBANK_FRAMES = 204
FBANK_MEAN, FBANK_STD = -4.268, 9.138
CLIP_MEAN = (0.48145466, 0.4578275, 0.40821073)
CLIP_STD = (0.26862954, 0.26130258, 0.27577711)
IMAGE_SIZE = 224
MODES = ("faithful", "corrected")


def _check_mode(mode: str) -> bool:
    """True for faithful (in place), False for corrected."""
    if mode not in MODES:
        raise ValueError(f"unknown mode {mode!r}; valid: {', '.join(MODES)}")
    return mode == "faithful"


# ----------------------------------------------------------------------------------------- clip sampling


def clip_times(duration: float, clip_s: float = 2.0, num_clips: int = 3) -> list[tuple[Fraction, Fraction]]:
    """(start, end) seconds of pytorchvideo's ``ConstantClipsPerVideoSampler`` at the pinned commit 28fe037.

    Starts are k·max(D - clip, 0)/(num_clips - 1), exact Fractions of the float duration; the last clip
    ends at D. (PyPI 0.1.5 divides by num_clips instead.) A clip may end past D when D < clip.
    """
    clip = Fraction(clip_s)
    step = Fraction(Fraction(max(duration - clip, 0)), max(num_clips - 1, 1))
    return [(step * k, step * k + clip) for k in range(num_clips)]


def audio_clip_spans(num_samples: int, sample_rate: int = SAMPLE_RATE, clip_s: float = 2.0,
                     num_clips: int = 3) -> list[tuple[int, int]]:
    """Sample slices [start, end) of the audio clips: int(start·sr), int(end·sr) of ``clip_times``.

    The nominal end may lie past ``num_samples``; slicing then gives a shorter clip, as upstream.
    """
    times = clip_times(num_samples / sample_rate, clip_s, num_clips)
    return [(int(start * sample_rate), int(end * sample_rate)) for start, end in times]


# ----------------------------------------------------------------------------------------- Kaldi fbank


def _mel(freq):
    """Kaldi's mel scale, 1127 ln(1 + f/700), of a float (double maths) or a tensor (its dtype)."""
    if isinstance(freq, torch.Tensor):
        return 1127.0 * (1.0 + freq / 700.0).log()
    return 1127.0 * math.log(1.0 + freq / 700.0)


@lru_cache(maxsize=4)
def _mel_banks(num_bins: int, padded_window: int, sample_rate: float, low_freq: float = 20.0) -> torch.Tensor:
    """Kaldi's triangular mel filters [num_bins, padded_window // 2 + 1] (last column, Nyquist, zero),
    computed in float32 as torchaudio does; high frequency = Nyquist, no VTLN."""
    num_fft_bins = padded_window // 2
    mel_low, mel_high = _mel(low_freq), _mel(0.5 * sample_rate)
    delta = (mel_high - mel_low) / (num_bins + 1)
    index = torch.arange(num_bins).unsqueeze(1)
    left = mel_low + index * delta
    center = mel_low + (index + 1.0) * delta
    right = mel_low + (index + 2.0) * delta
    mel = _mel(sample_rate / padded_window * torch.arange(num_fft_bins)).unsqueeze(0)  # [1, 256]
    up = (mel - left) / (center - left)
    down = (right - mel) / (right - center)
    banks = torch.clamp_min(torch.minimum(up, down), 0.0)
    return F.pad(banks, (0, 1))


def kaldi_fbank(wave: torch.Tensor, sample_rate: int = SAMPLE_RATE, num_mel_bins: int = NUM_MEL_BINS) -> torch.Tensor:
    """Kaldi log-mel filterbank with ImageBind's options.

    25 ms frames every 10 ms (snip_edges: only whole frames), dither 0, per-frame DC removal, pre-emphasis
    0.97 (the first sample against itself), symmetric Hann window, zero padding to a power of two (512),
    power spectrum, mel filters from 20 Hz to Nyquist (htk_compat, no energy term), natural log floored at
    FLT_EPSILON. With 128 bins at 16 kHz, mel channel 3 catches no FFT bin and stays at the floor.

    Args:
        wave: [N] float samples (no int16 scaling).

    Returns:
        [F, num_mel_bins] float32, F = 1 + (N - 400) // 160 at 16 kHz (0 when N < 400).
    """
    wave = wave.to(torch.float32)
    window = int(sample_rate * 0.025)
    shift = int(sample_rate * 0.010)
    padded = 1 << (window - 1).bit_length()
    if wave.shape[0] < window:
        return wave.new_empty(0, num_mel_bins)
    frames = wave.unfold(0, window, shift)  # [F, 400]
    frames = frames - frames.mean(dim=1, keepdim=True)
    previous = torch.cat([frames[:, :1], frames[:, :-1]], dim=1)
    frames = frames - 0.97 * previous
    frames = frames * torch.hann_window(window, periodic=False, dtype=torch.float32, device=wave.device)
    frames = F.pad(frames, (0, padded - window))  # [F, 512]
    power = torch.fft.rfft(frames).abs().pow(2.0)  # [F, 257]
    banks = _mel_banks(num_mel_bins, padded, float(sample_rate)).to(wave.device)
    mel = torch.mm(power, banks.T)  # [F, M]
    return torch.clamp_min(mel, torch.finfo(torch.float32).eps).log()


def fbank_input(clip: torch.Tensor, sample_rate: int = SAMPLE_RATE) -> torch.Tensor:
    """One (already centred) clip [C, n] -> the tower's input [1, 128, 204]: fbank of channel 0,
    transposed, zero-padded or cut to 204 frames, then normalised (padding becomes 0.467061)."""
    fbank = kaldi_fbank(clip[0], sample_rate).T  # [M, F]
    fbank = F.pad(fbank, (0, FBANK_FRAMES - fbank.shape[1])) if fbank.shape[1] < FBANK_FRAMES \
        else fbank[:, :FBANK_FRAMES]
    return ((fbank - FBANK_MEAN) / FBANK_STD).unsqueeze(0)


# ----------------------------------------------------------------------------------------- audio


def _as_channels(wave: torch.Tensor) -> torch.Tensor:
    """[N] or [C, N] -> [C, N] float32."""
    wave = torch.as_tensor(wave).to(torch.float32)
    return wave[None] if wave.ndim == 1 else wave


def audio_inputs_(buffer: torch.Tensor, mode: str = "faithful",
                  sample_rate: int = SAMPLE_RATE) -> tuple[torch.Tensor, list[float]]:
    """ImageBind's audio transform of ``buffer`` [C, N]; in faithful mode ``buffer`` itself is shifted.

    Faithful: each clip's mean (over channels and samples) is subtracted in place, clip by clip, on views
    of ``buffer``, so overlapping later clips see the earlier shifts. Corrected: on copies; ``buffer`` is
    left alone.

    Returns:
        inputs [3, 1, 128, 204] and the three means subtracted.
    """
    in_place = _check_mode(mode)
    inputs, means = [], []
    for start, end in audio_clip_spans(buffer.shape[-1], sample_rate):
        clip = buffer[:, start:end]
        mean = clip.mean()
        if in_place:
            clip -= mean
        else:
            clip = clip - mean
        means.append(float(mean))
        inputs.append(fbank_input(clip, sample_rate))
    return torch.stack(inputs), means


def audio_inputs(wave: torch.Tensor, mode: str = "faithful", sample_rate: int = SAMPLE_RATE) -> torch.Tensor:
    """[C, N] waveform at 16 kHz -> [3, 1, 128, 204]; the caller's tensor is never modified (faithful mode
    shifts a private copy, as upstream shifts the waveform it loaded for this one transform). A 1-D
    waveform counts as one channel."""
    wave = _as_channels(wave)
    return audio_inputs_(wave.clone() if _check_mode(mode) else wave, mode, sample_rate)[0]


def javis_windows(num_frames: int, fps: float, num_samples: int, sample_rate: int = SAMPLE_RATE,
                  window_s: float = 2.0, overlap_s: float = 1.5) -> tuple[list[tuple[int, int]], list[tuple[int, int]]]:
    """JavisScore's paired windows: video frame ranges and audio sample ranges, [start, end).

    Window int(W·rate), stride int(W·rate) - int(overlap·rate) (errata 3: not int((W - overlap)·rate)); a
    window that would run past the end is moved back to end there, and the list stops at the first window
    that reaches the end. Only the first min(#video, #audio) pairs are kept. When either stream is no
    longer than one window, the whole clip is one window of both.

    Examples: 96 frames at 24 fps and 4 s of audio give [0,48) [12,60) [24,72) [36,84) [48,96) and samples
    0, 8000, ..., 32000; 100 frames at 25 fps start at 0, 13, 26, 39, 50; 65 frames at 16 fps give six
    video windows (the last [33,65)), of which 4 s of audio (five windows) keeps [0,32) ... [32,64).
    """
    def windows(total: int, rate: float) -> list[tuple[int, int]]:
        size, hop = int(window_s * rate), int(window_s * rate) - int(overlap_s * rate)
        if size <= 0 or hop <= 0:
            raise ValueError(f"window {window_s} s / overlap {overlap_s} s give size {size}, stride {hop} at {rate}")
        out = []
        for start in range(0, total, hop):
            start = min(start, total - size)
            out.append((start, start + size))
            if start + size >= total:
                break
        return out

    if num_frames <= int(window_s * fps) or num_samples <= int(window_s * sample_rate):
        return [(0, num_frames)], [(0, num_samples)]
    video, audio = windows(num_frames, fps), windows(num_samples, sample_rate)
    count = min(len(video), len(audio))
    return video[:count], audio[:count]


def window_audio_inputs_(buffer: torch.Tensor, windows: list[tuple[int, int]], mode: str = "faithful",
                         sample_rate: int = SAMPLE_RATE) -> tuple[torch.Tensor, list[list[float]]]:
    """Each window ``buffer[:, start:end]`` through ``audio_inputs_``, in order; in faithful mode the windows
    are views of ``buffer``, so centring one shifts the overlapping part of the next ones.

    Returns:
        inputs [M, 3, 1, 128, 204] and, per window, the three means subtracted.
    """
    results = [audio_inputs_(buffer[:, start:end], mode, sample_rate) for start, end in windows]
    return torch.stack([inputs for inputs, _ in results]), [means for _, means in results]


def window_audio_inputs(wave: torch.Tensor, windows: list[tuple[int, int]], mode: str = "faithful",
                        sample_rate: int = SAMPLE_RATE) -> torch.Tensor:
    """[C, N] waveform at 16 kHz and ``javis_windows``' audio ranges -> [M, 3, 1, 128, 204]; the caller's
    tensor is never modified (faithful mode shifts one private copy shared by all windows). A 1-D
    waveform counts as one channel."""
    wave = _as_channels(wave)
    return window_audio_inputs_(wave.clone() if _check_mode(mode) else wave, windows, mode, sample_rate)[0]


# ----------------------------------------------------------------------------------------- video


def video_clip_indices(num_frames: int, fps: float, clip_s: float = 2.0, num_clips: int = 5) -> list[range]:
    """Decoded frame indices of each clip, as pytorchvideo's decord reader takes them: duration =
    frames / fps, ``clip_times``, then ceil(fps·start) .. ceil(fps·end) (end exclusive, capped)."""
    times = clip_times(num_frames / fps, clip_s, num_clips)
    return [range(math.ceil(fps * float(start)), min(math.ceil(fps * float(end)), num_frames)) for start, end in times]


def short_side_scale(x: torch.Tensor, size: int = IMAGE_SIZE) -> torch.Tensor:
    """[C, T, H, W] float -> short side ``size``, long side floor(long/short·size); bilinear, align_corners
    False, no antialias (pytorchvideo ``ShortSideScale``)."""
    h, w = x.shape[-2:]
    new = (int(math.floor(h / w * size)), size) if w < h else (size, int(math.floor(w / h * size)))
    return F.interpolate(x, size=new, mode="bilinear", align_corners=False)


def spatial_crops(x: torch.Tensor, size: int = IMAGE_SIZE) -> list[torch.Tensor]:
    """[C, T, H, W] -> three [C, T, size, size] crops along the long side (left/centre/right, or
    top/centre/bottom for portrait): offsets 0, ceil((L - size)/2) and L - size."""
    h, w = x.shape[-2:]
    y, x0 = math.ceil((h - size) / 2), math.ceil((w - size) / 2)
    if h > w:
        offsets = [(0, x0), (y, x0), (h - size, x0)]
    else:
        offsets = [(y, 0), (y, x0), (y, w - size)]
    return [x[..., top:top + size, left:left + size] for top, left in offsets]


def _normalize(x: torch.Tensor, channel_dim: int) -> torch.Tensor:
    shape = [1] * x.ndim
    shape[channel_dim] = 3
    mean = torch.tensor(CLIP_MEAN, dtype=x.dtype).view(shape)
    std = torch.tensor(CLIP_STD, dtype=x.dtype).view(shape)
    return (x - mean) / std


def video_views(frames: np.ndarray, fps: float) -> torch.Tensor:
    """ImageBind's video transform (TV-IB, AV-IB).

    Args:
        frames: [N, H, W, 3] uint8 RGB, every decoded frame.
        fps: the video's average frame rate.

    Returns:
        [15, 3, 2, 224, 224] float32: 5 clips x 3 crops, clip-major (clip 0 left/centre/right, clip 1, ...).
    """
    if len(frames) == 0:
        raise ValueError("video_views needs at least one frame")
    views = []
    for indices in video_clip_indices(len(frames), fps):
        chosen = [indices[0], indices[-1]]  # UniformTemporalSubsample(2): floor(linspace(0, n-1, 2))
        clip = torch.from_numpy(np.ascontiguousarray(frames[chosen])).permute(3, 0, 1, 2).float() / 255.0
        # clip [3, 2, H, W] -> [3, 2, 224, L] -> three [3, 2, 224, 224]
        clip = _normalize(short_side_scale(clip), channel_dim=0)
        views.extend(spatial_crops(clip))
    return torch.stack(views)


def frame_images(frames: np.ndarray) -> torch.Tensor:
    """Every frame as an ImageBind image (AVHScore, JavisScore): PIL bicubic resize of the short side to 224
    (long side int(224·long/short)), centre crop 224 with torchvision's rounding, [0, 1], CLIP normalisation.

    Args:
        frames: [N, H, W, 3] uint8 RGB.

    Returns:
        [N, 3, 224, 224] float32.
    """
    from PIL import Image
    from torchvision.transforms import InterpolationMode
    from torchvision.transforms import functional as TF

    images = []
    for frame in frames:
        image = TF.resize(Image.fromarray(np.ascontiguousarray(frame)), IMAGE_SIZE,
                          interpolation=InterpolationMode.BICUBIC)
        images.append(TF.to_tensor(TF.center_crop(image, IMAGE_SIZE)))
    return _normalize(torch.stack(images), channel_dim=1)
