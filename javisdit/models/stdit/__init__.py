"""The diffusion backbones: ``STDiT3-XL/2`` (Open-Sora 1.2 video DiT) and ``VASTDiT3-XL/2`` (JavisDiT),
plus ``-tiny`` presets for tests. Config kwargs are the original's; see ``config.py``."""

from __future__ import annotations

import dataclasses
from typing import Any

import torch

from javisdit.models.loading import load_state_dict_checked, read_config, read_state_dict, resolve_weights
from javisdit.models.stdit.config import PRESETS, STDiT3Config, VASTDiT3Config, make_config
from javisdit.models.stdit.stdit3 import STDiT3
from javisdit.models.stdit.vastdit3 import VASTDiT3
from javisdit.registry import MODELS

__all__ = ["STDiT3", "STDiT3Config", "VASTDiT3", "VASTDiT3Config", "build_stdit3", "build_vastdit3"]


def _build(model_cls: type[STDiT3], config_cls: type[STDiT3Config], preset: str, from_pretrained: str | None,
           kwargs: dict[str, Any]) -> STDiT3:
    if from_pretrained is None:
        config, policy = make_config(config_cls, preset, **kwargs)
        model = model_cls(config)
    else:
        # A published or trained checkpoint: its config.json (if any) under the given kwargs, weights
        # loaded strictly into a model built on the meta device (no memory spent on a random init).
        path = resolve_weights(from_pretrained, config_key="model.from_pretrained")
        fields = {f.name for f in dataclasses.fields(config_cls)}
        stored = {k: v for k, v in read_config(path).items() if k in fields}
        config, policy = make_config(config_cls, preset, **{**stored, **kwargs})
        with torch.device("meta"):
            model = model_cls(config)
        load_state_dict_checked(model, read_state_dict(path), source=str(from_pretrained), assign=True)
    model.training_policy = policy
    return model


def build_stdit3(preset: str = "XL/2", from_pretrained: str | None = None, **kwargs: Any) -> STDiT3:
    """An STDiT3 of a preset size; kwargs override the preset (original constructor names)."""
    return _build(STDiT3, STDiT3Config, preset, from_pretrained, kwargs)


def build_vastdit3(preset: str = "XL/2", from_pretrained: str | None = None, **kwargs: Any) -> VASTDiT3:
    """A VASTDiT3 of a preset size; kwargs override the preset (original constructor names).

    ``from_pretrained`` (hub id, folder or file) loads weights strictly, on top of the checkpoint's
    ``config.json``. The freeze flags and ``weight_init_from`` do not change the architecture: they
    are kept in ``model.training_policy`` for ``javisdit.models.stdit.policy``.
    """
    return _build(VASTDiT3, VASTDiT3Config, preset, from_pretrained, kwargs)  # type: ignore[return-value]


def _register(family: str, builder, preset: str) -> None:
    def factory(**kwargs: Any):
        return builder(preset, **kwargs)

    factory.__name__ = f"{family}-{preset}"
    MODELS.register_module(name=f"{family}-{preset}", module=factory)


for _preset in PRESETS:
    _register("STDiT3", build_stdit3, _preset)
    _register("VASTDiT3", build_vastdit3, _preset)
