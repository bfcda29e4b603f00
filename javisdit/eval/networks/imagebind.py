"""ImageBind-Huge's text, vision and audio towers: the network of TV-IB, TA-IB, AV-IB, AVHScore and JavisScore
(``EVAL.md`` §1.3 "ImageBind scores", "AVHScore", "JavisScore"; architecture ``EVAL_MODELS.md`` §3.1).

One joint 1024-d space for three encoders built from the same pre-LN transformer block (shared with the
ST-prior's text tower, ``javisdit.models.prior.imagebind_text``):

* text: token + position embeddings, 24 causal blocks, LayerNorm + projection of the EOT token, unit norm
  times a learnable logit scale capped at 100;
* vision: an image is repeated to two frames, Conv3d (2,14,14) patches, CLS, position embedding, a
  LayerNorm, 32 blocks, LayerNorm + projection of the CLS token, unit norm;
* audio: Conv2d 16x16 stride 10 patches of a (1,128,204) fbank, LayerNorm (eps 1e-5), CLS, position
  embedding, 12 blocks with one learned extra key/value, LayerNorm + projection of CLS, unit norm x 20.

Several views of one sample (15 video crops, 3 audio clips) are embedded separately and their
post-processed embeddings averaged without re-normalising. Parameter names equal the vision, text and
audio entries of Meta's ``imagebind_huge.pth`` (manifest ``eval_imagebind_huge.tsv``); its depth, thermal
and IMU entries are skipped by name when loading. The inputs are made by ``javisdit.eval.imagebind_inputs``.

Shape legend: B samples, S views per sample, L tokens, D tower width, E joint embedding (1024).
"""

from __future__ import annotations

import logging
import os
from collections import OrderedDict
from pathlib import Path

import torch
from torch import nn

from javisdit.errors import WeightsMismatchError
from javisdit.eval.checkpoints import DEFAULT_CHECKPOINT_DIR, SOURCES, find_checkpoint
from javisdit.eval.networks import pick_preset
from javisdit.models.loading import load_state_dict_checked, open_state_dict
from javisdit.models.prior.imagebind_text import (
    LogitScale,
    Normalize,
    TextHead,
    TextPreprocessor,
    Trunk,
    text_postprocessor,
)

logger = logging.getLogger(__name__)

__all__ = ["MODALITIES", "PRESETS", "SKIPPED_MODALITIES", "SKIPPED_PREFIXES", "ImageBind", "build_imagebind",
           "load_imagebind", "write_random_imagebind"]

MODALITIES = ("vision", "text", "audio")  # in the file's order
SKIPPED_MODALITIES = ("depth", "thermal", "imu")  # in the file, never run by JavisBench
_GROUPS = ("modality_preprocessors", "modality_trunks", "modality_heads", "modality_postprocessors")
SKIPPED_PREFIXES = tuple(f"{group}.{name}." for name in SKIPPED_MODALITIES for group in _GROUPS)

IMAGE_SIZE = 224
VIDEO_FRAMES = 2  # an image is repeated to this many frames (PadIm2Video)
PATCH = (2, 14, 14)
FBANK_SHAPE = (128, 204)  # mel bins x frames
AUDIO_KERNEL, AUDIO_STRIDE = 16, 10
AUDIO_SCALE = 20.0


# --------------------------------------------------------------------------------------------- layers


class PadIm2Video(nn.Module):
    """[B, C, H, W] images -> [B, C, T, H, W] by repeating them T times; a one-frame clip is repeated too,
    a clip of T frames passes through."""

    def __init__(self, ntimes: int = VIDEO_FRAMES):
        super().__init__()
        self.ntimes = ntimes

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if x.ndim == 4:
            x = x.unsqueeze(2)
        return x.expand(-1, -1, self.ntimes, -1, -1) if x.shape[2] == 1 else x


class PatchStem(nn.Module):
    """A convolution to patches, flattened to tokens, optionally normalised: [B, C, ...] -> [B, N, D]."""

    def __init__(self, proj: nn.Module, norm_layer: nn.Module | None = None):
        super().__init__()
        self.proj = proj
        if norm_layer is not None:
            self.norm_layer = norm_layer

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.proj(x).flatten(2).transpose(1, 2)
        return self.norm_layer(x) if hasattr(self, "norm_layer") else x


class PosEmbed(nn.Module):
    """The learnable position embedding [1, 1 + N, D] (``pos_embedding_helper``)."""

    def __init__(self, num_tokens: int, width: int):
        super().__init__()
        self.pos_embed = nn.Parameter(torch.empty(1, num_tokens, width))
        nn.init.trunc_normal_(self.pos_embed, std=0.02)


