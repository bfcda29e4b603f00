"""``Wan2_1_T2V_1_3B_t5_umt5``: the umT5-XXL text encoder of JavisDiT++ (v1.0; spec MODEL_V1.md §5).

Prompts -> ``{"y": [B, L, C], "mask": [B, L]}`` with L = ``text_len`` (512) and C = 4096: whitespace-cleaned,
tokenised with EOS, padded to L and truncated beyond it. ``y`` keeps the encoder's values at padded positions
(the DiT zeroes them). Frozen. The negative prompt of the sampler goes through the same ``encode``.

The network is transformers' ``UMT5EncoderModel`` (24 layers, 64 heads of 64, gated GELU-tanh FFN 10240, a
relative position bias in every layer, T5 RMSNorm with fp32 statistics, no attention scaling). The published
weights, ``models_t5_umt5-xxl-enc-bf16.pth`` of ``Wan-AI/Wan2.1-T2V-1.3B``, use Wan's own key names; ``KEY_MAP``
renames them. Both compute the same operations in the same order (the test checks both directions against a
reference written from the spec), so the rename is the whole port.

Precision: every tensor is in ``dtype`` (bf16 for the real model, as upstream). transformers' ``from_pretrained``
would keep the FFN output projections ``wo`` in fp32 (``_keep_in_fp32_modules``), which turns the residual
stream fp32 after the first FFN; we build on the meta device and load with our own loader instead, so ``wo``
is bf16 like upstream's ``fc2``.

Shapes: B prompts, L = ``text_len`` tokens, C = ``d_model``.
"""

from __future__ import annotations

import html
import logging
import re
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any, TypeVar

import torch
from torch import nn

from javisdit.errors import ConfigError, MissingWeightsError, WeightsMismatchError
from javisdit.models.loading import load_state_dict_checked, open_state_dict
from javisdit.registry import MODELS
from javisdit.utils.dtype import torch_dtype

if TYPE_CHECKING:
    from transformers import UMT5Config

logger = logging.getLogger(__name__)

__all__ = ["KEY_MAP", "TIED_KEYS", "UMT5_PRESETS", "UMT5TextEncoder", "build_umt5", "clean_whitespace",
           "file_key_to_hf", "file_to_hf", "hf_key_to_file", "hf_to_file", "umt5_config"]

HUB_REPO = "Wan-AI/Wan2.1-T2V-1.3B"

# ----- key map: the .pth file's names <-> transformers' names ---------------------------------------------

#: (file key, transformers key); ``{i}`` is a block index, ``{p}`` one of the projections q, k, v, o.
KEY_MAP: tuple[tuple[str, str], ...] = (
    ("token_embedding.weight", "shared.weight"),
    ("blocks.{i}.norm1.weight", "encoder.block.{i}.layer.0.layer_norm.weight"),
    ("blocks.{i}.attn.{p}.weight", "encoder.block.{i}.layer.0.SelfAttention.{p}.weight"),
    ("blocks.{i}.pos_embedding.embedding.weight",
     "encoder.block.{i}.layer.0.SelfAttention.relative_attention_bias.weight"),
    ("blocks.{i}.norm2.weight", "encoder.block.{i}.layer.1.layer_norm.weight"),
    ("blocks.{i}.ffn.gate.0.weight", "encoder.block.{i}.layer.1.DenseReluDense.wi_0.weight"),  # GELU branch
    ("blocks.{i}.ffn.fc1.weight", "encoder.block.{i}.layer.1.DenseReluDense.wi_1.weight"),  # linear branch
    ("blocks.{i}.ffn.fc2.weight", "encoder.block.{i}.layer.1.DenseReluDense.wo.weight"),
    ("norm.weight", "encoder.final_layer_norm.weight"),
)
#: transformers' second name of the one token embedding (the same tensor as its value's)
TIED_KEYS: dict[str, str] = {"encoder.embed_tokens.weight": "shared.weight"}

