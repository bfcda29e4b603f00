"""The one weight loader: a local folder or a single file (or a hub id, through ``javisdit.models.hub``),
loaded strictly.

``read_state_dict`` reads ``*.safetensors`` (single or sharded with an index) or ``pytorch_model*.bin``
(with ``weights_only=True``), from a file, a folder, or a training run's ``model/`` sub-folder;
``open_state_dict`` indexes the same files without reading them, for loading one tensor at a time.
``load_state_dict_checked`` loads with every missing, unexpected or mis-shaped key reported by name, into
a model with real tensors or one built on the meta device (each tensor read, cast and placed as it
comes). ``build_partly_on_meta`` builds a model whose checkpoint-covered parts stay on the meta device.
"""

from __future__ import annotations

import json
import logging
import os
import re
from collections.abc import Callable, Collection, Iterable, Mapping
from dataclasses import dataclass, field
from pathlib import Path

import torch
from torch import nn

from javisdit.errors import MissingWeightsError, WeightsMismatchError
from javisdit.models.hub import current_hub_id, is_hub_id, resolve_weights

logger = logging.getLogger(__name__)

__all__ = [  # the hub lookup and the errors live in javisdit.models.hub / javisdit.errors; callers import them here
    "MissingWeightsError", "StoredTensor", "WeightsMismatchError", "build_partly_on_meta", "check_materialized",
    "close_files", "current_hub_id", "is_hub_id", "latest_checkpoint", "load_state_dict_checked", "open_state_dict",
    "read_config", "read_state_dict", "resolve_weights", "save_pretrained", "set_tensor", "weight_files",
]

_WEIGHT_FILES = ("model.safetensors", "diffusion_pytorch_model.safetensors", "pytorch_model.bin",
                 "diffusion_pytorch_model.bin")
_INDEX_FILES = ("model.safetensors.index.json", "diffusion_pytorch_model.safetensors.index.json",
                "pytorch_model.bin.index.json")


def _cast(state: dict[str, torch.Tensor], dtype: torch.dtype | None) -> dict[str, torch.Tensor]:
    if dtype is None:
        return state
    return {k: v.to(dtype) if v.is_floating_point() else v for k, v in state.items()}


def _read_file(path: Path, dtype: torch.dtype | None = None) -> dict[str, torch.Tensor]:
    return _cast(_read_file_raw(path), dtype)


def _unwrap_container(state):
    for key in ("state_dict", "module", "model"):  # training containers
        if isinstance(state, Mapping) and key in state and isinstance(state[key], Mapping):
            state = state[key]
    return state


def _read_file_raw(path: Path) -> dict[str, torch.Tensor]:
    if path.suffix == ".safetensors":
        from safetensors.torch import load_file

        return load_file(str(path))
    if path.suffix in (".bin", ".pt", ".pth"):
        return dict(_unwrap_container(torch.load(path, map_location="cpu", weights_only=True)))
    raise WeightsMismatchError(f"unsupported weights file {path} (use .safetensors, .bin, .pt or .pth)")


_CHECKPOINT_NAME = re.compile(r"^epoch(\d+)-global_step(\d+)$")


def latest_checkpoint(folder: str | os.PathLike) -> Path | None:
    """The ``epochEEE-global_stepS`` checkpoint of a training run folder with the highest step, if any."""
    found = [(int(m.group(2)), p) for p in Path(folder).iterdir()
             if p.is_dir() and (m := _CHECKPOINT_NAME.match(p.name))] if Path(folder).is_dir() else []
    return max(found)[1] if found else None


def _weights_folder(path: Path) -> Path:
    """A training run folder stands for its latest checkpoint, a checkpoint for its ``model/``."""
    if path.is_dir() and not (path / "model").is_dir() and (latest := latest_checkpoint(path)) is not None:
        path = latest
    return path / "model" if (path / "model").is_dir() else path


