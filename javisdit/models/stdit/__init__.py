"""The diffusion backbones: ``STDiT3-XL/2`` (Open-Sora 1.2 video DiT) and ``VASTDiT3-XL/2`` (JavisDiT),
plus ``-tiny`` presets for tests. Config kwargs are the original's; see ``config.py``."""

from __future__ import annotations

import dataclasses
from typing import Any

import torch

from javisdit.models.loading import load_state_dict_checked, open_state_dict, read_config, resolve_weights
from javisdit.models.stdit.config import PRESETS, STDiT3Config, VASTDiT3Config, accepted_kwargs, make_config
from javisdit.models.stdit.stdit3 import STDiT3
from javisdit.models.stdit.vastdit3 import VASTDiT3
from javisdit.registry import MODELS
from javisdit.utils.dtype import torch_dtype

__all__ = ["STDiT3", "STDiT3Config", "VASTDiT3", "VASTDiT3Config", "build_stdit3", "build_vastdit3"]


def _build(model_cls: type[STDiT3], config_cls: type[STDiT3Config], preset: str, from_pretrained: str | None,
           kwargs: dict[str, Any], dtype: torch.dtype | str | None, device: torch.device | str | None) -> STDiT3:
    if isinstance(dtype, str):
        dtype = torch_dtype(dtype, key="model.dtype")
    if from_pretrained is None:
        config, policy = make_config(config_cls, preset, **kwargs)
        model = model_cls(config)
        if dtype is not None or device is not None:
            model = model.to(device=device, dtype=dtype)
    else:
        # A published or trained checkpoint: its config.json (if any) under the given kwargs; the model is
        # built on the meta device (no memory, no random init) and each tensor is read from the files, cast
        # and placed where it runs, one at a time (no whole-file or full-precision copy of the model).
        path = resolve_weights(from_pretrained, config_key="model.from_pretrained")
        fields = {f.name for f in dataclasses.fields(config_cls)}
        stored = {k: v for k, v in read_config(path).items() if k in fields}
        config, policy = make_config(config_cls, preset, **{**stored, **kwargs})
        with torch.device("meta"):
            model = model_cls(config)
        load_state_dict_checked(model, open_state_dict(path), source=str(from_pretrained), dtype=dtype, device=device)
    model.training_policy = policy
    return model


def build_stdit3(preset: str = "XL/2", from_pretrained: str | None = None, dtype: torch.dtype | str | None = None,
                 device: torch.device | str | None = None, **kwargs: Any) -> STDiT3:
    """An STDiT3 of a preset size; kwargs override the preset (original constructor names). ``dtype`` and
    ``device``: where the model's tensors live (default fp32 on the CPU)."""
    return _build(STDiT3, STDiT3Config, preset, from_pretrained, kwargs, dtype, device)


def build_vastdit3(preset: str = "XL/2", from_pretrained: str | None = None, dtype: torch.dtype | str | None = None,
                   device: torch.device | str | None = None, **kwargs: Any) -> VASTDiT3:
    """A VASTDiT3 of a preset size; kwargs override the preset (original constructor names).

    ``from_pretrained`` (hub id, folder or file) loads weights strictly, on top of the checkpoint's
    ``config.json``, directly in ``dtype`` on ``device`` (default fp32 on the CPU). The freeze flags and
    ``weight_init_from`` do not change the architecture: they are kept in ``model.training_policy`` for
    ``javisdit.models.stdit.policy``.
    """
    return _build(VASTDiT3, VASTDiT3Config, preset, from_pretrained, kwargs, dtype, device)  # type: ignore[return-value]


def _register(family: str, builder, config_cls: type[STDiT3Config], preset: str) -> None:
    def factory(**kwargs: Any):
        return builder(preset, **kwargs)

    factory.__name__ = f"{family}-{preset}"
    # what a config may pass: checked by name while the scripts parse, before anything is built
    factory.accepted_kwargs = accepted_kwargs(config_cls) | {"from_pretrained", "dtype", "device"}
    MODELS.register_module(name=f"{family}-{preset}", module=factory)


for _preset in PRESETS:
    _register("STDiT3", build_stdit3, STDiT3Config, _preset)
    _register("VASTDiT3", build_vastdit3, VASTDiT3Config, _preset)
