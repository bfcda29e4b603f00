"""Diff-Foley's CAVP: the two encoders behind the CAVP score (``EVAL.md`` §1.3 "CAVP score").

The architecture is ``EVAL_MODELS.md`` §4.1:

* ``video_encoder``: mmaction's SlowOnly-R50 (``ResNet3dSlowOnly(depth=50)``). Each conv unit is mmcv's
  ``ConvModule`` (keys ``conv`` + ``bn``, ReLU ``activate`` with no weights); a (1,7,7) stem, a (1,3,3) max
  pool, then 3/4/6/3 bottlenecks with the stride on their (1,3,3) conv, the first conv (3,1,1) with
  temporal padding 1 in the last two stages. Temporal stride is 1: T frames in, T features out. ``pool2``
  is constructed and never applied, as upstream. The features are averaged over H x W and projected by
  ``video_project_head`` (Linear 2048 -> 512).
* ``spec_encoder``: a modified PANNs Cnn14. BatchNorm over the 128 mel bins, six conv blocks (their
  modules registered conv1, conv2, bn1, bn2, hence the key order) with average pools (2,2) x 4, (1,2),
  (1,1) over (time, mel), a mean over mel, ``max_pool1d + avg_pool1d`` (kernel 3, stride 1, padding 1, the
  average counting the padding), then ``relu(fc1(.))`` applied TWICE with the same ``fc1`` (a quirk
  of Diff-Foley's training code, kept) and ``final_project`` (2048 -> 512). ``spec_project_head`` is the
  identity.
* ``logit_scale``, ``video_pool`` and ``spec_pool`` (MaxPool1d(16)) exist for the checkpoint and are
  not used by the score.

Both encoders return one L2-normalised 512-d vector per time step: one per 4-fps frame for the video
(fed in independent chunks of 40 frames, ``VIDEO_CHUNK``, as upstream), one per 16 mel frames for the
audio (the four (2,2) pools). The inputs are made by ``javisdit.eval.cavp_inputs``.

The published ``cavp_epoch66.ckpt`` is a training checkpoint: ``{"epoch", "name", "state_dict",
"optimizer", ...}`` with ``module.``-prefixed keys (DDP). ``load_cavp`` takes ``state_dict`` when present,
removes every ``module.`` and loads strictly: the module's ``state_dict()`` is exactly the manifest
``eval_cavp.tsv`` (402 keys in its order, BatchNorm ``num_batches_tracked`` included). Upstream loads
non-strictly and only prints the difference; a missing key here is an error instead.

Shape legend: B clips, T frames (4 fps), C channels, H x W pixels, M mel bins, Tm mel frames, D = 512.
"""

from __future__ import annotations

import logging
import math
import os
import pickle
import zipfile
from collections.abc import Mapping, Sequence
from pathlib import Path

import torch
import torch.nn.functional as F
from torch import nn

from javisdit.errors import WeightsMismatchError
from javisdit.eval.checkpoints import DEFAULT_CHECKPOINT_DIR, SOURCES, find_checkpoint
from javisdit.eval.networks import pick_preset
from javisdit.models.loading import load_state_dict_checked

logger = logging.getLogger(__name__)

VIDEO_CHUNK = 40  # frames per video-encoder call; each chunk is its own sequence (zero temporal padding at its ends)
SPEC_STRIDE = 16  # mel frames per spectrogram feature
N_MELS = 128
EXPANSION = 4  # bottleneck output channels / planes

Triple = tuple[int, int, int]


# ------------------------------------------------------------------------------------- video: SlowOnly-R50


class ConvModule3d(nn.Module):
    """mmcv ``ConvModule``: Conv3d without bias, BatchNorm3d (eps 1e-5), optional ReLU."""

    def __init__(self, cin: int, cout: int, kernel: Triple, stride: Triple = (1, 1, 1),
                 padding: Triple = (0, 0, 0), act: bool = True):
        super().__init__()
        self.conv = nn.Conv3d(cin, cout, kernel, stride=stride, padding=padding, bias=False)
        self.bn = nn.BatchNorm3d(cout, eps=1e-5)
        self.activate = nn.ReLU(inplace=True) if act else None

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.bn(self.conv(x))
        return self.activate(x) if self.activate is not None else x


