"""The text tower of ImageBind-huge, alone: what the ST-prior estimator reads its captions with.

Parameter names equal the text entries of Meta's ``imagebind_huge.pth`` (``modality_preprocessors.text``,
``modality_trunks.text``, ``modality_heads.text``, ``modality_postprocessors.text``), so that file loads
strictly for its text subset. Shapes: tokens [B, 77] -> hidden states [B, 77, D] (the trunk output,
before the head's LayerNorm and projection; this is what the prior uses).

The layers (``Block``, ``Trunk``, ``TextPreprocessor``, ``TextHead``, ``LogitScale``) are shared with the
evaluator's three-tower ImageBind (``javisdit/eval/networks/imagebind.py``).
"""

from __future__ import annotations

import logging
import math
import os
from pathlib import Path
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

from javisdit.models.layers.mlp import Mlp
from javisdit.models.loading import MissingWeightsError, WeightsMismatchError
from javisdit.models.prior.tokenizer import CONTEXT_LENGTH, VOCAB_SIZE

logger = logging.getLogger(__name__)

IMAGEBIND_URL = "https://dl.fbaipublicfiles.com/imagebind/imagebind_huge.pth"
IMAGEBIND_FILE = "imagebind_huge.pth"

TEXT_TOWER_PRESETS: dict[str, dict[str, Any]] = {
    "huge": dict(width=1024, depth=24, num_heads=16, embed_dim=1024),
    "tiny": dict(width=32, depth=2, num_heads=2, embed_dim=32),
}
TEXT_PREFIXES = ("modality_preprocessors.text.", "modality_trunks.text.", "modality_heads.text.",
                 "modality_postprocessors.text.")
OTHER_MODALITIES = ("vision", "audio", "depth", "thermal", "imu")


class TextPreprocessor(nn.Module):
    """Token and position embeddings plus the causal mask (``modality_preprocessors.text``)."""

    def __init__(self, width: int):
        super().__init__()
        self.token_embedding = nn.Embedding(VOCAB_SIZE, width)
        self.pos_embed = nn.Parameter(torch.empty(1, CONTEXT_LENGTH, width))
        causal = torch.full((CONTEXT_LENGTH, CONTEXT_LENGTH), float("-inf")).triu_(1)
        self.register_buffer("mask", causal)
        nn.init.normal_(self.token_embedding.weight, std=0.02)
        nn.init.normal_(self.pos_embed, std=0.01)

    def forward(self, tokens: torch.Tensor) -> torch.Tensor:
        """tokens [B, 77] -> embeddings [B, 77, width]."""
        return self.token_embedding(tokens) + self.pos_embed.to(self.token_embedding.weight.dtype)


class Block(nn.Module):
    """ImageBind's pre-LN transformer block (LayerNorm eps 1e-6, exact GELU); ``add_bias_kv`` appends one
    learned key/value to every sequence (the audio tower)."""

    def __init__(self, width: int, num_heads: int, add_bias_kv: bool = False):
        super().__init__()
        self.attn = nn.MultiheadAttention(width, num_heads, add_bias_kv=add_bias_kv, batch_first=True)
        self.norm_1 = nn.LayerNorm(width, eps=1e-6)
        self.mlp = Mlp(width, 4 * width, approximate="none")
        self.norm_2 = nn.LayerNorm(width, eps=1e-6)

    def forward(self, x: torch.Tensor, mask: torch.Tensor | None = None) -> torch.Tensor:
        h = self.norm_1(x)
        x = x + self.attn(h, h, h, attn_mask=None if mask is None else mask.to(x.dtype), need_weights=False)[0]
        return x + self.mlp(self.norm_2(x))


class Trunk(nn.Module):
    """A stack of blocks, optionally after a LayerNorm (the vision tower's ``pre_transformer_layer``)."""

    def __init__(self, width: int, depth: int, num_heads: int, pre_ln: bool = False, add_bias_kv: bool = False):
        super().__init__()
        if pre_ln:
            self.pre_transformer_layer = nn.Sequential(nn.LayerNorm(width, eps=1e-6))
        self.blocks = nn.ModuleList(Block(width, num_heads, add_bias_kv) for _ in range(depth))

    def forward(self, x: torch.Tensor, mask: torch.Tensor | None = None) -> torch.Tensor:
        """x [B, L, width] -> [B, L, width]."""
        if hasattr(self, "pre_transformer_layer"):
            x = self.pre_transformer_layer(x)
        for block in self.blocks:
            x = block(x, mask)
        return x


class TextHead(nn.Module):
    """LayerNorm and projection of the end-of-text token (``modality_heads.text``)."""

    def __init__(self, width: int, embed_dim: int):
        super().__init__()
        self.proj = nn.Sequential(nn.LayerNorm(width, eps=1e-6), nn.Linear(width, embed_dim, bias=False))

    def forward(self, hidden: torch.Tensor, tokens: torch.Tensor) -> torch.Tensor:
        """hidden [B, 77, width], tokens [B, 77] -> [B, embed_dim], read at argmax(tokens) (the EOT id)."""
        eot = hidden[torch.arange(tokens.shape[0], device=tokens.device), tokens.argmax(dim=-1)]
        return self.proj(eot)


class Normalize(nn.Module):
    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return F.normalize(x, dim=-1)


class LogitScale(nn.Module):
    """x * min(exp(log_logit_scale), max_scale); a parameter when ``learnable`` (text), else a persistent
    buffer (audio's fixed 20)."""

    def __init__(self, init: float = 1 / 0.07, max_scale: float = 100.0, learnable: bool = True):
        super().__init__()
        value = torch.tensor(math.log(init))
        if learnable:
            self.log_logit_scale = nn.Parameter(value)
        else:
            self.register_buffer("log_logit_scale", value)
        self.max_scale = max_scale

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.log_logit_scale.exp().clamp(max=self.max_scale) * x