_FIELDS = {"i": r"(?P<i>\d+)", "p": r"(?P<p>[qkvo])"}


def _compile(template: str) -> re.Pattern:
    pattern = re.escape(template)
    for name, group in _FIELDS.items():
        pattern = pattern.replace(re.escape("{" + name + "}"), group)
    return re.compile(pattern)


_RULES = [(_compile(file_t), file_t, _compile(hf_t), hf_t) for file_t, hf_t in KEY_MAP]


def _rename(key: str, to_hf: bool) -> str | None:
    for file_re, file_t, hf_re, hf_t in _RULES:
        match = (file_re if to_hf else hf_re).fullmatch(key)
        if match:
            return (hf_t if to_hf else file_t).format(**match.groupdict())
    return None


def file_key_to_hf(key: str) -> str:
    """The transformers name of a key of the ``.pth`` file.

    Raises:
        WeightsMismatchError: a key the map does not know.
    """
    name = _rename(key, to_hf=True)
    if name is None:
        raise WeightsMismatchError(f"unknown umT5 checkpoint key: {key}")
    return name


def hf_key_to_file(key: str) -> str:
    """The ``.pth`` file's name of a ``UMT5EncoderModel`` key (the tied ``encoder.embed_tokens.weight``
    names the token embedding too).

    Raises:
        WeightsMismatchError: a key the map does not know.
    """
    name = _rename(TIED_KEYS.get(key, key), to_hf=False)
    if name is None:
        raise WeightsMismatchError(f"unknown UMT5EncoderModel key: {key}")
    return name


V = TypeVar("V")


def _listed(keys: list[str], limit: int = 20) -> str:
    return ", ".join(keys[:limit]) + (f", ... ({len(keys) - limit} more)" if len(keys) > limit else "")


def _rename_all(state: Mapping[str, V], to_hf: bool) -> dict[str, V]:
    renamed, unknown = {}, []
    for key, value in state.items():
        if not to_hf and key in TIED_KEYS:
            continue
        name = _rename(key, to_hf)
        if name is None:
            unknown.append(key)
        else:
            renamed[name] = value
    if unknown:
        kind = "umT5 checkpoint" if to_hf else "UMT5EncoderModel"
        raise WeightsMismatchError(f"{len(unknown)} unknown {kind} keys: {_listed(unknown)}")
    return renamed


def file_to_hf(state: Mapping[str, V]) -> dict[str, V]:
    """A state dict in the ``.pth`` file's names -> transformers' names (values untouched; the tied
    embedding appears once, as ``shared.weight``). Unknown keys: a WeightsMismatchError naming them."""
    return _rename_all(state, to_hf=True)


def hf_to_file(state: Mapping[str, V]) -> dict[str, V]:
    """A ``UMT5EncoderModel`` state dict -> the ``.pth`` file's names (the tied alias is dropped).
    Unknown keys: a WeightsMismatchError naming them."""
    return _rename_all(state, to_hf=False)


# ----- tokenisation --------------------------------------------------------------------------------------


def clean_whitespace(text: str) -> str:
    """Upstream's ``'whitespace'`` cleaning: ftfy's fixes, HTML entities undone twice, whitespace runs
    collapsed to one space, ends stripped. Case and everything else are kept."""
    import ftfy

    text = html.unescape(html.unescape(ftfy.fix_text(text))).strip()
    return re.sub(r"\s+", " ", text).strip()


# ----- model ---------------------------------------------------------------------------------------------