class Bottleneck3d(nn.Module):
    """mmaction ``Bottleneck3d``, "pytorch" style: the spatial stride sits on conv2; conv1 is (3,1,1) with
    temporal padding 1 when ``inflate``, else 1x1x1."""

    def __init__(self, inplanes: int, planes: int, stride: int, inflate: bool):
        super().__init__()
        self.conv1 = ConvModule3d(inplanes, planes, (3, 1, 1) if inflate else (1, 1, 1),
                                  padding=(1, 0, 0) if inflate else (0, 0, 0))
        self.conv2 = ConvModule3d(planes, planes, (1, 3, 3), stride=(1, stride, stride), padding=(0, 1, 1))
        self.conv3 = ConvModule3d(planes, planes * EXPANSION, (1, 1, 1), act=False)
        needs_downsample = stride != 1 or inplanes != planes * EXPANSION
        self.downsample = (ConvModule3d(inplanes, planes * EXPANSION, (1, 1, 1), stride=(1, stride, stride),
                                        act=False) if needs_downsample else None)
        self.relu = nn.ReLU(inplace=True)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        identity = x if self.downsample is None else self.downsample(x)
        return self.relu(self.conv3(self.conv2(self.conv1(x))) + identity)


class ResNet3dSlowOnly(nn.Module):
    """SlowOnly-R50 trunk: [B, 3, T, H, W] -> [B, 8 * base_channels * 4, T, H/32, W/32]."""

    def __init__(self, base_channels: int = 64, stage_blocks: Sequence[int] = (3, 4, 6, 3),
                 inflate: Sequence[bool] = (False, False, True, True)):
        super().__init__()
        self.conv1 = ConvModule3d(3, base_channels, (1, 7, 7), stride=(1, 2, 2), padding=(0, 3, 3))
        self.maxpool = nn.MaxPool3d((1, 3, 3), stride=(1, 2, 2), padding=(0, 1, 1))
        self.pool2 = nn.MaxPool3d((2, 1, 1), stride=(2, 1, 1))  # built as upstream, never applied (with_pool2=False)
        inplanes = base_channels
        self.stage_names = []
        for i, (blocks, inflated) in enumerate(zip(stage_blocks, inflate)):
            planes, stride = base_channels * 2**i, 1 if i == 0 else 2
            layer = [Bottleneck3d(inplanes, planes, stride, inflated)]
            layer += [Bottleneck3d(planes * EXPANSION, planes, 1, inflated) for _ in range(blocks - 1)]
            self.add_module(f"layer{i + 1}", nn.Sequential(*layer))
            self.stage_names.append(f"layer{i + 1}")
            inplanes = planes * EXPANSION
        self.out_channels = inplanes

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.maxpool(self.conv1(x))  # [B, C, T, H/4, W/4]
        for name in self.stage_names:
            x = getattr(self, name)(x)
        return x  # [B, 32 * base_channels, T, H/32, W/32]


# ---------------------------------------------------------------------------------- audio: modified Cnn14


class ConvBlock(nn.Module):
    """Two 3x3 conv + BN + ReLU, then an average pool; modules registered conv1, conv2, bn1, bn2."""

    def __init__(self, cin: int, cout: int, pool: tuple[int, int]):
        super().__init__()
        self.conv1 = nn.Conv2d(cin, cout, 3, padding=1, bias=False)
        self.conv2 = nn.Conv2d(cout, cout, 3, padding=1, bias=False)
        self.bn1 = nn.BatchNorm2d(cout)
        self.bn2 = nn.BatchNorm2d(cout)
        self.pool = pool

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = F.relu(self.bn1(self.conv1(x)))
        x = F.relu(self.bn2(self.conv2(x)))
        return F.avg_pool2d(x, kernel_size=self.pool)


CNN14_POOLS = ((2, 2), (2, 2), (2, 2), (2, 2), (1, 2), (1, 1))  # (time, mel) per block