def text_postprocessor() -> nn.Sequential:
    """Unit norm, then the learnable logit scale capped at 100 (``modality_postprocessors.text``)."""
    return nn.Sequential(Normalize(), LogitScale())


class ImageBindTextTower(nn.Module):
    """ImageBind's text encoder. ``forward`` returns the hidden states; ``embed`` the joint-space
    embedding (EOT token -> LayerNorm -> projection -> unit norm -> logit scale)."""

    def __init__(self, width: int = 1024, depth: int = 24, num_heads: int = 16, embed_dim: int = 1024):
        super().__init__()
        self.width = width
        self.modality_preprocessors = nn.ModuleDict({"text": TextPreprocessor(width)})
        self.modality_trunks = nn.ModuleDict({"text": Trunk(width, depth, num_heads)})
        self.modality_heads = nn.ModuleDict({"text": TextHead(width, embed_dim)})
        self.modality_postprocessors = nn.ModuleDict({"text": text_postprocessor()})

    @classmethod
    def from_preset(cls, name: str) -> ImageBindTextTower:
        if name not in TEXT_TOWER_PRESETS:
            raise ValueError(f"unknown ImageBind text tower {name!r}; valid: {', '.join(TEXT_TOWER_PRESETS)}")
        return cls(**TEXT_TOWER_PRESETS[name])

    def forward(self, tokens: torch.Tensor) -> torch.Tensor:
        """tokens [B, 77] -> hidden states [B, 77, width]."""
        pre = self.modality_preprocessors["text"]
        return self.modality_trunks["text"](pre(tokens), pre.mask)

    def embed(self, tokens: torch.Tensor) -> torch.Tensor:
        """tokens [B, 77] -> unit-norm, logit-scaled embeddings [B, embed_dim] (ImageBind's output)."""
        return self.modality_postprocessors["text"](self.modality_heads["text"](self(tokens), tokens))


def _modality(key: str) -> str | None:
    """``vision`` for ``modality_trunks.vision.blocks.0...``; None for keys outside that layout."""
    parts = key.split(".")
    return parts[1] if len(parts) > 2 and parts[0].startswith("modality_") else None


def imagebind_file(path: str | os.PathLike) -> Path:
    """``imagebind_huge.pth`` inside the folder ``path``, or ``path`` itself when it is a file."""
    path = Path(path)
    return path / IMAGEBIND_FILE if path.is_dir() or not path.suffix else path


def load_imagebind_text(tower: ImageBindTextTower, path: str | os.PathLike,
                        config_key: str = "prior_encoder.imagebind_ckpt_path") -> None:
    """Load the text entries of an ImageBind checkpoint (``.pth``, or ``.safetensors`` with the same keys)
    into ``tower``, strictly.

    The other modalities' entries (vision, audio, depth, thermal, IMU) are skipped by name; any
    other key, or a missing or mis-shaped text key, is an error.

    Raises:
        MissingWeightsError: the file is not there (the message says where to download it to).
        WeightsMismatchError: the file is not an ImageBind checkpoint of this tower's size.
    """
    file = imagebind_file(path)
    if not file.is_file():
        raise MissingWeightsError(
            f"{config_key}: {file} not found (the ST-prior estimator reads captions with ImageBind's text "
            f"tower); download it (4.5 GB) with `wget -P {file.parent} {IMAGEBIND_URL}` or set {config_key} "
            f"to the folder that holds {IMAGEBIND_FILE}"
        )
    if file.suffix == ".safetensors":  # a tower of our own (JavisDiT-mini's), in the same key layout
        from safetensors.torch import load_file

        state = load_file(str(file))
    else:
        state = torch.load(file, map_location="cpu", weights_only=True, mmap=True)
    text = {k: v for k, v in state.items() if k.startswith(TEXT_PREFIXES)}
    others = [k for k in state if k not in text]
    unknown = [k for k in others if _modality(k) not in OTHER_MODALITIES]
    if unknown:
        raise WeightsMismatchError(f"{file} is not an ImageBind checkpoint: unexpected keys {unknown[:10]}")
    own = tower.state_dict()
    missing = [k for k in own if k not in text]
    mismatched = [f"{k} {list(text[k].shape)} vs {list(own[k].shape)}" for k in own
                  if k in text and text[k].shape != own[k].shape]
    if missing or mismatched:
        raise WeightsMismatchError(f"{file} does not fit the text tower: missing {missing[:10]}, "
                                   f"mis-shaped {mismatched[:10]}")
    tower.load_state_dict(text, strict=True)
    logger.info("loaded ImageBind's text tower from %s (%d tensors; %d of other modalities skipped)",
                file, len(text), len(others))


def write_random_text_tower(path: str | os.PathLike, preset: str = "tiny", seed: int = 0) -> Path:
    """A randomly initialised text tower of ``preset`` saved (fp16) as a ``.safetensors`` file in ImageBind's
    key layout, which ``load_imagebind_text`` reads: a frozen prior text encoder for models trained from
    scratch (JavisDiT-mini). The same ``preset`` and ``seed`` give the same weights."""
    from safetensors.torch import save_file

    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        tower = ImageBindTextTower.from_preset(preset)
    state = {k: v.to(torch.float16).contiguous() for k, v in tower.state_dict().items()}
    save_file(state, str(path), metadata={"format": "pt"})
    return path

