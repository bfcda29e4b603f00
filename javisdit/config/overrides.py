"""``--cfg-options KEY=VALUE``: typed overrides of any config value by its dotted path."""

from __future__ import annotations

import ast
from collections.abc import Iterable, Mapping, MutableMapping
from typing import Any

from javisdit.errors import ConfigError

_BOOLS = {"true": True, "yes": True, "false": False, "no": False}
_NONES = {"none", "null"}
# keys whose number may also be given per modality, e.g. scheduler.cfg_scale={'video':1.0,'audio':7.0}
_PER_MODALITY_NUMBERS = frozenset({"cfg_scale", "sync_guidance"})
# keys whose (low, high) pair may also be given per modality, e.g. {'video':[0.0,0.5],'audio':None}
_PER_MODALITY_PAIRS = frozenset({"cfg_interval"})


def parse_value(text: str) -> Any:
    """A Python literal (number, list, tuple, dict, quoted string), a boolean, None, or the raw text."""
    stripped = text.strip()
    lowered = stripped.lower()
    if lowered in _NONES:
        return None
    if lowered in _BOOLS:
        return _BOOLS[lowered]
    try:
        return ast.literal_eval(stripped)
    except (ValueError, SyntaxError, MemoryError, RecursionError):
        return stripped


def _coerce(path: str, current: Any, value: Any, raw: str) -> Any:
    """``value`` converted to the type of ``current``, or a ConfigError naming ``path``."""

    def fail(expected: str) -> ConfigError:
        return ConfigError(f"--cfg-options {path}={raw}: expected {expected} (the config holds {current!r})")

    if current is None or value is None:
        return value
    leaf = path.rpartition(".")[2]
    if leaf in _PER_MODALITY_NUMBERS and isinstance(value, (Mapping, int, float)) and not isinstance(value, bool):
        numbers = value.values() if isinstance(value, Mapping) else [value]
        if all(isinstance(v, (int, float)) and not isinstance(v, bool) for v in numbers):
            return {k: float(v) for k, v in value.items()} if isinstance(value, Mapping) else float(value)
        raise fail("a number, or one per modality, e.g. {'video':1.0,'audio':7.0}")
    if leaf in _PER_MODALITY_PAIRS and isinstance(value, (Mapping, list, tuple)):
        pairs = value.values() if isinstance(value, Mapping) else [value]
        if all(v is None or (isinstance(v, (list, tuple)) and len(v) == 2) for v in pairs):
            return {k: None if v is None else tuple(v) for k, v in value.items()} if isinstance(value, Mapping) \
                else tuple(value)
        raise fail("a pair [low,high], or one per modality, e.g. {'video':[0.0,0.5],'audio':None}")
    if isinstance(current, bool):
        if isinstance(value, bool):
            return value
        if isinstance(value, int) and value in (0, 1):
            return bool(value)
        raise fail("a boolean (true/false, yes/no, 1/0)")
    if isinstance(current, int):
        if isinstance(value, int) and not isinstance(value, bool):
            return value
        raise fail("an integer")
    if isinstance(current, float):
        if isinstance(value, (int, float)) and not isinstance(value, bool):
            return float(value)
        raise fail("a number")
    if isinstance(current, (list, tuple)):
        if isinstance(value, (list, tuple)):
            return type(current)(value)
        raise fail("a list, e.g. [1,2]")
    if isinstance(current, Mapping):
        if isinstance(value, Mapping):
            return value
        raise fail("a dict, e.g. {'a':1}")
    if isinstance(current, str):
        return raw.strip()  # a text slot keeps the text: resolution=256 stays "256", num_frames=102 "102"
    return value


def _lookup_key(section: Mapping[str, Any], part: str) -> Any:
    """``part`` as a key of ``section``; digits also match integer keys (bucket configs use them)."""
    if part in section:
        return part
    if part.lstrip("-").isdigit() and int(part) in section:
        return int(part)
    return None


def apply_cfg_options(cfg: MutableMapping[str, Any], options: Iterable[str], known_top_level: Iterable[str]) -> None:
    """Apply ``KEY=VALUE`` overrides to ``cfg`` in place.

    A path is valid when every section along it exists in the config and the last key either exists
    or belongs to a module spec (a dict with a ``type``, whose keyword arguments are open) or, at the
    top level, to ``known_top_level``. A value replacing an existing one must have a compatible type.

    Raises:
        ConfigError: a malformed option, an unknown path, or a value of the wrong type.
    """
    known = set(known_top_level)
    for option in options:
        key, sep, raw = option.partition("=")
        path = key.strip()
        if not sep or not path or any(not part for part in path.split(".")):
            raise ConfigError(f"--cfg-options {option!r}: expected KEY=VALUE with a dotted KEY, e.g. model.depth=2")
        parts = path.split(".")
        section: MutableMapping[str, Any] = cfg
        for depth, part in enumerate(parts[:-1]):
            found = _lookup_key(section, part)
            if found is None or not isinstance(section[found], MutableMapping):
                where = ".".join(parts[: depth + 1])
                raise ConfigError(f"--cfg-options {path}: the config has no section {where!r}")
            section = section[found]
        leaf = parts[-1]
        found = _lookup_key(section, leaf)
        if found is None:
            open_section = "type" in section if section is not cfg else leaf in known
            if not open_section:
                where = f"section {'.'.join(parts[:-1])!r}" if len(parts) > 1 else "the config"
                raise ConfigError(f"--cfg-options {path}: unknown key {leaf!r} in {where}")
            found = leaf
        value = parse_value(raw)
        section[found] = _coerce(path, section.get(found), value, raw)
