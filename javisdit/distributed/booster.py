"""The training accelerator: ColossalAI's booster behind one seam (the only module that imports it).

Two plugins, chosen by the config's ``plugin``:

* ``zero2`` (the original recipe, CUDA only): ``LowLevelZeroPlugin`` stage 2 — the model is cast to the
  compute dtype (bf16), ZeRO keeps fp32 master weights sharded over the data-parallel ranks and clips
  the global gradient norm; ``HybridAdam`` (AdamW mode) updates the masters.
* ``ddp`` (anywhere, the only choice on CPU): ``TorchDDPPlugin`` with ``torch.optim.AdamW`` — the
  parameters stay fp32 (they are the master weights) and bf16/fp16 compute runs under autocast;
  gradients are averaged over gloo (CPU) or NCCL.

``zero2`` asked for on a machine without CUDA falls back to ``ddp`` with one log line, so the same
config runs on a laptop and on a GPU node. ColossalAI's optimizer checkpoint I/O needs an accelerator
(it synchronises CUDA), so ``ddp`` saves its optimizer state itself; ``zero2`` uses the booster's
sharded format (``optimizer/pytorch_optim*.bin``) as the original did.
"""

from __future__ import annotations

import contextlib
import logging
import os
import warnings
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
import torch.distributed as dist
from torch import nn

from javisdit.distributed import get_world_size, is_main_process
from javisdit.errors import ConfigError
from javisdit.utils.dtype import torch_dtype

logger = logging.getLogger(__name__)

PLUGINS = ("zero2", "ddp")
OPTIMIZERS = ("adamw",)  # the recipe's only optimizer; HybridAdam in AdamW mode under ZeRO
DDP_OPTIMIZER_FILE = "optimizer.pt"


def resolve_plugin(name: str, device: torch.device) -> str:
    """The plugin that will run: ``name``, or ``ddp`` for ``zero2`` without CUDA.

    Raises:
        ConfigError: an unknown plugin name (the valid ones are listed).
    """
    if name not in PLUGINS:
        hint = " (sequence parallelism is not supported by VASTDiT3)" if name == "zero2-seq" else ""
        raise ConfigError(f"unknown plugin {name!r}{hint}; valid: {', '.join(PLUGINS)}")
    if name == "zero2" and device.type != "cuda":
        logger.info("plugin zero2 needs CUDA; training with ddp (TorchDDPPlugin + AdamW) on %s", device.type)
        return "ddp"
    return name


def ensure_process_group(device: torch.device) -> None:
    """The booster needs a process group even for one process: make a private one if torchrun did not."""
    if dist.is_initialized():
        return
    backend = "nccl" if device.type == "cuda" else "gloo"
    if "WORLD_SIZE" in os.environ and int(os.environ["WORLD_SIZE"]) > 1:
        dist.init_process_group(backend=backend)
    else:
        dist.init_process_group(backend=backend, store=dist.HashStore(), rank=0, world_size=1)


