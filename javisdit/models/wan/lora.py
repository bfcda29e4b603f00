"""Loading JavisDiT++ weights: the base model plus its rank-64 LoRA, merged (spec MODEL_V1.md §1.2-§1.4, §4).

The published ``JavisVerse/JavisDiT-v1.0-jav`` is a training checkpoint (its exact file list is INFERRED,
§1.2); every layout the original loader accepts is read:

- ``model/``: the 982 base tensors and, next to them, the 720 LoRA tensors
  ``blocks.{i}.<target>.lora_{A,B}.default.weight`` (sharded ``.bin`` with an index, one ``.bin``, or
  safetensors);
- ``lora/adapter_model.{safetensors,bin}`` + ``adapter_config.json`` (peft: ``base_model.model.`` prefix,
  no adapter name): preferred when present, as upstream merges this one;
- a merged checkpoint (the 982 tensors, no LoRA), as a file or folder;
- the base Wan2.1-T2V-1.3B DiT (825 tensors), for the training stages that start from it (``base_ok``).

Merging adds ``(B @ A)·(alpha / r)`` (0.25) computed in fp32 to each of the 360 target weights, then
rounds to the weight's dtype (in bf16 exactly as upstream's in-place add). Anything else is an error
that names what was found.
"""

from __future__ import annotations

import json
import logging
import re
from collections.abc import Mapping
from pathlib import Path

import torch
from torch import nn

from javisdit.errors import WeightsMismatchError
from javisdit.models.loading import StoredTensor, load_state_dict_checked, open_state_dict

logger = logging.getLogger(__name__)

#: The Linear layers of every block that carry a LoRA (stage 2/3 ``LoraConfig.target_modules``).
LORA_TARGETS = ("self_attn.q", "self_attn.k", "self_attn.v", "self_attn.o", "cross_attn.q", "cross_attn.k",
                "cross_attn.v", "cross_attn.o", "ffn.0", "ffn.2", "audio_ffn.0", "audio_ffn.2")
PUBLISHED_RANK, PUBLISHED_ALPHA = 64, 16
_LORA_KEY = re.compile(r"^(?:base_model\.model\.)?(blocks\.\d+\.(?:(?:self|cross)_attn\.[qkvo]|(?:audio_)?ffn\.[02]))"
                       r"\.lora_([AB])(?:\.default)?\.weight$")
_ADAPTER_FILES = ("adapter_model.safetensors", "adapter_model.bin")


def split_lora(state: Mapping[str, torch.Tensor | StoredTensor]) -> tuple[dict, dict[str, dict[str, object]]]:
    """(the other keys, ``{module: {"A": tensor, "B": tensor}}``) of a state dict."""
    rest, lora = {}, {}
    for key, value in state.items():
        match = _LORA_KEY.match(key)
        if match is None:
            rest[key] = value
        else:
            lora.setdefault(match.group(1), {})[match.group(2)] = value
    return rest, lora


def read_adapter(folder: Path) -> tuple[dict[str, dict[str, object]], float]:
    """A peft adapter folder's LoRA tensors and its scale ``lora_alpha / r``."""
    file = next((folder / name for name in _ADAPTER_FILES if (folder / name).is_file()), None)
    if file is None:
        raise WeightsMismatchError(f"{folder}: no {' or '.join(_ADAPTER_FILES)} (a peft LoRA adapter folder)")
    rest, lora = split_lora(open_state_dict(file))
    if rest:
        raise WeightsMismatchError(f"{file}: {len(rest)} keys are not LoRA tensors of the 12 targets "
                                   f"({', '.join(sorted(rest)[:5])})")
    config_file = folder / "adapter_config.json"
    if config_file.is_file():
        config = json.loads(config_file.read_text())
        rank, alpha = config.get("r", PUBLISHED_RANK), config.get("lora_alpha", PUBLISHED_ALPHA)
        if config.get("use_dora") or config.get("use_rslora"):
            raise WeightsMismatchError(f"{config_file}: DoRA / rsLoRA adapters are not JavisDiT++'s (plain LoRA)")
    else:
        rank, alpha = PUBLISHED_RANK, PUBLISHED_ALPHA
        logger.info("%s: no adapter_config.json; using the published r=%d, alpha=%d", folder, rank, alpha)
    return lora, alpha / rank