def weight_files(path: str | os.PathLike) -> list[Path]:
    """The weights files of a file or folder, as ``read_state_dict`` finds them (shards in index order).

    Raises:
        MissingWeightsError: the path or a shard does not exist, or a folder holds no weights.
    """
    path = Path(path)
    if path.is_file():
        return [path]
    if not path.is_dir():
        raise MissingWeightsError(f"no such file or folder: {path}")
    path = _weights_folder(path)
    for name in _INDEX_FILES:
        index = path / name
        if index.is_file():
            shards = sorted(set(json.loads(index.read_text())["weight_map"].values()))
            for shard in shards:
                if not (path / shard).is_file():
                    raise MissingWeightsError(f"{index} lists the shard {shard}, which is missing")
            return [path / shard for shard in shards]
    for name in _WEIGHT_FILES:
        if (path / name).is_file():
            return [path / name]
    raise MissingWeightsError(
        f"no weights in {path}: expected one of {', '.join(_WEIGHT_FILES)}, a sharded index "
        f"({', '.join(_INDEX_FILES)}) or a model/ sub-folder"
    )


def read_state_dict(path: str | os.PathLike, dtype: torch.dtype | None = None) -> dict[str, torch.Tensor]:
    """All tensors of a weights file or folder (CPU); floating-point ones cast to ``dtype`` shard by shard
    when given (so a bf16 load of fp32 shards never holds the whole fp32 model).

    A folder holds one of ``model.safetensors``, ``diffusion_pytorch_model.safetensors``,
    ``pytorch_model.bin``, or shards listed by a ``*.index.json``; a training checkpoint folder holds
    them in ``model/``, and a training run folder (``runs/NNN-Model``) means its latest checkpoint.
    To load a large model without holding a whole file, use ``open_state_dict``.

    Raises:
        MissingWeightsError: the path or a shard does not exist, or a folder holds no weights.
    """
    state: dict[str, torch.Tensor] = {}
    for file in weight_files(path):
        state.update(_read_file(file, dtype))
    return state


# ----- reading one tensor at a time ---------------------------------------------------------------------

_SAFETENSORS_DTYPES = {"F64": torch.float64, "F32": torch.float32, "F16": torch.float16, "BF16": torch.bfloat16,
                       "I64": torch.int64, "I32": torch.int32, "I16": torch.int16, "I8": torch.int8,
                       "U8": torch.uint8, "BOOL": torch.bool}
#: ``safe_open`` maps the whole file and every page read through the mapping stays resident while it
#: lives: re-opening after this many bytes (and keeping one file open at a time) keeps a 15 GB checkpoint
#: from adding 15 GB of resident pages.
_MAPPED_BYTES = 64 << 20
_TORCH_MAPPED_BYTES = 1 << 30


def _converted(tensor: torch.Tensor, dtype: torch.dtype | None, device: torch.device | str | None) -> torch.Tensor:
    """A copy of ``tensor`` that owns its memory (never a view of a mapped file), floating-point values
    cast to ``dtype``."""
    dtype = dtype if dtype is not None and tensor.is_floating_point() else tensor.dtype
    return tensor.to(device=device if device is not None else "cpu", dtype=dtype, copy=True)


class _SafetensorsFile:
    _open_file: _SafetensorsFile | None = None  # the one file mapped at a time

    def __init__(self, path: Path):
        self.path = path
        self._context = self._handle = None
        self._mapped = 0

    def _open(self):
        if self._handle is None:
            from safetensors import safe_open

            if _SafetensorsFile._open_file is not None:
                _SafetensorsFile._open_file.close()
            self._context = safe_open(str(self.path), framework="pt")
            self._handle = self._context.__enter__()
            _SafetensorsFile._open_file = self
        return self._handle

    def close(self) -> None:
        if self._context is not None:
            self._context.__exit__(None, None, None)
        self._context = self._handle = None
        self._mapped = 0
        if _SafetensorsFile._open_file is self:
            _SafetensorsFile._open_file = None

    def header(self) -> dict[str, tuple[torch.Size, torch.dtype | None]]:
        handle = self._open()
        entries = {}
        for key in handle.keys():
            info = handle.get_slice(key)
            entries[key] = (torch.Size(info.get_shape()), _SAFETENSORS_DTYPES.get(info.get_dtype()))
        self.close()
        return entries

    def read(self, key: str, dtype: torch.dtype | None, device) -> torch.Tensor:
        stored = self._open().get_tensor(key)
        self._mapped += stored.numel() * stored.element_size()
        tensor = _converted(stored, dtype, device)
        del stored
        if self._mapped >= _MAPPED_BYTES:
            self.close()
        return tensor


