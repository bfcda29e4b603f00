"""``t5``: the T5-XXL encoder (``DeepFloyd/t5-v1_1-xxl``) that gives the DiT its text features.

Captions -> ``{"y": [B, 1, L, 4096], "mask": [B, L]}`` with L = ``model_max_length`` (300): padded to
the maximum length, truncated beyond it, EOS appended. Frozen. With ``cpu_offload`` the encoder waits
on the CPU between calls, so T5-XXL (4.7e9 parameters) and the DiT need not share GPU memory.
``T5TextEncoder`` builds the layers; ``build_t5`` (the registered ``t5``) loads the weights. An fp16 run
gets a bf16 T5 (``t5_dtype``).
"""

from __future__ import annotations

import json
import logging
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

import torch
from torch import nn

from javisdit.models.loading import load_state_dict_checked, read_state_dict, resolve_weights

if TYPE_CHECKING:
    from transformers import T5Config

logger = logging.getLogger(__name__)

T5_PRESETS: dict[str, dict[str, Any]] = {
    "xxl": dict(d_model=4096, d_ff=10240, d_kv=64, num_heads=64, num_layers=24, vocab_size=32128,
                feed_forward_proj="gated-gelu", relative_attention_num_buckets=32),
    # ByT5's vocabulary (384 ids) needs no file, so the tiny model works offline.
    "tiny": dict(d_model=32, d_ff=64, d_kv=8, num_heads=4, num_layers=2, vocab_size=384,
                 feed_forward_proj="gated-gelu", relative_attention_num_buckets=8),
    # JavisDiT-mini's frozen random encoder over a word vocabulary (``words.write_word_t5`` sets vocab_size)
    "mini": dict(d_model=64, d_ff=128, d_kv=16, num_heads=4, num_layers=2, vocab_size=128,
                 feed_forward_proj="gated-gelu", relative_attention_num_buckets=16),
}


def t5_dtype(dtype: torch.dtype | None) -> torch.dtype | None:
    """The dtype T5 runs in when the run asks for ``dtype``: bf16 for fp16, else ``dtype`` itself.

    T5 v1.1 overflows in fp16 (its feed-forward activations exceed 65504; transformers keeps ``wo`` in
    fp32 for that reason); bf16 has fp32's range. Callers cast the features ``y`` to their own dtype.
    """
    return torch.bfloat16 if dtype == torch.float16 else dtype


class T5TextEncoder(nn.Module):
    """The frozen T5 encoder and its tokenizer; builds layers only (``build_t5`` loads weights).

    Args:
        config: a ``transformers.T5Config`` or the name of a preset of ``T5_PRESETS``.
        tokenizer: the checkpoint's tokenizer; default ByT5's, which needs no file (it fits the tiny
            preset's 384-id vocabulary).
        model_max_length: captions are padded or truncated to this many tokens.
        cpu_offload: keep the encoder on the CPU between calls.
    """

    def __init__(self, config: T5Config | str = "xxl", tokenizer: Any = None, model_max_length: int = 300,
                 cpu_offload: bool = False):
        super().__init__()
        from transformers import T5Config, T5EncoderModel

        if isinstance(config, str):
            if config not in T5_PRESETS:
                raise ValueError(f"unknown T5 preset {config!r}; valid: {', '.join(T5_PRESETS)}")
            config = T5Config(**T5_PRESETS[config])
        if tokenizer is None:
            from transformers import ByT5Tokenizer

            tokenizer = ByT5Tokenizer()
        self.model_max_length = model_max_length
        self.cpu_offload = cpu_offload
        self.model = T5EncoderModel(config)
        self.tokenizer = tokenizer
        self.model.requires_grad_(False).eval()

    @property
    def output_dim(self) -> int:
        return self.model.config.d_model

    def train(self, mode: bool = True) -> T5TextEncoder:
        super().train(mode)
        self.model.eval()  # frozen
        return self

    @torch.no_grad()
    def encode(self, texts: Sequence[str], device: torch.device | str | None = None) -> dict[str, torch.Tensor]:
        """Captions -> ``y`` [B, 1, L, C] and ``mask`` [B, L] (1 = a real token), on ``device``."""
        if isinstance(texts, str):
            texts = [texts]
        if len(texts) == 0:
            raise ValueError("no prompts given to the text encoder")
        tokens = self.tokenizer(list(texts), max_length=self.model_max_length, padding="max_length",
                                truncation=True, add_special_tokens=True, return_tensors="pt")
        home = next(self.model.parameters()).device
        device = torch.device(device) if device is not None else home
        if self.cpu_offload:
            self.model.to(device)
        ids, mask = tokens.input_ids.to(device), tokens.attention_mask.to(device)
        y = self.model(input_ids=ids, attention_mask=mask).last_hidden_state
        if self.cpu_offload:
            self.model.to("cpu")
            if torch.cuda.is_available():
                torch.cuda.empty_cache()
        return {"y": y[:, None], "mask": mask}


def build_t5(from_pretrained: str | None = "DeepFloyd/t5-v1_1-xxl", model_max_length: int = 300, preset: str = "xxl",
             cpu_offload: bool = False, dtype: torch.dtype | None = None) -> T5TextEncoder:
    """The ``t5`` config entry: a checkpoint (hub id or folder with ``config.json``, weights and
    tokenizer files) built on the meta device and loaded strictly, or, with ``from_pretrained=None``, a
    randomly initialised ``preset``. ``dtype``: the run's dtype; T5 takes ``t5_dtype(dtype)``."""
    if dtype == torch.float16:
        logger.info("T5 runs in bf16 (T5 v1.1 overflows in fp16); its features are cast to fp16")
    dtype = t5_dtype(dtype)
    if from_pretrained is None:
        encoder = T5TextEncoder(preset, model_max_length=model_max_length, cpu_offload=cpu_offload)
        return encoder.to(dtype) if dtype is not None else encoder
    from transformers import AutoTokenizer, T5Config

    path = resolve_weights(from_pretrained, config_key="text_encoder.from_pretrained")
    config = T5Config(**{k: v for k, v in json.loads((Path(path) / "config.json").read_text()).items()
                         if not k.startswith("_")})
    tokenizer = AutoTokenizer.from_pretrained(str(path))
    with torch.device("meta"):
        encoder = T5TextEncoder(config, tokenizer, model_max_length=model_max_length, cpu_offload=cpu_offload)
    tied = tuple(getattr(encoder.model, "_tied_weights_keys", None) or ())
    # Cast while reading: the XXL shards in fp32 would need 19 GB at once.
    load_state_dict_checked(encoder.model, read_state_dict(path, dtype), source=str(from_pretrained),
                            allow_missing=tied, ignore_unexpected=("decoder.", "lm_head."), assign=True)
    encoder.model.tie_weights()
    return encoder
