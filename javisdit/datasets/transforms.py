"""Frame transforms: resize so the frame covers the bucket's size (bilinear, no antialias), centre crop,
normalise to [-1, 1] (the original's ``resize_crop``)."""

from __future__ import annotations

import torch
import torch.nn.functional as F

TRANSFORMS = ("resize_crop",)
AUDIO_TRANSFORMS = ("mel_spec_audioldm2",)


def resize_crop(frames: torch.Tensor, height: int, width: int) -> torch.Tensor:
    """uint8 [T, H, W, 3] -> float [3, T, height, width] in [-1, 1]."""
    x = frames.permute(0, 3, 1, 2).float() / 255.0  # [T, 3, H, W]
    h, w = x.shape[-2:]
    if height / h > width / w:
        size = (height, round(w * height / h))
    else:
        size = (round(h * width / w), width)
    if size != (h, w):  # already the right size: nothing to interpolate
        x = F.interpolate(x, size=size, mode="bilinear", align_corners=False)
    top, left = int((size[0] - height) / 2), int((size[1] - width) / 2)
    x = x[:, :, top : top + height, left : left + width]
    return ((x - 0.5) / 0.5).permute(1, 0, 2, 3).contiguous()