class _TorchFile:
    """A ``*.bin``/``*.pt`` file, memory-mapped by ``torch.load``; the mapping is dropped (and the file
    loaded again when needed) after ``_TORCH_MAPPED_BYTES``: unpickling costs more than ``safe_open``."""

    def __init__(self, path: Path):
        self.path = path
        self._tensors: dict[str, torch.Tensor] | None = None
        self._mapped, self._mmap = 0, True
        self._header = {key: (tensor.shape, tensor.dtype) for key, tensor in self._load().items()}
        self.close()

    def _load(self) -> dict[str, torch.Tensor]:
        if self._tensors is None:
            try:  # memory-mapped: a tensor's pages are read when it is converted
                state = torch.load(self.path, map_location="cpu", weights_only=True, mmap=self._mmap)
            except RuntimeError:  # the legacy (non-zip) format cannot be mapped: read whole
                self._mmap = False
                state = torch.load(self.path, map_location="cpu", weights_only=True)
            self._tensors = {k: v for k, v in _unwrap_container(state).items() if isinstance(v, torch.Tensor)}
        return self._tensors

    def header(self) -> dict[str, tuple[torch.Size, torch.dtype | None]]:
        return self._header

    def read(self, key: str, dtype: torch.dtype | None, device) -> torch.Tensor:
        stored = self._load()[key]
        self._mapped += stored.numel() * stored.element_size()
        tensor = _converted(stored, dtype, device)
        if self._mmap and self._mapped >= _TORCH_MAPPED_BYTES:
            self.close()
        return tensor

    def close(self) -> None:
        self._tensors = None
        self._mapped = 0


@dataclass(frozen=True, eq=False)
class StoredTensor:
    """A tensor of a weights file, read only when ``load`` is called (shape and dtype from the header)."""

    file: _SafetensorsFile | _TorchFile
    key: str
    shape: torch.Size
    dtype: torch.dtype | None

    def load(self, dtype: torch.dtype | None = None, device: torch.device | str | None = None) -> torch.Tensor:
        """The tensor in memory it owns, floating-point values cast to ``dtype`` as they are read."""
        return self.file.read(self.key, dtype, device)


def open_state_dict(path: str | os.PathLike) -> dict[str, StoredTensor]:
    """The keys of a weights file or folder (found as ``read_state_dict`` finds them), each a
    ``StoredTensor`` read on demand; only the files' headers are read here.

    Safetensors files are read through ``safetensors.safe_open``, ``*.bin``/``*.pt`` files through a
    memory-mapped ``torch.load(weights_only=True)``.

    Raises:
        MissingWeightsError: the path or a shard does not exist, or a folder holds no weights.
        WeightsMismatchError: a file of an unsupported kind.
    """
    state: dict[str, StoredTensor] = {}
    for name in weight_files(path):
        if name.suffix == ".safetensors":
            file: _SafetensorsFile | _TorchFile = _SafetensorsFile(name)
        elif name.suffix in (".bin", ".pt", ".pth"):
            file = _TorchFile(name)
        else:
            raise WeightsMismatchError(f"unsupported weights file {name} (use .safetensors, .bin, .pt or .pth)")
        for key, (shape, dtype) in file.header().items():
            state[key] = StoredTensor(file, key, shape, dtype)
    return state


def read_config(path: str | os.PathLike) -> dict:
    """The ``config.json`` beside the weights (found as ``read_state_dict`` finds them), or ``{}``."""
    path = Path(path)
    for folder in (_weights_folder(path),) if path.is_dir() else (path.parent,):
        if (folder / "config.json").is_file():
            return json.loads((folder / "config.json").read_text())
    return {}


@dataclass
class LoadReport:
    missing: list[str] = field(default_factory=list)
    unexpected: list[str] = field(default_factory=list)
    mismatched: list[str] = field(default_factory=list)

    def __bool__(self) -> bool:
        return bool(self.missing or self.unexpected or self.mismatched)

    def describe(self, limit: int = 20) -> str:
        parts = []
        for title, keys in (("missing", self.missing), ("unexpected", self.unexpected), ("mis-shaped", self.mismatched)):
            if keys:
                shown = ", ".join(keys[:limit]) + (f", ... ({len(keys) - limit} more)" if len(keys) > limit else "")
                parts.append(f"{len(keys)} {title}: {shown}")
        return "; ".join(parts)


