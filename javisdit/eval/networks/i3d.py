"""Inception-v1 I3D (Kinetics-400): the feature network of FVD and KVD (``EVAL.md`` §1.3 "FVD / KVD / FAD").

The architecture is ``EVAL_MODELS.md`` §1.1: units of Conv3d + BatchNorm (eps 1e-5) + ReLU with TF "SAME"
padding computed from the input size at run time, max pools as zero padding plus a valid pool, nine
Inception blocks, then a (2,7,7) average pool and a 1x1x1 ``logits`` conv with bias. The FVD/KVD feature
is the 400 pre-softmax logits averaged over the remaining time steps, ceil(T/8) - 1 of them, so a clip
needs at least 9 frames.

The published file ``i3d_pretrained_400.pt`` (a conversion of TF-Hub ``i3d-kinetics-400/1``) is a flat
state dict of 287 tensors without ``num_batches_tracked`` (§0 notes). The BatchNorm here keeps no such
counter, so the module's ``state_dict()`` is exactly the file layout (manifest ``eval_i3d_400.tsv``, in
its order) and the load is strict. The input pipeline (frame choice, letterbox, the uint8 quirk) lives in
``javisdit.eval.networks.i3d_inputs``.

Shape legend: B clips, C channels, T frames, H x W pixels; the network takes [B, 3, T, H, W].
"""

from __future__ import annotations

import logging
import math
import os
from collections import OrderedDict
from collections.abc import Mapping, Sequence
from pathlib import Path

import torch
import torch.nn.functional as F
from torch import nn

from javisdit.errors import WeightsMismatchError
from javisdit.eval.checkpoints import DEFAULT_CHECKPOINT_DIR, SOURCES, find_checkpoint
from javisdit.eval.networks import pick_preset
from javisdit.eval.networks.i3d_inputs import fvd_frame_indices, i3d_input, letterbox
from javisdit.models.loading import load_state_dict_checked

logger = logging.getLogger(__name__)

__all__ = [  # the input pipeline lives in i3d_inputs; re-exported so that one import serves the runner
    "MIN_FRAMES", "PRESETS", "InceptionI3d", "build_i3d", "fvd_frame_indices", "i3d_features", "i3d_input",
    "letterbox", "load_i3d", "same_padding", "write_random_i3d",
]

MIN_FRAMES = 9  # the (2,7,7) average pool needs two time steps after the /8 of the trunk

Triple = tuple[int, int, int]


# --------------------------------------------------------------------------------------------- helpers


def same_padding(size: int, kernel: int, stride: int) -> tuple[int, int]:
    """TF "SAME" padding of one axis: (front, back), the odd pixel at the back.

    The output then has ceil(size / stride) steps whatever the kernel.
    """
    pad = max(kernel - stride, 0) if size % stride == 0 else max(kernel - size % stride, 0)
    return pad // 2, pad - pad // 2


def pad_same(x: torch.Tensor, kernel: Sequence[int], stride: Sequence[int]) -> torch.Tensor:
    """Zero-pad [B, C, T, H, W] for a SAME conv or pool with the given (t, h, w) kernel and stride."""
    pads: list[int] = []
    for size, k, r in reversed(list(zip(x.shape[2:], kernel, stride))):  # F.pad wants the last axis first
        pads.extend(same_padding(size, k, r))
    return F.pad(x, pads)


# ---------------------------------------------------------------------------------------------- layers


class BatchNorm(nn.Module):
    """BatchNorm over the channels of [B, C, T, H, W] with the keys weight, bias, running_mean and
    running_var, and no ``num_batches_tracked``: the published file has none, and with a fixed momentum
    the counter would never be read."""

    def __init__(self, channels: int, eps: float = 1e-5, momentum: float = 0.001) -> None:
        super().__init__()
        self.eps, self.momentum = eps, momentum
        self.weight = nn.Parameter(torch.ones(channels))  # all ones in the file: TF's I3D BN has no scale
        self.bias = nn.Parameter(torch.zeros(channels))
        self.register_buffer("running_mean", torch.zeros(channels))
        self.register_buffer("running_var", torch.ones(channels))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return F.batch_norm(x, self.running_mean, self.running_var, self.weight, self.bias, self.training,
                            self.momentum, self.eps)


class Unit3d(nn.Module):
    """SAME-padded Conv3d, then BatchNorm and ReLU (or, for ``logits``, a conv with bias and nothing after)."""

    def __init__(self, in_channels: int, out_channels: int, kernel: Triple = (1, 1, 1), stride: Triple = (1, 1, 1),
                 norm_act: bool = True) -> None:
        super().__init__()
        self.kernel, self.stride, self.norm_act = kernel, stride, norm_act
        self.conv3d = nn.Conv3d(in_channels, out_channels, kernel, stride, bias=not norm_act)
        if norm_act:
            self.bn = BatchNorm(out_channels)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.conv3d(pad_same(x, self.kernel, self.stride))
        return F.relu(self.bn(x)) if self.norm_act else x


