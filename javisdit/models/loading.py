"""The one weight loader: a Hugging Face hub id, a local folder or a single file, loaded strictly.

``resolve_weights`` turns a ``from_pretrained`` value into a local path (downloading through
``huggingface_hub`` when it is a hub id; ``HF_HUB_OFFLINE``, ``HF_ENDPOINT`` and the local cache are
honoured). ``read_state_dict`` reads ``*.safetensors`` (single or sharded with an index) or
``pytorch_model*.bin`` (with ``weights_only=True``), from a file, a folder, or a training run's
``model/`` sub-folder. ``load_state_dict_checked`` loads with every missing, unexpected or mis-shaped
key reported by name.
"""

from __future__ import annotations

import json
import logging
import os
import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from pathlib import Path

import torch
from torch import nn

from javisdit.errors import UserError

logger = logging.getLogger(__name__)

_HUB_ID = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]*/[A-Za-z0-9][A-Za-z0-9._-]*$")
_WEIGHT_FILES = ("model.safetensors", "diffusion_pytorch_model.safetensors", "pytorch_model.bin",
                 "diffusion_pytorch_model.bin")
_INDEX_FILES = ("model.safetensors.index.json", "diffusion_pytorch_model.safetensors.index.json",
                "pytorch_model.bin.index.json")


class MissingWeightsError(UserError, FileNotFoundError):
    """Weights that are neither on disk nor downloadable; the message says how to get them."""


class WeightsMismatchError(UserError, ValueError):
    """A checkpoint whose keys or shapes do not fit the model; the message lists them."""


def is_hub_id(source: str) -> bool:
    weights_file = source.endswith((".pt", ".pth", ".bin", ".safetensors", ".ckpt"))
    return bool(_HUB_ID.match(source)) and not source.startswith((".", "/")) and not weights_file


def _hub_snapshot(repo_id: str, subfolders: tuple[str, ...]) -> Path:
    """Download (or find in the cache) configs, tokenizer files and weights, preferring safetensors
    and fetching ``*.bin`` weights only for a folder that has no safetensors."""
    from huggingface_hub import snapshot_download

    prefixes = [f"{folder.strip('/')}/" if folder else "" for folder in subfolders]
    patterns = [f"{p}{ext}" for p in prefixes for ext in ("*.json", "*.model", "*.txt", "*.safetensors")]
    path = Path(snapshot_download(repo_id, allow_patterns=patterns))
    missing = [p for p in prefixes if not any((path / p).glob("*.safetensors"))]
    if missing:
        path = Path(snapshot_download(repo_id, allow_patterns=[f"{p}*.bin" for p in missing]))
    return path


#: Local folder names the configs and README use -> the published repository with those weights.
PUBLISHED = {
    "OpenSora-STDiT-v3": "hpcai-tech/OpenSora-STDiT-v3",
    "JavisDiT-v0.1-audio": "JavisDiT/JavisDiT-v0.1-audio",
    "JavisDiT-v0.1-prior": "JavisDiT/JavisDiT-v0.1-prior",
    "JavisDiT-v0.1-jav": "JavisDiT/JavisDiT-v0.1-jav",
}


def _download_hint(path: Path, config_key: str) -> str:
    folder = next((part for part in path.parts if part in PUBLISHED), None)
    if folder is None:
        return ""
    repo = PUBLISHED[folder]
    local = Path(*path.parts[: path.parts.index(folder) + 1])
    hint = (f"; download the published weights with `huggingface-cli download {repo} --local-dir {local}` or set "
            f"{config_key} to the hub id {repo}")
    if folder in ("JavisDiT-v0.1-audio", "JavisDiT-v0.1-prior"):
        stage = "stage 1" if folder.endswith("audio") else "stage 2"
        hint += f" (or move your {stage} checkpoint folder there, or point {config_key} at its runs/ folder)"
    return hint