@dataclass
class Accelerator:
    """Wraps model and optimizer for data-parallel training, and does what differs between plugins."""

    plugin: str
    device: torch.device
    dtype: torch.dtype
    grad_clip: float = 0.0
    booster: Any = field(default=None, repr=False)
    _optimizer_is_zero: bool = False

    # ----- set-up --------------------------------------------------------------------------------------

    def make_optimizer(self, params: Iterable[nn.Parameter], lr: float, weight_decay: float = 0.0,
                       eps: float = 1e-8, kind: str = "adamw") -> torch.optim.Optimizer:
        """AdamW (decoupled weight decay, betas 0.9/0.999): ColossalAI's HybridAdam under ZeRO."""
        if kind not in OPTIMIZERS:
            raise ConfigError(f"unknown optimizer {kind!r}; valid: {', '.join(OPTIMIZERS)}")
        params = [p for p in params if p.requires_grad]
        if not params:
            raise ConfigError("no parameter is trainable: check the model's freeze flags")
        if self.plugin == "zero2":
            from colossalai.nn.optimizer import HybridAdam

            return HybridAdam(params, lr=lr, weight_decay=weight_decay, eps=eps, adamw_mode=True)
        return torch.optim.AdamW(params, lr=lr, weight_decay=weight_decay, eps=eps,
                                 fused=self.device.type == "cuda")

    def boost(self, model: nn.Module, optimizer: torch.optim.Optimizer, lr_scheduler=None):
        """Returns the wrapped (model, optimizer, lr_scheduler)."""
        model, optimizer, _, _, lr_scheduler = self.booster.boost(model, optimizer, lr_scheduler=lr_scheduler)
        self._optimizer_is_zero = self.plugin == "zero2"
        return model, optimizer, lr_scheduler

    # ----- the step ------------------------------------------------------------------------------------

    def autocast(self) -> contextlib.AbstractContextManager:
        """Mixed-precision compute for ``ddp`` (the ZeRO model is already in the compute dtype)."""
        if self.plugin == "ddp" and self.dtype != torch.float32:
            return torch.autocast(self.device.type, dtype=self.dtype)
        return contextlib.nullcontext()

    def backward(self, loss: torch.Tensor, optimizer) -> None:
        self.booster.backward(loss, optimizer)

    def step(self, optimizer, model: nn.Module) -> float:
        """Clip (global L2 norm ``grad_clip``; 0 = off), update, clear the gradients; returns the norm of
        the gradients before clipping (NaN if some are not finite)."""
        if self.plugin == "zero2":
            optimizer.step()
            norm = optimizer.get_grad_norm()
        else:
            params = [p for p in model.parameters() if p.grad is not None]
            max_norm = self.grad_clip if self.grad_clip > 0 else float("inf")
            norm = torch.nn.utils.clip_grad_norm_(params, max_norm)
            optimizer.step()
        optimizer.zero_grad()
        return float(norm) if norm is not None else float("nan")

    def zero_grad(self, optimizer) -> None:
        optimizer.zero_grad()

    # ----- parameters and checkpoints ------------------------------------------------------------------

    @staticmethod
    def unwrap(model: nn.Module) -> nn.Module:
        return model.unwrap() if hasattr(model, "unwrap") else model

    def master_param(self, optimizer, param: nn.Parameter) -> tuple[torch.Tensor, bool]:
        """The fp32 master copy of a trainable parameter and whether it is a flat shard of it (ZeRO
        keeps 1/world of each parameter, flattened and zero-padded, on each rank)."""
        if self._optimizer_is_zero:
            return optimizer.get_working_to_master_map()[id(param)], True
        return param, False

    def save_optimizer(self, optimizer, folder: Path) -> None:
        """Collective: every rank calls it."""
        if self.plugin == "zero2":
            self.booster.save_optimizer(optimizer, str(folder), shard=True, size_per_shard=4096)
            return
        if is_main_process():
            folder.mkdir(parents=True, exist_ok=True)
            torch.save(optimizer.state_dict(), folder / DDP_OPTIMIZER_FILE)

    def load_optimizer(self, optimizer, folder: Path) -> None:
        if self.plugin == "zero2":
            self.booster.load_optimizer(optimizer, str(folder))
            return
        path = folder / DDP_OPTIMIZER_FILE
        if not path.is_file():
            raise ConfigError(f"{folder}: no {DDP_OPTIMIZER_FILE} (was the checkpoint written with plugin zero2? "
                              "resume it with the same plugin)")
        optimizer.load_state_dict(torch.load(path, map_location=self.device, weights_only=True))


def _import_booster():
    """ColossalAI's booster classes. Importing them pulls in optional kernels (bitsandbytes, apex) that
    warn about their own absence on every process; none of them is used here, so that noise is muted
    for the import only."""
    quiet = [logging.getLogger(name) for name in ("bitsandbytes", "bitsandbytes.backends.cpu.ops")]
    levels = [q.level for q in quiet]
    try:
        for q in quiet:
            q.setLevel(logging.ERROR)
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            from colossalai.booster import Booster
            from colossalai.booster.plugin import LowLevelZeroPlugin, TorchDDPPlugin
    finally:
        for q, level in zip(quiet, levels):
            q.setLevel(level)
    return Booster, LowLevelZeroPlugin, TorchDDPPlugin


def make_accelerator(plugin: str, dtype: str, device: torch.device, grad_clip: float = 0.0,
                     reduce_bucket_size_in_m: int = 20, find_unused_parameters: bool = False) -> Accelerator:
    """Build the booster of ``plugin`` (``zero2`` or ``ddp``) for training in ``dtype``.

    Raises:
        ConfigError: an unknown plugin or dtype, or ``zero2`` with fp32 (ZeRO trains in fp16/bf16).
    """
    compute_dtype = torch_dtype(dtype)
    name = resolve_plugin(plugin, device)
    if name == "zero2" and dtype == "fp32":
        raise ConfigError("plugin zero2 trains in bf16 or fp16 (fp32 master weights); use dtype=bf16 or plugin=ddp")
    ensure_process_group(device)
    Booster, LowLevelZeroPlugin, TorchDDPPlugin = _import_booster()

    if name == "zero2":
        booster_plugin = LowLevelZeroPlugin(stage=2, precision=dtype, initial_scale=2**16, max_norm=grad_clip,
                                            reduce_bucket_size_in_m=reduce_bucket_size_in_m)
    else:
        booster_plugin = TorchDDPPlugin(find_unused_parameters=find_unused_parameters)
    logger.info("booster: %s, %s compute, gradient clipping %s", name, dtype, grad_clip or "off")
    return Accelerator(name, device, compute_dtype, grad_clip, Booster(plugin=booster_plugin))


def all_reduce_sum(values: torch.Tensor) -> torch.Tensor:
    """Sum over the ranks (a copy; the input is untouched)."""
    values = values.detach().clone()
    if get_world_size() > 1:
        dist.all_reduce(values)
    return values


def all_gather_flat(shard: torch.Tensor, numel: int) -> torch.Tensor:
    """Undo ZeRO's flat sharding: the full flat tensor (first ``numel`` elements) from every rank's shard."""
    world = get_world_size()
    if world == 1:
        return shard.flatten()[:numel]
    parts = [torch.empty_like(shard) for _ in range(world)]
    dist.all_gather(parts, shard.contiguous())
    return torch.cat([p.flatten() for p in parts])[:numel]
