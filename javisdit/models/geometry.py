"""The sizes every part must agree on: frame rates, VAE strides, mel framing, and the conversions
between clip length, video latent frames, mel frames, audio latent frames and waveform samples.

One home for the constants the original hard-coded in several places.
"""

from __future__ import annotations

import math

FPS = 24  # frames per second of the training data and of generated videos

# Video VAE (Open-Sora 1.2): frames are encoded in chunks of 17, each chunk to 5 latent frames
# (front-padded to a multiple of 4, then /4); 8x spatial compression, 4 latent channels.
VIDEO_CHUNK_FRAMES = 17
VIDEO_TIME_STRIDE = 4
VIDEO_CHUNK_LATENTS = -(-VIDEO_CHUNK_FRAMES // VIDEO_TIME_STRIDE)  # 5
VIDEO_SPATIAL_STRIDE = 8
VIDEO_LATENT_CHANNELS = 4

# Audio (AudioLDM2): 16 kHz mono, 64-bin log-mel with a 10 ms hop; the VAE compresses time and mel by
# 4 into 8 channels; mel lengths are padded to a multiple of 32 frames (the original's fix for an
# audible pulse at the end).
SAMPLE_RATE = 16000
MEL_HOP = 160
MEL_BINS = 64
AUDIO_VAE_STRIDE = 4
AUDIO_LATENT_CHANNELS = 8
MEL_PAD_MULTIPLE = 32
AUDIO_LATENT_SECONDS = MEL_HOP * AUDIO_VAE_STRIDE / SAMPLE_RATE  # 40 ms per audio latent frame


def video_chunk_latents(time_stride: int = VIDEO_TIME_STRIDE) -> int:
    """Latent frames of a full chunk of 17 frames: 5 at the v1.2 stride of 4 (9 at 2, 17 at 1)."""
    return -(-VIDEO_CHUNK_FRAMES // time_stride)


def video_latent_frames(num_frames: int, time_stride: int = VIDEO_TIME_STRIDE) -> int:
    """Latent frames of a clip: per full chunk of 17 frames ``video_chunk_latents``, ceil(rest / stride)
    for the rest (51 -> 15 at the v1.2 stride of 4; ``time_stride``: a temporal VAE of another stride)."""
    full, rest = divmod(num_frames, VIDEO_CHUNK_FRAMES)
    return video_chunk_latents(time_stride) * full + -(-rest // time_stride)


def video_latent_spans(num_frames: int, time_stride: int = VIDEO_TIME_STRIDE) -> list[tuple[int, int]]:
    """The pixel frames ``[first, last]`` (inclusive) that each latent frame of a ``num_frames`` clip encodes."""
    spans = []
    for start in range(0, num_frames, VIDEO_CHUNK_FRAMES):
        length = min(VIDEO_CHUNK_FRAMES, num_frames - start)
        spans.append((start, start))
        for first in range(1, length, time_stride):
            spans.append((start + first, start + min(first + time_stride, length) - 1))
    return spans


def video_latent_size(num_frames: int, height: int, width: int,
                      time_stride: int = VIDEO_TIME_STRIDE) -> tuple[int, int, int]:
    """(T', H', W') of a clip, e.g. (102, 240, 426) -> (30, 30, 53)."""
    return (video_latent_frames(num_frames, time_stride), height // VIDEO_SPATIAL_STRIDE,
            width // VIDEO_SPATIAL_STRIDE)


def mel_frames(seconds: float) -> int:
    """Mel frames of an audio clip: one per full 10 ms, rounded up to a multiple of 32
    (4.25 s -> 425 -> 448; 2.125 s -> 212 -> 224). The epsilon keeps exact frame counts from falling
    one short through float error (0.29 s is 29 frames, not 28)."""
    frames = math.floor(seconds * SAMPLE_RATE / MEL_HOP + 1e-6)
    return math.ceil(frames / MEL_PAD_MULTIPLE) * MEL_PAD_MULTIPLE


def audio_latent_size(seconds: float) -> tuple[int, int, int]:
    """(channels, time, mel) of the audio latent, e.g. 4.25 s -> (8, 112, 16)."""
    return AUDIO_LATENT_CHANNELS, mel_frames(seconds) // AUDIO_VAE_STRIDE, MEL_BINS // AUDIO_VAE_STRIDE


def audio_samples(seconds: float) -> int:
    """Waveform samples of a clip at 16 kHz, e.g. 4.25 s -> 68000."""
    return int(seconds * SAMPLE_RATE)


def audio_latents_per_video_latent(fps: float = FPS) -> float:
    """Audio latent frames spanned by one video latent frame (about 3.54 at 24 fps)."""
    video_latent_seconds = VIDEO_CHUNK_FRAMES / VIDEO_CHUNK_LATENTS / fps
    return video_latent_seconds / AUDIO_LATENT_SECONDS
