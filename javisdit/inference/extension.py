"""Extension (``--loop N``): a clip continued segment by segment, each segment conditioned on the last
latent frames of the one before and the sound under them, as stage 3's ``quarter_head`` task trained,
and the segments joined into one clip without repeating or dropping a frame at the seams.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
import torch.nn.functional as F

from javisdit.errors import UserError
from javisdit.inference.conditioning import Condition, FrameMasks, build_condition, keep_ranges, mode_masks
from javisdit.inference.references import Reference
from javisdit.models import geometry


def extension_overlap(num_frames: int, time_stride: int = geometry.VIDEO_TIME_STRIDE) -> tuple[int, int]:
    """(latent frames, pixel frames) a segment keeps from the end of the one before: the longest head
    stage 3 trained (``quarter_head``: up to a quarter of the latent frames), as whole latent frames."""
    spans = geometry.video_latent_spans(num_frames, time_stride)
    n = max(1, len(spans) // 4)
    if len(spans) < 2:
        raise UserError(f"extension needs at least 2 latent video frames; {num_frames} frames give {len(spans)}")
    return n, spans[n - 1][1] + 1


def extension_length(num_frames: int, loop: int, time_stride: int = geometry.VIDEO_TIME_STRIDE,
                     fps: float = geometry.FPS) -> tuple[int, int]:
    """(frames, audio samples) of ``loop`` segments of ``num_frames``: every segment after the first adds
    what follows its overlap with the one before."""
    _, overlap = extension_overlap(num_frames, time_stride)
    samples = geometry.audio_samples(num_frames / fps)
    skip = round(overlap / fps * geometry.SAMPLE_RATE)
    return num_frames + (loop - 1) * (num_frames - overlap), samples + (loop - 1) * (samples - skip)


def generate_extended(gen, texts: Sequence[str], clip: tuple[int, int, int], fps: int, dtype: torch.dtype,
                      generators: Sequence[torch.Generator], loop: int, first: Condition | None = None,
                      device=None, progress: bool = False, timings: dict | None = None):
    """``loop`` segments, each after the first conditioned on the last frames (``extension_overlap``) of
    the one before and the sound under them, joined into one clip: (video [B, 3, T_total, H, W], audio
    [B, S_total]). ``first`` conditions the first segment (e.g. a reference video); the generators
    carry on from segment to segment."""
    from javisdit.inference.pipeline import generate  # the pipeline runs extensions: imported when used

    if gen.vae is None:
        raise UserError("extension (--loop) needs a video model; this config is audio-only")
    T = clip[0]
    stride = gen.vae.time_stride
    n, overlap = extension_overlap(T, stride)
    ta = gen.audio_vae.latent_size(T / fps)[1]
    samples = geometry.audio_samples(T / fps)
    skip = round(overlap / fps * geometry.SAMPLE_RATE)
    # video: the head latents, as quarter_head trained; audio: the overlap's own seconds (the nearest
    # mapping of training would also keep latent frames of the mel padding, which no segment holds)
    masks = FrameMasks(mode_masks("extend", len(geometry.video_latent_spans(T, stride)), ta, n).video,
                       keep_ranges(T, fps, ta, audio=[(0.0, overlap / fps)], time_stride=stride).audio)
    kwargs = dict(device=device, progress=progress, timings=timings)
    video, audio = generate(gen, list(texts), clip, fps, dtype, generators, condition=first, **kwargs)
    videos, audios = [video], [audio]
    device = video.device if device is None else device
    for _ in range(loop - 1):
        tail_video = video[:, :, -overlap:].clamp(-1, 1)
        tail_video = torch.cat([tail_video, tail_video[:, :, -1:].expand(-1, -1, T - overlap, -1, -1)], dim=2)
        tail_audio = F.pad(audio[:, samples - skip:samples], (0, samples - skip))
        refs = [Reference(tail_video[i], tail_audio[i].float(), overlap / fps, skip / geometry.SAMPLE_RATE)
                for i in range(len(texts))]
        condition = build_condition(gen, refs, masks, clip, fps, dtype, device,
                                    [f"segment tail {i}" for i in range(len(texts))])
        video, audio = generate(gen, list(texts), clip, fps, dtype, generators, condition=condition, **kwargs)
        videos.append(video[:, :, overlap:])
        audios.append(audio[:, skip:samples])
    return torch.cat(videos, dim=2), torch.cat(audios, dim=1)