class MaxPool3dSame(nn.Module):
    """Max pool with SAME zero padding (harmless: its inputs come out of a ReLU, so they are >= 0)."""

    def __init__(self, kernel: Triple, stride: Triple) -> None:
        super().__init__()
        self.kernel, self.stride = kernel, stride

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return F.max_pool3d(pad_same(x, self.kernel, self.stride), self.kernel, self.stride)


# ----------------------------------------------------------------------------------------------- block


class InceptionBlock(nn.Module):
    """Four branches concatenated on the channels: 1x1x1 | 1x1x1 -> 3x3x3 | 1x1x1 -> 3x3x3 | pool -> 1x1x1.

    ``channels`` is [b0, b1a, b1b, b2a, b2b, b3b]; the output has b0 + b1b + b2b + b3b channels.
    """

    def __init__(self, in_channels: int, channels: Sequence[int]) -> None:
        super().__init__()
        b0, b1a, b1b, b2a, b2b, b3b = channels
        self.b0 = Unit3d(in_channels, b0)
        self.b1a = Unit3d(in_channels, b1a)
        self.b1b = Unit3d(b1a, b1b, (3, 3, 3))
        self.b2a = Unit3d(in_channels, b2a)
        self.b2b = Unit3d(b2a, b2b, (3, 3, 3))
        self.b3a = MaxPool3dSame((3, 3, 3), (1, 1, 1))
        self.b3b = Unit3d(in_channels, b3b)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        branches = (self.b0(x), self.b1b(self.b1a(x)), self.b2b(self.b2a(x)), self.b3b(self.b3a(x)))
        return torch.cat(branches, dim=1)


# ----------------------------------------------------------------------------------------------- model

# The trunk in order (§1.1): ("unit", out, kernel, stride) | ("pool", kernel, stride) | ("mixed", [b0..b3b]).
_TRUNK: tuple[tuple[str, tuple], ...] = (
    ("Conv3d_1a_7x7", ("unit", 64, (7, 7, 7), (2, 2, 2))),
    ("MaxPool3d_2a_3x3", ("pool", (1, 3, 3), (1, 2, 2))),
    ("Conv3d_2b_1x1", ("unit", 64, (1, 1, 1), (1, 1, 1))),
    ("Conv3d_2c_3x3", ("unit", 192, (3, 3, 3), (1, 1, 1))),
    ("MaxPool3d_3a_3x3", ("pool", (1, 3, 3), (1, 2, 2))),
    ("Mixed_3b", ("mixed", (64, 96, 128, 16, 32, 32))),
    ("Mixed_3c", ("mixed", (128, 128, 192, 32, 96, 64))),
    ("MaxPool3d_4a_3x3", ("pool", (3, 3, 3), (2, 2, 2))),
    ("Mixed_4b", ("mixed", (192, 96, 208, 16, 48, 64))),
    ("Mixed_4c", ("mixed", (160, 112, 224, 24, 64, 64))),
    ("Mixed_4d", ("mixed", (128, 128, 256, 24, 64, 64))),
    ("Mixed_4e", ("mixed", (112, 144, 288, 32, 64, 64))),
    ("Mixed_4f", ("mixed", (256, 160, 320, 32, 128, 128))),
    ("MaxPool3d_5a_2x2", ("pool", (2, 2, 2), (2, 2, 2))),
    ("Mixed_5b", ("mixed", (256, 160, 320, 32, 128, 128))),
    ("Mixed_5c", ("mixed", (384, 192, 384, 48, 128, 128))),
)