class Cnn14(nn.Module):
    """Diff-Foley's Cnn14: [B, 1, Tm, M] -> [B, Tm/16, embed_dim]."""

    def __init__(self, channels: Sequence[int] = (64, 128, 256, 512, 1024, 2048), embed_dim: int = 512,
                 n_mels: int = N_MELS):
        super().__init__()
        self.bn = nn.BatchNorm2d(n_mels)
        cins = (1, *channels[:-1])
        for i, (cin, cout, pool) in enumerate(zip(cins, channels, CNN14_POOLS)):
            self.add_module(f"conv_block{i + 1}", ConvBlock(cin, cout, pool))
        self.fc1 = nn.Linear(channels[-1], channels[-1])
        self.final_project = nn.Linear(channels[-1], embed_dim)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.bn(x.transpose(1, 3)).transpose(1, 3)  # BatchNorm over the mel bins
        for i in range(len(CNN14_POOLS)):
            x = getattr(self, f"conv_block{i + 1}")(x)  # ends at [B, C, Tm/16, M/32]
        x = x.mean(dim=3)  # [B, C, Tm/16]
        x = F.max_pool1d(x, 3, stride=1, padding=1) + F.avg_pool1d(x, 3, stride=1, padding=1)
        x = x.transpose(1, 2)  # [B, Tm/16, C]
        x = F.relu(self.fc1(x))
        x = F.relu(self.fc1(x))  # the same fc1 again: upstream's quirk
        return self.final_project(x)  # [B, Tm/16, D]


# ----------------------------------------------------------------------------------------------- model


class CAVP(nn.Module):
    """``CAVP_Inference(video_encode='Slowonly_pool', spec_encode='cnn14_pool', embed_dim=512)``."""

    def __init__(self, base_channels: int = 64, stage_blocks: Sequence[int] = (3, 4, 6, 3),
                 spec_channels: Sequence[int] = (64, 128, 256, 512, 1024, 2048), embed_dim: int = 512):
        super().__init__()
        self.video_encoder = ResNet3dSlowOnly(base_channels, stage_blocks)
        self.video_project_head = nn.Linear(self.video_encoder.out_channels, embed_dim)
        self.video_pool = nn.MaxPool1d(kernel_size=SPEC_STRIDE)  # unused by the score
        self.spec_encoder = Cnn14(spec_channels, embed_dim)
        self.spec_project_head = nn.Identity()
        self.spec_pool = nn.MaxPool1d(kernel_size=SPEC_STRIDE)  # unused by the score
        self.logit_scale = nn.Parameter(torch.full((), math.log(1 / 0.07)))  # unused by the score

    def _encode_chunk(self, frames: torch.Tensor) -> torch.Tensor:
        x = self.video_encoder(frames.permute(0, 2, 1, 3, 4))  # [B, C, t, h, w]
        x = x.mean(dim=(3, 4)).transpose(1, 2)  # [B, t, C]
        return F.normalize(self.video_project_head(x), dim=-1)

    def encode_video(self, frames: torch.Tensor, chunk: int = VIDEO_CHUNK) -> torch.Tensor:
        """One unit vector per frame.

        Args:
            frames: [B, T, 3, H, W] in [0, 1], not normalised (224 x 224 from ``cavp_inputs.cavp_frames``).
            chunk: frames per encoder call. Upstream feeds 40 at a time, each chunk as its own sequence,
                so features near a chunk border see zero temporal padding, not the neighbouring chunk.

        Returns:
            [B, T, D] L2-normalised.
        """
        return torch.cat([self._encode_chunk(frames[:, i : i + chunk]) for i in range(0, frames.shape[1], chunk)], 1)

    def encode_spec(self, mel: torch.Tensor) -> torch.Tensor:
        """One unit vector per 16 mel frames.

        Args:
            mel: [B, M, Tm], M = 128, Tm a multiple of 16 (``cavp_inputs.cavp_mel``).

        Returns:
            [B, Tm / 16, D] L2-normalised.
        """
        x = self.spec_encoder(mel.unsqueeze(1).transpose(2, 3))  # in: [B, 1, Tm, M]
        return F.normalize(self.spec_project_head(x), dim=-1)


# --------------------------------------------------------------------------------------------- presets

PRESETS: dict[str, dict] = {
    "full": dict(base_channels=64, stage_blocks=(3, 4, 6, 3), spec_channels=(64, 128, 256, 512, 1024, 2048),
                 embed_dim=512),
    # The same key names (fewer bottlenecks: a subset of them), narrow channels: a 4 s clip at 224 x 224
    # (16 frames, a 128 x 256 mel) encodes on a CPU in a fraction of a second.
    "tiny": dict(base_channels=4, stage_blocks=(1, 1, 2, 1), spec_channels=(4, 8, 8, 16, 16, 32), embed_dim=16),
}


def _preset(size: str) -> dict:
    return pick_preset(PRESETS, size, "CAVP")