@torch.no_grad()
def merge_lora(model: nn.Module, lora: Mapping[str, Mapping[str, object]], scale: float, source: str = "LoRA") -> int:
    """Add ``scale·(B @ A)`` (fp32) into each target Linear's weight, rounded to its dtype; returns the count.

    Raises:
        WeightsMismatchError: a module the model lacks, a module with only one of A/B, or shapes that do
            not fit the weight (all named).
    """
    modules = dict(model.named_modules())
    problems = []
    for name, pair in sorted(lora.items()):
        layer = modules.get(name)
        if not isinstance(layer, nn.Linear):
            problems.append(f"{name}: not a Linear layer of the model")
        elif set(pair) != {"A", "B"}:
            problems.append(f"{name}: lora_{'A' if 'A' not in pair else 'B'} is missing")
        else:
            a, b = pair["A"], pair["B"]
            if a.shape[1] != layer.in_features or b.shape[0] != layer.out_features or a.shape[0] != b.shape[1]:
                problems.append(f"{name}: A {list(a.shape)} / B {list(b.shape)} vs weight {list(layer.weight.shape)}")
    if problems:
        raise WeightsMismatchError(f"{source} does not fit the model: {'; '.join(problems[:10])}"
                                   + (f" (+{len(problems) - 10} more)" if len(problems) > 10 else ""))
    for name, pair in lora.items():
        weight = modules[name].weight
        a, b = (t.load(torch.float32, weight.device) if isinstance(t, StoredTensor) else t.to(weight.device).float()
                for t in (pair["A"], pair["B"]))
        weight.copy_((weight.float() + (b @ a) * scale).to(weight.dtype))
    return len(lora)


def _layout(path: Path, lora_dir: str) -> tuple[Path, Path | None]:
    """(the weights, the adapter folder or None) of a checkpoint folder or file."""
    if path.is_dir():
        adapter = path / lora_dir if lora_dir and (path / lora_dir).is_dir() else None
        return (path / "model" if (path / "model").is_dir() else path), adapter
    return path, None


def load_wan_checkpoint(model: nn.Module, path: str | Path, lora_enabled: bool = True, lora_dir: str = "lora",
                        base_ok: bool = False, dtype: torch.dtype | None = None, device=None,
                        source: str | None = None) -> None:
    """Load a published layout (module docstring) into ``model`` (built on the meta device or real) strictly,
    then merge its LoRA unless ``lora_enabled`` is False.

    Args:
        base_ok: accept the base Wan2.1 DiT alone (the audio modules keep their values): training stages.
        dtype, device: of the loaded tensors (as ``load_state_dict_checked``).

    Raises:
        WeightsMismatchError: keys that fit no layout, naming what was found.
    """
    path = Path(path)
    source = source or str(path)
    weights, adapter = _layout(path, lora_dir)
    state, lora = split_lora(open_state_dict(weights))
    own = model.state_dict()
    audio_keys = [k for k in own if "audio" in k]
    allow_missing: tuple[str, ...] = ()
    if base_ok and audio_keys and not any("audio" in k for k in state) and state.keys() <= own.keys():
        allow_missing = tuple(audio_keys)
        logger.info("%s: the Wan2.1 DiT without audio modules; %d audio tensors keep their values", source,
                    len(audio_keys))
    elif audio_keys and not any("audio" in k for k in state) and len(state) > 0 and state.keys() <= own.keys():
        raise WeightsMismatchError(
            f"{source} holds a DiT without audio modules ({len(state)} tensors: the base Wan2.1-T2V-1.3B?); "
            "JavisDiT++ inference needs the JavisVerse/JavisDiT-v1.0-jav checkpoint (model/ and lora/)")
    load_state_dict_checked(model, state, source=source, allow_missing=allow_missing, dtype=dtype, device=device)
    if not lora_enabled:
        if lora or adapter:
            logger.info("%s: lora_enabled=False, the LoRA is not merged", source)
        return
    if adapter is not None:
        lora, scale = read_adapter(adapter)
        where = str(adapter)
    else:
        scale, where = PUBLISHED_ALPHA / PUBLISHED_RANK, f"{weights} (LoRA tensors)"
    if lora:
        count = merge_lora(model, lora, scale, source=where)
        logger.info("merged the LoRA of %s into %d layers (scale %.4g)", where, count, scale)