#: ``config``: UMT5Config kwargs; ``dtype``: the default of ``build_umt5``. The encoder is frozen, so it never
#: drops out.
UMT5_PRESETS: dict[str, dict[str, Any]] = {
    "umt5-xxl": dict(config=dict(vocab_size=256384, d_model=4096, d_kv=64, num_heads=64, d_ff=10240, num_layers=24,
                                 relative_attention_num_buckets=32, relative_attention_max_distance=128,
                                 layer_norm_epsilon=1e-6, feed_forward_proj="gated-gelu", dropout_rate=0.0),
                     dtype=torch.bfloat16),
    # ByT5's vocabulary (384 ids) needs no file, so the tiny model works offline.
    "tiny": dict(config=dict(vocab_size=384, d_model=32, d_kv=8, num_heads=4, d_ff=64, num_layers=2,
                             relative_attention_num_buckets=32, relative_attention_max_distance=128,
                             layer_norm_epsilon=1e-6, feed_forward_proj="gated-gelu", dropout_rate=0.0),
                 dtype=torch.float32),
}


def _preset(name: str) -> dict[str, Any]:
    if name not in UMT5_PRESETS:
        raise ConfigError(f"unknown umT5 preset {name!r}; valid: {', '.join(UMT5_PRESETS)}")
    return UMT5_PRESETS[name]


def umt5_config(preset: str) -> UMT5Config:
    """The ``UMT5Config`` of a preset of ``UMT5_PRESETS`` (an unknown one: ConfigError)."""
    from transformers import UMT5Config

    return UMT5Config(**_preset(preset)["config"])


class UMT5TextEncoder(nn.Module):
    """The frozen umT5 encoder and its tokenizer; builds layers only (``build_umt5`` loads weights).

    Args:
        config: a ``transformers.UMT5Config`` or the name of a preset of ``UMT5_PRESETS``.
        tokenizer: the checkpoint's tokenizer; default ByT5's, which needs no file (it fits the tiny
            preset's 384-id vocabulary, not the real one).
        text_len: prompts are padded or truncated to this many tokens.
    """

    def __init__(self, config: UMT5Config | str = "umt5-xxl", tokenizer: Any = None, text_len: int = 512):
        super().__init__()
        from transformers import UMT5EncoderModel

        if isinstance(config, str):
            config = umt5_config(config)
        if tokenizer is None:
            from transformers import ByT5Tokenizer

            tokenizer = ByT5Tokenizer()
        self.text_len = self.model_max_length = text_len
        self.model = UMT5EncoderModel(config)
        self.tokenizer = tokenizer
        self.model.requires_grad_(False).eval()

    @property
    def output_dim(self) -> int:
        return self.model.config.d_model

    def train(self, mode: bool = True) -> UMT5TextEncoder:
        super().train(mode)
        self.model.eval()  # frozen
        return self

    @torch.no_grad()
    def encode(self, texts: Sequence[str], device: torch.device | str | None = None) -> dict[str, torch.Tensor]:
        """Prompts -> features and token mask.

        Args:
            texts: B prompts (a single string counts as one).
            device: where the outputs go (default: where the encoder's weights are, which is also where it runs).

        Returns:
            ``y`` [B, L, C] in the encoder's dtype (padded positions not zeroed) and ``mask`` [B, L] int64
            (1 = a real token, EOS included).
        """
        if isinstance(texts, str):
            texts = [texts]
        if len(texts) == 0:
            raise ValueError("no prompts given to the text encoder")
        tokens = self.tokenizer([clean_whitespace(text) for text in texts], padding="max_length", truncation=True,
                                max_length=self.text_len, add_special_tokens=True, return_tensors="pt")
        home = next(self.model.parameters()).device
        ids, mask = tokens.input_ids.to(home), tokens.attention_mask.to(home, torch.int64)
        y = self.model(input_ids=ids, attention_mask=mask).last_hidden_state  # [B, L, C]
        device = home if device is None else torch.device(device)
        return {"y": y.to(device), "mask": mask.to(device)}


# ----- builder -------------------------------------------------------------------------------------------