def resolve_weights(source: str | os.PathLike, config_key: str = "from_pretrained",
                    subfolders: tuple[str, ...] = ("",)) -> Path:
    """A local path for ``source``: itself when it exists, else a hub snapshot.

    Args:
        source: a file, a folder, or a hub id such as ``JavisDiT/JavisDiT-v0.1-jav``.
        config_key: the config key that named ``source``, quoted in error messages.
        subfolders: the parts of a hub repository to fetch (e.g. ``("vae", "vocoder")``).

    Raises:
        MissingWeightsError: a local path that does not exist, or a hub id that is neither cached
            nor downloadable (offline, no network, unknown repo); the message gives the download
            command and the config key to point at a local folder.
    """
    path = Path(source)
    if path.exists():
        return path
    source = str(source)
    if not is_hub_id(source):
        raise MissingWeightsError(f"{config_key}: no such file or folder: {source}{_download_hint(path, config_key)}")
    try:
        return _hub_snapshot(source, subfolders)
    except Exception as err:  # offline, network, unknown repository, gated repository, ...
        name = source.split("/")[-1]
        reason = str(err).splitlines()[0] if str(err) else type(err).__name__
        include = "" if subfolders == ("",) else " --include " + " ".join(f"'{f}/*'" for f in subfolders)
        raise MissingWeightsError(
            f"{config_key}: the weights {source!r} are not in the local Hugging Face cache and could not be "
            f"downloaded ({type(err).__name__}: {reason}); download them with "
            f"`huggingface-cli download {source}{include} --local-dir ./checkpoints/{name}` and set "
            f"{config_key}=./checkpoints/{name} (e.g. --cfg-options {config_key}=./checkpoints/{name})"
        ) from None


def _cast(state: dict[str, torch.Tensor], dtype: torch.dtype | None) -> dict[str, torch.Tensor]:
    if dtype is None:
        return state
    return {k: v.to(dtype) if v.is_floating_point() else v for k, v in state.items()}


def _read_file(path: Path, dtype: torch.dtype | None = None) -> dict[str, torch.Tensor]:
    return _cast(_read_file_raw(path), dtype)


def _read_file_raw(path: Path) -> dict[str, torch.Tensor]:
    if path.suffix == ".safetensors":
        from safetensors.torch import load_file

        return load_file(str(path))
    if path.suffix in (".bin", ".pt", ".pth"):
        state = torch.load(path, map_location="cpu", weights_only=True)
        for key in ("state_dict", "module", "model"):  # training containers
            if isinstance(state, Mapping) and key in state and isinstance(state[key], Mapping):
                state = state[key]
        return dict(state)
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


def read_state_dict(path: str | os.PathLike, dtype: torch.dtype | None = None) -> dict[str, torch.Tensor]:
    """All tensors of a weights file or folder (CPU); floating-point ones cast to ``dtype`` shard by shard
    when given (so a bf16 load of fp32 shards never holds the whole fp32 model).

    A folder holds one of ``model.safetensors``, ``diffusion_pytorch_model.safetensors``,
    ``pytorch_model.bin``, or shards listed by a ``*.index.json``; a training checkpoint folder holds
    them in ``model/``, and a training run folder (``runs/NNN-Model``) means its latest checkpoint.

    Raises:
        MissingWeightsError: the path or a shard does not exist, or a folder holds no weights.
    """
    path = Path(path)
    if path.is_file():
        return _read_file(path, dtype)
    if not path.is_dir():
        raise MissingWeightsError(f"no such file or folder: {path}")
    path = _weights_folder(path)
    for name in _INDEX_FILES:
        index = path / name
        if index.is_file():
            shards = sorted(set(json.loads(index.read_text())["weight_map"].values()))
            state: dict[str, torch.Tensor] = {}
            for shard in shards:
                if not (path / shard).is_file():
                    raise MissingWeightsError(f"{index} lists the shard {shard}, which is missing")
                state.update(_read_file(path / shard, dtype))
            return state
    for name in _WEIGHT_FILES:
        if (path / name).is_file():
            return _read_file(path / name, dtype)
    raise MissingWeightsError(
        f"no weights in {path}: expected one of {', '.join(_WEIGHT_FILES)}, a sharded index "
        f"({', '.join(_INDEX_FILES)}) or a model/ sub-folder"
    )


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
    state_dict: Mapping[str, torch.Tensor],
    source: str = "checkpoint",
    allow_missing: Iterable[str] = (),
    ignore_unexpected: Iterable[str] = (),
    assign: bool = False,
) -> LoadReport:
    """Load ``state_dict`` into ``model``; any key problem outside the allow-lists is an error.

    Args:
        allow_missing: key prefixes the checkpoint may lack (their current values are kept).
        ignore_unexpected: key prefixes of the checkpoint to skip (e.g. another model's parts).
        assign: take the checkpoint tensors as they are (for models built on the meta device).

    Raises:
        WeightsMismatchError: listing the missing, unexpected and mis-shaped keys by name.
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
    # Non-strict only when allow-listed keys are absent (checked above): nothing else can be missing here.
    model.load_state_dict(state, strict=not skipped, assign=assign)
    return report


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