class PatchPreprocessor(nn.Module):
    """Patch tokens with a CLS token prepended and the position embedding added (``cls_token``,
    ``rgbt_stem``, ``pos_embedding_helper``): input -> [B, 1 + N, D]."""

    def __init__(self, stem: PatchStem, num_patches: int, width: int):
        super().__init__()
        self.cls_token = nn.Parameter(torch.empty(1, 1, width))
        self.rgbt_stem = stem
        self.pos_embedding_helper = PosEmbed(1 + num_patches, width)
        nn.init.trunc_normal_(self.cls_token, std=0.02)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        tokens = self.rgbt_stem(x)  # [B, N, D]
        pos = self.pos_embedding_helper.pos_embed
        if tokens.shape[1] + 1 != pos.shape[1]:
            raise ValueError(f"{tuple(x.shape[1:])} gives {tokens.shape[1]} patches; this tower takes "
                             f"{pos.shape[1] - 1} (224x224 images, 128x204 fbanks)")
        return torch.cat([self.cls_token.expand(tokens.shape[0], -1, -1), tokens], dim=1) + pos


class SelectToken(nn.Module):
    """[B, L, D] -> [B, D], the token at ``index`` (the CLS token)."""

    def __init__(self, index: int = 0):
        super().__init__()
        self.index = index

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x[:, self.index]


def _cls_head(width: int, embed_dim: int) -> nn.Sequential:
    return nn.Sequential(nn.LayerNorm(width, eps=1e-6), SelectToken(0), nn.Linear(width, embed_dim, bias=False))


# --------------------------------------------------------------------------------------------- model


