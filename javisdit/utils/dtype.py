"""The config's dtype names and their torch dtypes."""

from __future__ import annotations

import torch

from javisdit.errors import ConfigError

DTYPES: dict[str, torch.dtype] = {"fp32": torch.float32, "fp16": torch.float16, "bf16": torch.bfloat16}


def torch_dtype(name: str, key: str = "dtype") -> torch.dtype:
    """``fp32``/``fp16``/``bf16`` -> the torch dtype; anything else is a ConfigError naming ``key``."""
    if name not in DTYPES:
        raise ConfigError(f"{key} must be one of {', '.join(DTYPES)}, got {name!r}")
    return DTYPES[name]