def build_cavp(size: str = "full") -> CAVP:
    """A randomly initialised CAVP of preset ``size`` in eval mode, float32."""
    return CAVP(**_preset(size)).eval()


def _load_failure(error: Exception) -> str:
    """The one line of a ``torch.load`` failure that says what went wrong."""
    text = str(error)
    if isinstance(error, pickle.UnpicklingError) and "WeightsUnpickler error:" in text:
        text = text.split("WeightsUnpickler error:", 1)[1].split(" Please", 1)[0]
    lines = [line.strip() for line in text.splitlines() if line.strip()]
    return lines[0] if lines else "corrupt or not a torch file"


def read_cavp_state_dict(path: str | os.PathLike) -> dict[str, torch.Tensor]:
    """The module keys of a CAVP checkpoint: ``ckpt["state_dict"]`` when present (else the file's dict),
    with every ``module.`` removed, as upstream's loader does.

    Read with ``weights_only=True``: Diff-Foley's checkpoint holds only dicts, lists, tuples, numbers,
    strings and tensors (epoch, name, state dict, optimizer state), all of which safe loading accepts.

    Raises:
        WeightsMismatchError: the file holds other Python objects or no dict of tensors.
    """
    path = Path(path)
    try:  # zip-format files are memory-mapped: the optimizer state is never read
        ckpt = torch.load(path, map_location="cpu", weights_only=True, mmap=zipfile.is_zipfile(path))
    except Exception as error:
        reason = _load_failure(error)
        if "global" in reason:  # an object outside the weights-only allow-list
            raise WeightsMismatchError(
                f"{path} holds Python objects that safe loading (weights_only=True) refuses ({reason}); the "
                "published cavp_epoch66.ckpt holds only tensors, numbers and strings: use that file, or one whose "
                "'state_dict' entry is a dict of tensors") from None
        raise WeightsMismatchError(f"{path} cannot be read as a torch checkpoint ({reason})") from None
    if isinstance(ckpt, Mapping) and "state_dict" in ckpt:
        ckpt = ckpt["state_dict"]
    if not isinstance(ckpt, Mapping) or not all(isinstance(v, torch.Tensor) for v in ckpt.values()):
        raise WeightsMismatchError(f"{path} holds no state dict of tensors (flat, or under 'state_dict')")
    return {key.replace("module.", ""): value for key, value in ckpt.items()}


def load_cavp(checkpoint_dir: str | os.PathLike = DEFAULT_CHECKPOINT_DIR, size: str = "full",
              device: torch.device | str = "cpu") -> CAVP:
    """CAVP with the weights of ``cavp_epoch66.ckpt`` in ``checkpoint_dir``, in eval mode, float32.

    Raises:
        MissingWeightsError: the file is not there (the message names it and where to download it).
        WeightsMismatchError: unreadable safely, or keys missing, unexpected or mis-shaped (named).
    """
    path = find_checkpoint("cavp", checkpoint_dir)
    state = read_cavp_state_dict(path)
    with torch.device("meta"):
        model = CAVP(**_preset(size))
    load_state_dict_checked(model, state, source=str(path), dtype=torch.float32, device=device)
    return model.eval()


def write_random_cavp(checkpoint_dir: str | os.PathLike, size: str = "tiny", seed: int = 0) -> Path:
    """Write a random CAVP of preset ``size`` as ``checkpoint_dir/cavp_epoch66.ckpt`` in the published layout
    (``{"epoch": 66, "name": ..., "state_dict": {"module." + key: tensor}}``); returns the path.

    BatchNorm affine parameters and running statistics are random too, so that a load that missed them
    would show.
    """
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        model = build_cavp(size)
        with torch.no_grad():
            for module in model.modules():
                if isinstance(module, nn.modules.batchnorm._BatchNorm):
                    module.weight.uniform_(0.5, 1.5)
                    module.bias.normal_(0.0, 0.1)
                    module.running_mean.normal_(0.0, 0.1)
                    module.running_var.uniform_(0.5, 1.5)
                    module.num_batches_tracked.fill_(1000)
    state = {"module." + key: tensor.detach().clone() for key, tensor in model.state_dict().items()}
    path = Path(checkpoint_dir) / SOURCES["cavp"].name
    path.parent.mkdir(parents=True, exist_ok=True)
    torch.save({"epoch": 66, "name": f"random-cavp-{size}-seed{seed}", "state_dict": state}, path)
    return path