class ImageBind(nn.Module):
    """ImageBind's text, vision and audio encoders into one joint space of ``embed_dim``."""

    def __init__(self, vision_width: int = 1280, vision_depth: int = 32, vision_heads: int = 16,
                 text_width: int = 1024, text_depth: int = 24, text_heads: int = 16,
                 audio_width: int = 768, audio_depth: int = 12, audio_heads: int = 12, embed_dim: int = 1024):
        super().__init__()
        vision_patches = (VIDEO_FRAMES // PATCH[0]) * (IMAGE_SIZE // PATCH[1]) * (IMAGE_SIZE // PATCH[2])  # 256
        audio_patches = (((FBANK_SHAPE[0] - AUDIO_KERNEL) // AUDIO_STRIDE + 1)
                         * ((FBANK_SHAPE[1] - AUDIO_KERNEL) // AUDIO_STRIDE + 1))  # 12 x 19 = 228
        vision_stem = PatchStem(nn.Sequential(
            PadIm2Video(VIDEO_FRAMES), nn.Conv3d(3, vision_width, PATCH, stride=PATCH, bias=False)))
        audio_stem = PatchStem(nn.Conv2d(1, audio_width, AUDIO_KERNEL, stride=AUDIO_STRIDE, bias=False),
                               nn.LayerNorm(audio_width))  # eps 1e-5 here, unlike the blocks
        self.modality_preprocessors = nn.ModuleDict({
            "vision": PatchPreprocessor(vision_stem, vision_patches, vision_width),
            "text": TextPreprocessor(text_width),
            "audio": PatchPreprocessor(audio_stem, audio_patches, audio_width),
        })
        self.modality_trunks = nn.ModuleDict({
            "vision": Trunk(vision_width, vision_depth, vision_heads, pre_ln=True),
            "text": Trunk(text_width, text_depth, text_heads),
            "audio": Trunk(audio_width, audio_depth, audio_heads, add_bias_kv=True),
        })
        self.modality_heads = nn.ModuleDict({
            "vision": _cls_head(vision_width, embed_dim),
            "text": TextHead(text_width, embed_dim),
            "audio": _cls_head(audio_width, embed_dim),
        })
        self.modality_postprocessors = nn.ModuleDict({
            "vision": Normalize(),
            "text": text_postprocessor(),
            "audio": nn.Sequential(Normalize(), LogitScale(AUDIO_SCALE, learnable=False)),
        })

    def _encode(self, modality: str, x: torch.Tensor) -> torch.Tensor:
        """One view per sample -> post-processed embeddings [B, E]."""
        tokens = self.modality_preprocessors[modality](x)  # [B, L, D]
        hidden = self.modality_trunks[modality](tokens)
        return self.modality_postprocessors[modality](self.modality_heads[modality](hidden))

    def _encode_views(self, modality: str, x: torch.Tensor) -> torch.Tensor:
        """[B, S, ...] -> [B, E]: the mean of the S post-processed embeddings, not re-normalised."""
        B, S = x.shape[:2]
        return self._encode(modality, x.flatten(0, 1)).unflatten(0, (B, S)).mean(dim=1)

    def embed_text(self, tokens: torch.Tensor) -> torch.Tensor:
        """tokens [B, 77] (``ImageBindTokenizer``) -> [B, E], unit norm x min(exp(logit scale), 100)."""
        pre = self.modality_preprocessors["text"]
        hidden = self.modality_trunks["text"](pre(tokens), pre.mask)  # [B, 77, D]
        return self.modality_postprocessors["text"](self.modality_heads["text"](hidden, tokens))

    def embed_vision(self, x: torch.Tensor) -> torch.Tensor:
        """Images [B, 3, 224, 224], clips [B, 3, 2, 224, 224] or views [B, S, 3, 2, 224, 224] -> [B, E].

        Each image or clip embeds to a unit vector; the S views of a sample are averaged.
        """
        if x.ndim == 6:
            return self._encode_views("vision", x)
        if x.ndim not in (4, 5):
            raise ValueError(f"vision input must be [B,3,H,W], [B,3,T,H,W] or [B,S,3,T,H,W], got {tuple(x.shape)}")
        return self._encode("vision", x)

    def embed_audio(self, x: torch.Tensor) -> torch.Tensor:
        """Fbanks [B, 1, 128, 204] or clips [B, S, 1, 128, 204] -> [B, E], unit norm x 20, the S clips averaged."""
        if x.ndim == 5:
            return self._encode_views("audio", x)
        if x.ndim != 4:
            raise ValueError(f"audio input must be [B,1,128,204] or [B,S,1,128,204], got {tuple(x.shape)}")
        return self._encode("audio", x)


# --------------------------------------------------------------------------------------------- presets

PRESETS: dict[str, dict] = {
    "full": dict(vision_width=1280, vision_depth=32, vision_heads=16, text_width=1024, text_depth=24,
                 text_heads=16, audio_width=768, audio_depth=12, audio_heads=12, embed_dim=1024),
    # Same keys and input sizes, widths 32/24/24 and two blocks each: for CPU tests.
    "tiny": dict(vision_width=32, vision_depth=2, vision_heads=2, text_width=24, text_depth=2, text_heads=2,
                 audio_width=24, audio_depth=2, audio_heads=2, embed_dim=16),
}


def _preset(size: str) -> dict:
    return pick_preset(PRESETS, size, "ImageBind")


def build_imagebind(size: str = "full") -> ImageBind:
    """A randomly initialised ImageBind (text, vision, audio) of preset ``size`` in eval mode, float32."""
    return ImageBind(**_preset(size)).eval()


def load_imagebind(checkpoint_dir: str | os.PathLike = DEFAULT_CHECKPOINT_DIR, size: str = "full",
                   device: torch.device | str = "cpu") -> ImageBind:
    """ImageBind with the weights of ``imagebind_huge.pth`` in ``checkpoint_dir``, in eval mode.

    The file is a flat state dict of all six modalities. Its text, vision and audio keys load strictly (all
    present, shapes equal); depth, thermal and IMU keys are skipped by name; any other key is refused.
    Tensors are read one at a time from the memory-mapped file.

    Raises:
        MissingWeightsError: the file is not there (the message names it and where to download it).
        WeightsMismatchError: it cannot be read as a weights-only state dict, or keys are missing,
            unexpected or mis-shaped.
    """
    path = find_checkpoint("imagebind", checkpoint_dir)
    try:
        state = open_state_dict(path)
    except Exception as error:  # a pickle that is not plain tensors, or not a torch file at all
        first_line = str(error).strip().splitlines()[0] if str(error).strip() else type(error).__name__
        raise WeightsMismatchError(f"{path} cannot be read as a weights-only state dict: {first_line}") from error
    with torch.device("meta"):
        model = ImageBind(**_preset(size))
    load_state_dict_checked(model, state, source=str(path), ignore_unexpected=SKIPPED_PREFIXES, device=device)
    skipped = sum(k.startswith(SKIPPED_PREFIXES) for k in state)
    logger.info("loaded ImageBind (%s) from %s; %d depth/thermal/IMU tensors skipped", size, path, skipped)
    return model.eval()


def write_random_imagebind(checkpoint_dir: str | os.PathLike, size: str = "tiny", seed: int = 0) -> Path:
    """Write a random ImageBind of preset ``size`` as ``checkpoint_dir/imagebind_huge.pth`` in the published
    layout (a flat state dict saved with ``torch.save``), plus one small depth tensor standing for the
    modalities the loader skips; returns the path."""
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        model = build_imagebind(size)
        with torch.no_grad():  # LayerNorm affines and biases random too, so a load that missed one would show
            for name, tensor in model.named_parameters():
                if name.endswith(("norm_1.weight", "norm_2.weight", ".0.weight")) and tensor.ndim == 1:
                    tensor.normal_(1.0, 0.1)
                elif name.endswith("bias") and tensor.ndim == 1:
                    tensor.normal_(0.0, 0.1)
    state = OrderedDict((key, tensor.detach().clone()) for key, tensor in model.state_dict().items())
    state["modality_heads.depth.0.weight"] = torch.ones(4)
    path = Path(checkpoint_dir) / SOURCES["imagebind"].name
    path.parent.mkdir(parents=True, exist_ok=True)
    torch.save(state, path)
    return path
