"""Registries that turn config dicts into objects, keyed by the original config ``type`` names.

``MODELS`` holds the networks and frozen encoders (``VASTDiT3-XL/2``, ``STDiT3-XL/2``, ``STIBPrior``,
``OpenSoraVAE_V1_2``, ``AudioLDM2``, ``t5``, and JavisDiT++'s ``Wan2_1_T2V_1_3B``, ``Wan2_1_T2V_1_3B_VAE``,
``Wan2_1_T2V_1_3B_t5_umt5``), ``SCHEDULERS`` the diffusion schedulers (``rflow``) and
``DATASETS`` the datasets (``VariableVideoAudioTextDataset``, ``BatchFeatureDataset``). Each registry
imports its package lazily the first time a name is looked up, so importing this module is cheap.
"""

from __future__ import annotations

import copy
import inspect
from collections.abc import Mapping
from typing import Any

from mmengine.registry import Registry

from javisdit.errors import ConfigError

MODELS = Registry("model", locations=["javisdit.models"])
SCHEDULERS = Registry("scheduler", locations=["javisdit.schedulers"])
DATASETS = Registry("dataset", locations=["javisdit.datasets"])


def registered_names(registry: Registry) -> list[str]:
    """Sorted names registered in ``registry`` (after importing its package)."""
    registry.import_from_location()
    return sorted(registry.module_dict)


def build_module(cfg: Mapping[str, Any] | Any | None, registry: Registry, **overrides: Any) -> Any:
    """Build an object from a config dict, or pass an already-built object (or None) through.

    Args:
        cfg: ``dict(type=<registered name>, **kwargs)``; an already-built object, returned unchanged
            (``overrides`` must then be empty); or ``None``, returned as ``None``.
        registry: where ``type`` is looked up.
        **overrides: keyword arguments that replace or add to those of ``cfg``; the config itself is
            never modified.

    Raises:
        ConfigError: ``cfg`` has no ``type``, or names a type that is not registered.
    """
    if cfg is None:
        return None
    if not isinstance(cfg, Mapping):
        if overrides:
            raise ConfigError(
                f"cannot apply {sorted(overrides)} to an already-built {type(cfg).__name__}; "
                "pass a config dict instead"
            )
        return cfg
    kwargs = copy.deepcopy(dict(cfg))
    kwargs.update(overrides)
    name = kwargs.pop("type", None)
    if name is None:
        raise ConfigError(f"a {registry.name} config needs a 'type' key; got keys {sorted(kwargs)}")
    target = registry.get(name) if isinstance(name, str) else name
    if target is None:
        raise ConfigError(
            f"unknown {registry.name} type {name!r}; registered: {', '.join(registered_names(registry)) or 'none'}"
        )
    return target(**kwargs)


def accepted_kwargs(target: Any) -> frozenset[str] | None:
    """The keyword arguments a registered builder accepts, or None when they cannot be known.

    A builder that takes ``**kwargs`` (e.g. the DiT presets, which forward them to a config dataclass)
    lists its names in an ``accepted_kwargs`` attribute; other builders are read from their signature.
    """
    declared = getattr(target, "accepted_kwargs", None)
    if declared is not None:
        return frozenset(declared)
    try:
        signature = inspect.signature(target)
    except (TypeError, ValueError):
        return None
    params = signature.parameters.values()
    if any(p.kind is inspect.Parameter.VAR_KEYWORD for p in params):
        return None
    return frozenset(p.name for p in params if p.kind in (p.POSITIONAL_OR_KEYWORD, p.KEYWORD_ONLY))


def check_module_config(cfg: Mapping[str, Any], registry: Registry, where: str, provided: tuple[str, ...] = ()) -> None:
    """Check a module spec without building it: its ``type`` is registered and every key is an argument
    of that builder, so a typo (``model.dept=2``) is an error before any weights are read.

    Args:
        where: the config key of the spec, quoted in errors (``model``, ``prior_encoder``, ...).
        provided: arguments the scripts pass themselves (they may not appear in a config).

    Raises:
        ConfigError: no ``type``, an unregistered ``type``, or unknown argument names (valid ones listed).
    """
    kwargs = dict(cfg)
    name = kwargs.pop("type", None)
    if name is None:
        raise ConfigError(f"{where}: a {registry.name} config needs a 'type' key; got keys {sorted(kwargs)}")
    target = registry.get(name) if isinstance(name, str) else name
    if target is None:
        raise ConfigError(f"{where}: unknown {registry.name} type {name!r}; registered: "
                          f"{', '.join(registered_names(registry)) or 'none'}")
    accepted = accepted_kwargs(target)
    if accepted is None:
        return
    unknown = sorted(set(kwargs) - accepted - set(provided))
    if unknown:
        valid = ", ".join(sorted(accepted - set(provided)))
        raise ConfigError(f"{where}: {name} has no argument {', '.join(map(repr, unknown))}; valid: {valid}")
