"""The diffusion backbones: ``STDiT3-XL/2`` (Open-Sora 1.2 video DiT) and ``VASTDiT3-XL/2`` (JavisDiT),
plus ``-tiny`` presets for tests. Config kwargs are the original's; see ``config.py``."""

from __future__ import annotations

from typing import Any

from javisdit.models.stdit.config import PRESETS, STDiT3Config, VASTDiT3Config, make_config
from javisdit.models.stdit.stdit3 import STDiT3
from javisdit.models.stdit.vastdit3 import VASTDiT3
from javisdit.registry import MODELS

__all__ = ["STDiT3", "STDiT3Config", "VASTDiT3", "VASTDiT3Config", "build_stdit3", "build_vastdit3"]


def build_stdit3(preset: str = "XL/2", **kwargs: Any) -> STDiT3:
    """An STDiT3 of a preset size; kwargs override the preset (original constructor names)."""
    config, policy = make_config(STDiT3Config, preset, **kwargs)
    model = STDiT3(config)
    model.training_policy = policy
    return model


def build_vastdit3(preset: str = "XL/2", **kwargs: Any) -> VASTDiT3:
    """A VASTDiT3 of a preset size; kwargs override the preset (original constructor names).

    The freeze flags and ``weight_init_from`` do not change the architecture: they are kept in
    ``model.training_policy`` for ``javisdit.models.stdit.policy``.
    """
    config, policy = make_config(VASTDiT3Config, preset, **kwargs)
    model = VASTDiT3(config)
    model.training_policy = policy
    return model


def _register(family: str, builder, preset: str) -> None:
    def factory(**kwargs: Any):
        return builder(preset, **kwargs)

    factory.__name__ = f"{family}-{preset}"
    MODELS.register_module(name=f"{family}-{preset}", module=factory)


for _preset in PRESETS:
    _register("STDiT3", build_stdit3, _preset)
    _register("VASTDiT3", build_vastdit3, _preset)
