"""Configs: mmengine Python files, the scripts' command-line flags, and how the two are merged.

``parse_configs("inference")`` is what ``scripts/inference.py`` calls: it reads the config file (with its
``_base_`` fragments), writes each given flag into its merge targets (see ``flags.FLAGS``), applies
``--cfg-options`` and fills the script's defaults for keys the config leaves out.
"""

from __future__ import annotations

import argparse
import os
from collections.abc import Sequence
from typing import Any

from mmengine.config import Config, ConfigDict

from javisdit.config.defaults import DEFAULTS, SECTIONS, known_keys
from javisdit.config.flags import EXTRACT, FLAGS, INFERENCE, TRAINING, Flag, build_parser, flags_for, str2bool
from javisdit.config.overrides import apply_cfg_options, parse_value
from javisdit.errors import ConfigError

__all__ = [
    "FLAGS", "Flag", "apply_cfg_options", "build_parser", "check_config", "flags_for", "load_config", "merge_args",
    "parse_command_line", "parse_configs", "parse_value", "scope_of", "str2bool",
]


def scope_of(mode: str) -> str:
    """The flag scope of a script mode: ``inference``, ``extract`` (``scripts/misc/extract_feat.py``) or
    ``training`` (``train``, ``train_prior``)."""
    if mode not in DEFAULTS:
        raise ValueError(f"mode must be one of {sorted(DEFAULTS)}, got {mode!r}")
    return {"inference": INFERENCE, "extract": EXTRACT}.get(mode, TRAINING)


def load_config(path: str | os.PathLike) -> Config:
    """Read an mmengine Python config (``_base_`` fragments included).

    Raises:
        ConfigError: the file does not exist, is not a ``.py`` file, or cannot be executed.
    """
    path = os.fspath(path)
    if not os.path.isfile(path):
        raise ConfigError(f"config file not found: {path}")
    if not path.endswith(".py"):
        raise ConfigError(f"config files are Python files (.py); got {path}")
    try:
        return Config.fromfile(path)
    except Exception as err:  # mmengine wraps syntax and import errors in several types
        raise ConfigError(f"cannot read config {path}: {type(err).__name__}: {err}") from err


def _write(cfg: Config, flag: Flag, value: Any) -> None:
    written = []
    for path in flag.paths:
        *sections, key = path.split(".")
        node: Any = cfg  # the root is an mmengine Config; sections below it are dicts
        for name in sections:
            node = node.get(name)
            if not isinstance(node, dict):
                break
        else:
            node[key] = value
            written.append(path)
    if not written:
        sections = sorted({path.split(".")[0] for path in flag.paths})
        raise ConfigError(f"{flag.name} needs a config with a {' or '.join(sections)} section; this one has none")


def merge_args(cfg: Config, args: argparse.Namespace, mode: str) -> Config:
    """Write the flags given on the command line into ``cfg``, then fill in the script's defaults.

    Only flags that were given (not None) are written, so a config value is never replaced by a
    parser default. ``--cfg-options`` are applied after the flags, so they win.
    """
    cfg.config = args.config
    flags = flags_for(scope_of(mode), mode)
    for flag in flags:
        value = getattr(args, flag.dest)
        if value is not None:
            _write(cfg, flag, list(value) if isinstance(value, tuple) else value)
    defaults = DEFAULTS[mode]
    if args.cfg_options:
        apply_cfg_options(cfg, args.cfg_options, known_keys(mode))
    for key, value in defaults.items():
        if key not in cfg:
            cfg[key] = ConfigDict(value) if isinstance(value, dict) else value
    if mode == "inference" and cfg.get("save_fps") is None:
        cfg.save_fps = cfg.fps // cfg.frame_interval
    check_config(cfg, mode)
    return cfg


def check_config(cfg: Config, mode: str) -> None:
    """Refuse what the script of ``mode`` would not read: a top-level key it ignores, or an argument that
    a module spec's builder does not take (checked by name, before anything is built or loaded).

    Raises:
        ConfigError: naming the key and the config it came from.
    """
    from javisdit.registry import DATASETS, MODELS, SCHEDULERS, check_module_config

    source = cfg.get("config") or "the config"
    unknown = sorted(set(cfg.keys()) - known_keys(mode))
    if unknown:
        raise ConfigError(f"{source}: {', '.join(map(repr, unknown))} "
                          f"{'is' if len(unknown) == 1 else 'are'} not read by the {mode} script; remove "
                          f"{'it' if len(unknown) == 1 else 'them'}")
    registries = {"model": MODELS, "scheduler": SCHEDULERS, "dataset": DATASETS}
    for key, kind in SECTIONS.items():
        spec = cfg.get(key)
        if isinstance(spec, dict):
            check_module_config(spec, registries[kind], where=key)


def parse_command_line(
    mode: str, argv: Sequence[str] | None = None, prog: str | None = None
) -> tuple[Config, argparse.Namespace]:
    """Parse a script's command line: the merged config and the parsed arguments.

    Args:
        mode: ``inference``, ``train`` (stages 1 and 3), ``train_prior`` (stage 2) or ``extract``
            (feature extraction).
        argv: the arguments (default ``sys.argv[1:]``).
        prog: program name shown in ``--help``.

    Raises:
        SystemExit: on a malformed command line (argparse prints the error and the usage).
        ConfigError: a bad config file, a flag that has nowhere to go, or a bad ``--cfg-options``.
    """
    args = build_parser(scope_of(mode), prog=prog, mode=mode).parse_args(argv)
    return merge_args(load_config(args.config), args, mode), args


def parse_configs(mode: str, argv: Sequence[str] | None = None) -> Config:
    """The merged config of a script's command line (see ``parse_command_line``)."""
    return parse_command_line(mode, argv)[0]
