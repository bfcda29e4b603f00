"""The I3D input of FVD and KVD, exactly as JavisBench builds it (``EVAL_MODELS.md`` §1.2, golden values §1.3).

Per video: ``max_frames`` frames spread evenly over the whole clip (``fvd_frame_indices``), each letterboxed to
224x224 in [0, 1] (``letterbox``), then ``i3d_input`` makes the network input. In ``"faithful"`` mode it keeps
the upstream pixel-range bug (``EVAL.md`` §1.4 pitfall 1): the dataset maps the already-[0, 1] frames with
``(x + 1) * 127.5`` to uint8, so after I3D's own ``/255, -0.5, *2`` the network sees ~[0, 1] and black padding
becomes 127/127.5 - 1. The ground-truth feature cache and the published FVD/KVD were made this way.
``"corrected"`` mode feeds the intended [-1, 1]. The frame count (16 or 24) is pitfall 4 and is the caller's.

Shape legend: T frames, H x W source pixels, S the square side (224).
"""

from __future__ import annotations

import numpy as np
import torch
import torchvision.transforms.functional as TF

MODES = ("faithful", "corrected")


def fvd_frame_indices(num_frames: int, max_frames: int) -> list[int]:
    """Indices of the ``max_frames`` frames read from a video of ``num_frames``.

    A float32 ``torch.linspace(0, num_frames - 1, max_frames)`` rounded half to even, as upstream does; e.g.
    96 frames, 16 wanted -> 0 6 13 19 ... 89 95. Indices repeat when the video has fewer frames than wanted.
    """
    if num_frames < 1 or max_frames < 1:
        raise ValueError(f"need at least one frame to read and one to keep, got {num_frames} and {max_frames}")
    positions = torch.linspace(0, num_frames - 1, max_frames, dtype=torch.float32)
    return [int(i) for i in torch.round(positions).tolist()]


def letterbox(frame: np.ndarray, size: int = 224) -> torch.Tensor:
    """One RGB frame, resized so its long side is ``size`` and padded with black to a centred square.

    The short side becomes int(size * short / long) (truncated); the resize is torchvision's bilinear
    ``Resize`` with antialiasing on the [0, 1] float tensor; the odd padding pixel goes right / bottom.

    Args:
        frame: [H, W, 3] uint8 RGB.

    Returns:
        [3, size, size] float32 in [0, 1], padding 0.
    """
    if frame.ndim != 3 or frame.shape[2] != 3 or frame.dtype != np.uint8:
        raise ValueError(f"letterbox expects an [H, W, 3] uint8 RGB frame, got {frame.dtype} {tuple(frame.shape)}")
    image = torch.from_numpy(np.ascontiguousarray(frame)).permute(2, 0, 1).float().div(255)  # ToTensor: [3, H, W]
    height, width = image.shape[1:]
    if height >= width:
        new_height, new_width = size, int(size * width / height)
    else:
        new_height, new_width = int(size * height / width), size
    image = TF.resize(image, [new_height, new_width], interpolation=TF.InterpolationMode.BILINEAR, antialias=True)
    top, left = (size - new_height) // 2, (size - new_width) // 2
    out = torch.zeros(3, size, size, dtype=image.dtype)
    out[:, top:top + new_height, left:left + new_width] = image
    return out


def i3d_input(frames: np.ndarray, image_size: int = 224, mode: str = "faithful") -> torch.Tensor:
    """The network input of one clip.

    Args:
        frames: [T, H, W, 3] uint8 RGB, the frames already chosen (``fvd_frame_indices``).
        image_size: the letterbox side S; 224 for the published net (``model.image_size``).
        mode: ``"faithful"``: letterbox, then uint8(clamp((x + 1) * 127.5, 0, 255)) (values in [127, 255]),
            then I3D's preprocessing (x / 255 - 0.5) * 2, so ~[0, 1] with padding -1/255. Upstream also
            resizes the short side to 224 and centre-crops 224 here, both identities on a 224 letterbox,
            so they are left out. ``"corrected"``: the letterboxed [0, 1] frames mapped to [-1, 1], padding -1.

    Returns:
        [3, T, S, S] float32; stack clips to [B, 3, T, S, S] for ``i3d_features``.
    """
    if mode not in MODES:
        raise ValueError(f"unknown I3D input mode {mode!r}; valid: {', '.join(MODES)}")
    if frames.ndim != 4 or frames.shape[3] != 3:
        raise ValueError(f"i3d_input expects [T, H, W, 3] RGB frames, got shape {tuple(frames.shape)}")
    clip = torch.stack([letterbox(frame, image_size) for frame in frames])  # [T, 3, S, S] in [0, 1]
    if mode == "faithful":
        quantised = ((clip + 1) * 127.5).clamp(0, 255).to(torch.uint8)  # the cast truncates
        clip = (quantised.float() / 255 - 0.5) * 2
    else:
        clip = clip * 2 - 1
    return clip.permute(1, 0, 2, 3).contiguous()  # [3, T, S, S]