class InceptionI3d(nn.Module):
    """I3D from RGB clips to class logits averaged over time.

    Args:
        num_classes: logits (and feature) width, 400 for Kinetics-400.
        width_divisor: every channel width of the trunk is divided by it (1 = the published net).
        image_size: the input's height and width; the trunk divides it by 32 and the head's average pool
            covers what is left: (2, 7, 7) for the published 224.
        in_channels: 3 (RGB).
    """

    def __init__(self, num_classes: int = 400, width_divisor: int = 1, image_size: int = 224,
                 in_channels: int = 3) -> None:
        super().__init__()
        self.image_size = image_size
        cells = math.ceil(image_size / 32)
        # Registered before the trunk, as upstream does, so that state_dict() starts with logits.* like the manifest.
        self.logits = Unit3d(1024 // width_divisor, num_classes, norm_act=False)
        channels = in_channels
        for name, (kind, *args) in _TRUNK:
            if kind == "unit":
                out, kernel, stride = args
                layer: nn.Module = Unit3d(channels, out // width_divisor, kernel, stride)
                channels = out // width_divisor
            elif kind == "pool":
                layer = MaxPool3dSame(*args)
            else:
                widths = [c // width_divisor for c in args[0]]
                layer = InceptionBlock(channels, widths)
                channels = widths[0] + widths[2] + widths[4] + widths[5]
            self.add_module(name, layer)
        self.avg_pool = nn.AvgPool3d((2, cells, cells), stride=1)
        self.dropout = nn.Dropout(0.5)
        for module in self.modules():
            if isinstance(module, Unit3d) and module.norm_act:  # keeps activations O(1) through the random net
                nn.init.kaiming_normal_(module.conv3d.weight, nonlinearity="relu")

    def forward(self, video: torch.Tensor) -> torch.Tensor:
        """[B, 3, T, S, S] (T >= 9, S = ``image_size``) -> logits [B, num_classes]."""
        if video.shape[2] < MIN_FRAMES:
            raise ValueError(f"I3D needs at least {MIN_FRAMES} frames per clip, got {video.shape[2]}")
        x = video
        for name, _ in _TRUNK:
            x = getattr(self, name)(x)  # ends at [B, 1024, ceil(T/8), H/32, W/32]
        x = self.logits(self.dropout(self.avg_pool(x)))  # [B, classes, ceil(T/8) - 1, 1, 1]
        return x.squeeze(4).squeeze(3).mean(dim=2)


# --------------------------------------------------------------------------------------------- presets

PRESETS: dict[str, dict] = {
    "full": dict(num_classes=400, width_divisor=1, image_size=224),
    # Same keys, widths / 8, 400 logits, 32x32 frames: for CPU tests (a 16-frame clip in well under 0.1 s).
    "tiny": dict(num_classes=400, width_divisor=8, image_size=32),
}


def _preset(size: str) -> dict:
    return pick_preset(PRESETS, size, "I3D")


def build_i3d(size: str = "full") -> InceptionI3d:
    """A randomly initialised I3D of preset ``size`` in eval mode, float32."""
    return InceptionI3d(**_preset(size)).eval()


def load_i3d(checkpoint_dir: str | os.PathLike = DEFAULT_CHECKPOINT_DIR, size: str = "full",
             device: torch.device | str = "cpu") -> InceptionI3d:
    """I3D with the weights of ``i3d_pretrained_400.pt`` in ``checkpoint_dir``, in eval mode.

    The file is a flat state dict (no wrapper, no prefix), loaded strictly. ``num_batches_tracked`` keys, which
    a file saved from a stock-BatchNorm module would carry, hold nothing the forward uses and are dropped.

    Raises:
        MissingWeightsError: the file is not there (the message names it and where to download it).
        WeightsMismatchError: it is not a flat state dict, or keys are missing, unexpected or mis-shaped.
    """
    path = find_checkpoint("i3d", checkpoint_dir)
    try:
        state = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as error:  # a pickle that is not plain tensors, or not a torch file at all
        first_line = str(error).strip().splitlines()[0] if str(error).strip() else type(error).__name__
        raise WeightsMismatchError(f"{path} cannot be read as a weights-only state dict: {first_line}") from error
    if not isinstance(state, Mapping) or not all(isinstance(v, torch.Tensor) for v in state.values()):
        raise WeightsMismatchError(f"{path} is not a flat state dict of tensors (the published I3D layout)")
    state = {k: v for k, v in state.items() if not k.endswith(".num_batches_tracked")}
    with torch.device("meta"):
        model = InceptionI3d(**_preset(size))
    load_state_dict_checked(model, state, source=str(path), device=device)
    return model.eval()


def write_random_i3d(checkpoint_dir: str | os.PathLike, size: str = "tiny", seed: int = 0) -> Path:
    """Write a random I3D of preset ``size`` as ``checkpoint_dir/i3d_pretrained_400.pt`` in the published
    layout (a flat state dict of float32 tensors saved with ``torch.save``); returns the path.

    BatchNorm biases and running statistics are random too, so that a load that missed them would show.
    """
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        model = build_i3d(size)
        with torch.no_grad():
            for module in model.modules():
                if isinstance(module, BatchNorm):
                    module.bias.normal_(0.0, 0.1)
                    module.running_mean.normal_(0.0, 0.1)
                    module.running_var.uniform_(0.5, 1.5)
    state = OrderedDict((key, tensor.detach().clone()) for key, tensor in model.state_dict().items())
    path = Path(checkpoint_dir) / SOURCES["i3d"].name
    path.parent.mkdir(parents=True, exist_ok=True)
    torch.save(state, path)
    return path


@torch.no_grad()
def i3d_features(model: nn.Module, batch: torch.Tensor) -> torch.Tensor:
    """FVD/KVD features of a batch of prepared clips.

    Args:
        model: an I3D (``load_i3d``) in eval mode.
        batch: [B, 3, T, S, S] from ``i3d_inputs.i3d_input`` stacked, T >= 9.

    Returns:
        [B, 400] float32 logits averaged over time, on the model's device.
    """
    device = next(model.parameters()).device
    return model(batch.to(device=device, dtype=torch.float32)).float()
