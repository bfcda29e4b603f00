"""``t5``: the T5-XXL encoder (``DeepFloyd/t5-v1_1-xxl``) that gives the DiT its text features.

Captions -> ``{"y": [B, 1, L, 4096], "mask": [B, L]}`` with L = ``model_max_length`` (300): padded to
the maximum length, truncated beyond it, EOS appended. Frozen. With ``cpu_offload`` the encoder waits
on the CPU between calls, so T5-XXL (4.7e9 parameters) and the DiT need not share GPU memory.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import torch
from torch import nn

from javisdit.models.loading import load_state_dict_checked, read_state_dict, resolve_weights

logger = logging.getLogger(__name__)

T5_PRESETS: dict[str, dict[str, Any]] = {
    "xxl": dict(d_model=4096, d_ff=10240, d_kv=64, num_heads=64, num_layers=24, vocab_size=32128,
                feed_forward_proj="gated-gelu", relative_attention_num_buckets=32),
    # ByT5's vocabulary (384 ids) needs no file, so the tiny model works offline.
    "tiny": dict(d_model=32, d_ff=64, d_kv=8, num_heads=4, num_layers=2, vocab_size=384,
                 feed_forward_proj="gated-gelu", relative_attention_num_buckets=8),
}


class T5TextEncoder(nn.Module):
    def __init__(self, from_pretrained: str | None = "DeepFloyd/t5-v1_1-xxl", model_max_length: int = 300,
                 preset: str = "xxl", cpu_offload: bool = False, dtype: torch.dtype | None = None):
        super().__init__()
        from transformers import T5Config, T5EncoderModel

        self.model_max_length = model_max_length
        self.cpu_offload = cpu_offload
        if from_pretrained is None:
            if preset not in T5_PRESETS:
                raise ValueError(f"unknown T5 preset {preset!r}; valid: {', '.join(T5_PRESETS)}")
            from transformers import ByT5Tokenizer

            self.model = T5EncoderModel(T5Config(**T5_PRESETS[preset]))
            self.tokenizer = ByT5Tokenizer()
        else:
            path = resolve_weights(from_pretrained, config_key="text_encoder.from_pretrained")
            config = T5Config(**{k: v for k, v in json.loads((Path(path) / "config.json").read_text()).items()
                                 if not k.startswith("_")})
            with torch.device("meta"):
                self.model = T5EncoderModel(config)
            tied = tuple(getattr(self.model, "_tied_weights_keys", None) or ())
            # Cast while reading: the XXL shards in fp32 would need 19 GB at once.
            load_state_dict_checked(self.model, read_state_dict(path, dtype), source=str(from_pretrained),
                                    allow_missing=tied, ignore_unexpected=("decoder.", "lm_head."), assign=True)
            self.model.tie_weights()
            from transformers import AutoTokenizer

            self.tokenizer = AutoTokenizer.from_pretrained(str(path))
        self.model.requires_grad_(False).eval()

    @property
    def output_dim(self) -> int:
        return self.model.config.d_model

    def train(self, mode: bool = True) -> "T5TextEncoder":
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