def _check_file_keys(stored: Mapping[str, Any], model: nn.Module, source: str) -> None:
    """Missing, unknown and mis-shaped keys of the checkpoint, all named in the file's terms."""
    own = {hf_key_to_file(k): v for k, v in model.state_dict().items() if k not in TIED_KEYS}
    problems = {
        "missing": [k for k in own if k not in stored],
        "unexpected": [k for k in stored if k not in own],
        "mis-shaped": [f"{k} {list(stored[k].shape)} vs {list(own[k].shape)}" for k in own
                       if k in stored and tuple(stored[k].shape) != tuple(own[k].shape)],
    }
    parts = [f"{len(keys)} {title}: {_listed(keys)}" for title, keys in problems.items() if keys]
    if parts:
        raise WeightsMismatchError(f"{source} does not fit the umT5 encoder: {'; '.join(parts)}")


def build_umt5(from_pretrained: str | None = None, t5_checkpoint: str = "models_t5_umt5-xxl-enc-bf16.pth",
               t5_tokenizer: str = "google/umt5-xxl", text_len: int = 512, preset: str = "umt5-xxl",
               dtype: torch.dtype | str | None = None, device: torch.device | str | None = None) -> UMT5TextEncoder:
    """The ``Wan2_1_T2V_1_3B_t5_umt5`` config entry.

    Args:
        from_pretrained: a local copy of ``Wan-AI/Wan2.1-T2V-1.3B`` (the encoder is built on the meta device and
            each tensor of ``<folder>/<t5_checkpoint>`` read, renamed, cast and placed one at a time, strictly),
            or None for random weights (tests).
        t5_checkpoint: the weights file inside ``from_pretrained``.
        t5_tokenizer: the tokenizer folder inside ``from_pretrained`` (read with ``AutoTokenizer``, offline).
        text_len: tokens per prompt.
        preset: a size of ``UMT5_PRESETS``.
        dtype: the encoder's dtype (``torch.dtype`` or ``fp32``/``fp16``/``bf16``); default the preset's
            (bf16 for ``umt5-xxl``, fp32 for ``tiny``).
        device: where the encoder lives and runs (default the CPU).

    Raises:
        MissingWeightsError: the weights file or the tokenizer folder is not there (one line saying what to
            download where).
        WeightsMismatchError: checkpoint keys missing, unknown or mis-shaped (named).
        ConfigError: an unknown preset or dtype name.
    """
    if isinstance(dtype, str):
        dtype = torch_dtype(dtype, key="text_encoder.dtype")
    dtype = dtype if dtype is not None else _preset(preset)["dtype"]
    if from_pretrained is None:
        return UMT5TextEncoder(preset, text_len=text_len).to(device=device, dtype=dtype)

    from transformers import AutoTokenizer

    folder = Path(from_pretrained)
    checkpoint, tokenizer_dir = folder / t5_checkpoint, folder / t5_tokenizer
    missing = [str(path) for path in (checkpoint, tokenizer_dir) if not path.exists()]
    if missing:
        raise MissingWeightsError(
            f"text_encoder: {' and '.join(missing)} not found; download them with `huggingface-cli download "
            f"{HUB_REPO} --include {t5_checkpoint} '{t5_tokenizer}/*' --local-dir {folder}`")
    tokenizer = AutoTokenizer.from_pretrained(str(tokenizer_dir), local_files_only=True)
    with torch.device("meta"):
        encoder = UMT5TextEncoder(preset, tokenizer, text_len=text_len)
    stored = open_state_dict(checkpoint)  # headers only; tensors are read as they are placed
    _check_file_keys(stored, encoder.model, str(checkpoint))
    load_state_dict_checked(encoder.model, file_to_hf(stored), source=str(checkpoint),
                            allow_missing=tuple(TIED_KEYS), dtype=dtype, device=device)
    logger.info("umT5 (%s) loaded from %s in %s", preset, checkpoint, dtype)
    return encoder


MODELS.register_module(name="Wan2_1_T2V_1_3B_t5_umt5", module=build_umt5)