def load_state_dict_checked(
    model: nn.Module,
    state_dict: Mapping[str, torch.Tensor | StoredTensor],
    source: str = "checkpoint",
    allow_missing: Iterable[str] = (),
    ignore_unexpected: Iterable[str] = (),
    assign: bool = False,
    dtype: torch.dtype | None = None,
    device: torch.device | str | None = None,
) -> LoadReport:
    """Load ``state_dict`` into ``model``; any key problem outside the allow-lists is an error.

    ``state_dict`` holds tensors or the ``StoredTensor`` entries of ``open_state_dict``; the latter are
    read one at a time, each cast on reading, so loading never holds a second copy of the model. Tensors
    of a model built on the meta device are replaced by the loaded ones; real tensors are overwritten
    in place.

    Args:
        allow_missing: key prefixes the checkpoint may lack (their current values are kept).
        ignore_unexpected: key prefixes of the checkpoint to skip (e.g. another model's parts).
        assign: take the checkpoint tensors as they are (dtype and device as stored unless given).
        dtype, device: those of the tensors that replace meta ones, floating-point values cast as they
            are read (default: the model's dtype, the CPU); real tensors keep theirs.

    Raises:
        WeightsMismatchError: listing the missing, unexpected and mis-shaped keys by name, or the
            tensors of a meta-built model that the checkpoint does not fill.
    """
    state = dict(state_dict)
    fill = getattr(model, "fill_derived_keys", None)
    if fill is not None:
        fill(state)
    own = model.state_dict()
    allow_missing, ignore_unexpected = tuple(allow_missing), tuple(ignore_unexpected)
    report = LoadReport(
        missing=[k for k in own if k not in state and not k.startswith(allow_missing)],
        unexpected=[k for k in state if k not in own and not k.startswith(ignore_unexpected)],
        mismatched=[f"{k} {list(state[k].shape)} vs {list(own[k].shape)}" for k in own
                    if k in state and state[k].shape != own[k].shape],
    )
    if report:
        raise WeightsMismatchError(f"{source} does not fit {type(model).__name__}: {report.describe()}")
    state = {k: v for k, v in state.items() if k in own}
    skipped = [k for k in own if k not in state]
    if skipped:
        logger.info("%s: %d tensors not in the checkpoint keep their values (%s...)", source, len(skipped), skipped[0])
    streamed = any(isinstance(v, StoredTensor) for v in state.values()) or any(t.is_meta for t in own.values())
    if not streamed and dtype is None and device is None:
        # Non-strict only when allow-listed keys are absent (checked above): nothing else can be missing here.
        model.load_state_dict(state, strict=not skipped, assign=assign)
        return report
    for key, value in state.items():
        set_tensor(model, key, value, dtype=dtype, device=device, assign=assign)
    close_files(state)
    check_materialized(model, source)
    return report


def close_files(state_dict: Mapping[str, object]) -> None:
    """Release the files behind the ``StoredTensor`` entries of ``state_dict`` (they re-open if read again)."""
    for file in {id(v.file): v.file for v in state_dict.values() if isinstance(v, StoredTensor)}.values():
        file.close()


def set_tensor(model: nn.Module, key: str, value: torch.Tensor | StoredTensor, dtype: torch.dtype | None = None,
               device: torch.device | str | None = None, assign: bool = False) -> None:
    """Put ``value`` (read now if stored) at state-dict key ``key`` of ``model``.

    A meta tensor (or any, with ``assign``) is replaced by the value, cast to ``dtype`` (default: the
    model tensor's dtype, or the stored one with ``assign``) on ``device`` (default: the CPU); a parameter
    keeps its ``requires_grad``. A real tensor is overwritten in place (cast to its dtype).
    """
    module_name, _, name = key.rpartition(".")
    module = model.get_submodule(module_name)
    current = getattr(module, name)
    if not (current.is_meta or assign):
        with torch.no_grad():
            current.copy_(value.load(current.dtype) if isinstance(value, StoredTensor) else value)
        return
    if not assign and dtype is None and current.is_floating_point():
        dtype = current.dtype
    if isinstance(value, StoredTensor):
        tensor = value.load(dtype, device)
    elif assign:
        target = dtype if dtype is not None and value.is_floating_point() else value.dtype
        tensor = value.to(device=device if device is not None else value.device, dtype=target)
    else:  # a copy: two keys may name the same source tensor (e.g. a video block seeding an audio block)
        tensor = _converted(value, dtype, device)
    if isinstance(current, nn.Parameter):
        tensor = nn.Parameter(tensor, requires_grad=current.requires_grad)
    setattr(module, name, tensor)


