"""JavisDiT++ (v1.0): the Wan2.1-based joint audio-video DiT (``Wan2_1_T2V_1_3B``), its umT5-XXL text encoder
(``Wan2_1_T2V_1_3B_t5_umt5``) and the Wan2.1 video VAE (``Wan2_1_T2V_1_3B_VAE``), under the original's
registry names (spec MODEL_V1.md §2.1). The audio VAE is v0.1's ``AudioLDM2``.
"""

from __future__ import annotations

from typing import Any

import torch

from javisdit.models.hub import resolve_weights
from javisdit.models.wan import umt5, vae  # noqa: F401  (register the text encoder and the video VAE)
from javisdit.models.wan.config import PRESETS, WanConfig, accepted_kwargs, make_config
from javisdit.models.wan.lora import load_wan_checkpoint, merge_lora
from javisdit.models.wan.model import WanModel
from javisdit.registry import MODELS
from javisdit.utils.dtype import torch_dtype

__all__ = ["PRESETS", "WanConfig", "WanModel", "build_wan", "load_wan_checkpoint", "merge_lora"]


def build_wan(preset: str = "1.3B", from_pretrained: str | None = None, lora_enabled: bool = True,
              lora_dir: str = "lora", base_ok: bool = False, dtype: torch.dtype | str | None = None,
              device: torch.device | str | None = None, **kwargs: Any) -> WanModel:
    """JavisDiT++'s DiT of a preset size; kwargs are the original constructor's (``configs/javisdit-v1-0``).

    Args:
        from_pretrained: a checkpoint folder or file (hub id, e.g. ``JavisVerse/JavisDiT-v1.0-jav``, or
            local), loaded strictly with its LoRA merged (``lora.load_wan_checkpoint``); None: random weights.
        lora_enabled: merge the checkpoint's LoRA (upstream ``lora_enabled``; ``audio_sample.py`` sets False).
        lora_dir: the adapter sub-folder (upstream ``--lora-dir``).
        base_ok: accept the base Wan2.1 DiT alone (training stages that start from it).
        dtype, device: where the tensors live (default fp32 on the CPU; the published model runs in bf16).
    """
    if isinstance(dtype, str):
        dtype = torch_dtype(dtype, key="model.dtype")
    config = make_config(preset, **kwargs)
    if from_pretrained is None:
        model = WanModel(config)
        return model.to(device=device, dtype=dtype) if dtype is not None or device is not None else model
    path = resolve_weights(from_pretrained, config_key="model.from_pretrained")
    if base_ok:  # the audio modules may be missing from the checkpoint: they keep a real initialisation
        model = WanModel(config).to(device=device, dtype=dtype)
    else:  # built without memory, each tensor read, cast and placed as it comes
        with torch.device("meta"):
            model = WanModel(config)
    load_wan_checkpoint(model, path, lora_enabled=lora_enabled, lora_dir=lora_dir, base_ok=base_ok, dtype=dtype,
                        device=device, source=str(from_pretrained))
    return model


def _factory(**kwargs: Any) -> WanModel:
    return build_wan(**kwargs)


_factory.__name__ = "Wan2_1_T2V_1_3B"
_factory.accepted_kwargs = accepted_kwargs() | {"preset", "from_pretrained", "lora_enabled", "lora_dir", "base_ok",
                                                 "dtype", "device"}
MODELS.register_module(name="Wan2_1_T2V_1_3B", module=_factory)