def check_materialized(model: nn.Module, source: str = "checkpoint") -> None:
    """Raise unless every parameter and buffer of ``model`` holds data (none left on the meta device).

    Raises:
        WeightsMismatchError: naming the tensors that neither the checkpoint nor an initialisation filled.
    """
    left = [name for name, tensor in (*model.named_parameters(), *model.named_buffers()) if tensor.is_meta]
    if left:
        shown = ", ".join(left[:20]) + (f", ... ({len(left) - 20} more)" if len(left) > 20 else "")
        raise WeightsMismatchError(f"{source}: {len(left)} tensors of {type(model).__name__} are neither in the "
                                   f"checkpoint nor initialised by the model: {shown}")


def build_partly_on_meta(build: Callable[[], nn.Module], layout: nn.Module, on_meta: Collection[str]) -> nn.Module:
    """``build()`` with the top-level submodules named in ``on_meta`` constructed on the meta device (no
    memory, no initialisation) and the others as usual: allocated and initialised by the model's own
    code, random values drawn from the global RNG.

    ``layout`` is the same model built on the meta device: its submodules, in registration order, say
    which submodule is being constructed between two registrations, and the default device is switched
    as the model registers each one. Initialisation that reads a meta submodule into a real one fails
    (the caller keeps such a pair real together).

    Raises:
        RuntimeError: the model did not register its submodules in the order of ``layout``.
    """
    from torch.nn.modules.module import register_module_module_registration_hook

    names = [name for name, _ in layout.named_children()]
    model_type = type(layout)
    position, context = 0, None

    def enter(index: int) -> None:
        nonlocal context
        if context is not None:
            context.__exit__(None, None, None)
            context = None
        if index < len(names) and names[index] in on_meta:
            context = torch.device("meta")
            context.__enter__()

    def registered(parent: nn.Module, name: str, child: nn.Module | None) -> None:
        nonlocal position
        if isinstance(parent, model_type) and position < len(names) and name == names[position]:
            position += 1
            enter(position)

    handle = register_module_module_registration_hook(registered)
    enter(0)
    try:
        model = build()
    finally:
        enter(len(names))
        handle.remove()
    if position != len(names):
        raise RuntimeError(f"{model_type.__name__} registered its submodules in another order than {names}")
    return model


def save_pretrained(model: nn.Module, folder: str | os.PathLike, config: Mapping | None = None,
                    max_shard_bytes: int | None = None, state_dict: Mapping[str, torch.Tensor] | None = None) -> Path:
    """Write ``model`` (or the given subset of its ``state_dict``) as ``config.json`` + ``model.safetensors``
    (or shards with an index), the layout ``from_pretrained`` reads back. Tied weights are stored once."""
    from safetensors.torch import save_file

    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    if config is not None:
        (folder / "config.json").write_text(json.dumps(dict(config), indent=2) + "\n")
    state, seen = {}, set()
    for key, tensor in (model.state_dict() if state_dict is None else state_dict).items():
        pointer = (tensor.data_ptr(), tuple(tensor.shape))
        if pointer in seen and tensor.numel():  # a tied weight: stored once, like transformers does
            continue
        seen.add(pointer)
        state[key] = tensor.detach().contiguous().cpu()
    if max_shard_bytes is None:
        save_file(state, str(folder / "model.safetensors"), metadata={"format": "pt"})
        return folder
    shards: list[dict[str, torch.Tensor]] = [{}]
    size = 0
    for key, tensor in state.items():
        nbytes = tensor.numel() * tensor.element_size()
        if shards[-1] and size + nbytes > max_shard_bytes:
            shards.append({})
            size = 0
        shards[-1][key] = tensor
        size += nbytes
    weight_map = {}
    for i, shard in enumerate(shards, start=1):
        name = f"model-{i:05d}-of-{len(shards):05d}.safetensors"
        save_file(shard, str(folder / name), metadata={"format": "pt"})
        weight_map.update({key: name for key in shard})
    (folder / "model.safetensors.index.json").write_text(json.dumps({"metadata": {}, "weight_map": weight_map}, indent=2))
    return folder
