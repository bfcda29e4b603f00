"""The training accelerator: ColossalAI's booster behind one seam (the only module that imports it).

Two plugins, chosen by the config's ``plugin``:

* ``zero2`` (the original recipe, CUDA only): ``LowLevelZeroPlugin`` stage 2 — the model is cast to the
  compute dtype (bf16), ZeRO keeps fp32 master weights sharded over the data-parallel ranks (each rank
  holds 1/world of every trainable tensor, flattened and zero-padded) and clips the global gradient
  norm. The optimizer (``optimizer``) updates the masters: ``adamw`` (the default) is
  ``torch.optim.AdamW`` (fused on CUDA), which ZeRO wraps like any torch optimizer; ``hybrid_adam`` is
  ColossalAI's ``HybridAdam`` in AdamW mode, as the original, whose constructor loads ColossalAI's
  CPU-Adam and fused-Adam kernels and, unless ColossalAI was installed from source with
  ``BUILD_EXT=1`` (the PyPI package has none prebuilt), compiles them then (it needs ``nvcc`` and a CUDA
  toolkit matching torch's). Both apply the same update: Adam with betas (0.9, 0.999), the config's
  ``adam_eps``, and decoupled weight decay ``weight_decay``.
* ``ddp`` (anywhere, the only choice on CPU): ``TorchDDPPlugin`` with ``torch.optim.AdamW`` — the
  parameters stay fp32 (they are the master weights) and bf16/fp16 compute runs under autocast;
  gradients are averaged over gloo (CPU) or NCCL.

``zero2`` asked for on a machine without CUDA falls back to ``ddp`` with one log line, so the same
config runs on a laptop and on a GPU node. ColossalAI's optimizer checkpoint I/O needs an accelerator
(it synchronises CUDA), so ``ddp`` saves its optimizer state itself; ``zero2`` uses the booster's
sharded format (``optimizer/pytorch_optim*.bin``) as the original did.

The step is split so that the loop can look at the gradients before anything changes: ``grad_norm``
(the global L2 norm, the same on every rank), then ``step`` (clip with that norm, update) or
``skip_step``. Trainable tensors that live sharded (the fp32 masters, the EMA) are gathered to rank 0
one tensor at a time (``gather_to_main``) and scattered back from a full tensor (``shard_flat``).
"""

from __future__ import annotations

import contextlib
import logging
import math
import os
import warnings
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
import torch.distributed as dist
from torch import nn

from javisdit.distributed import get_rank, get_world_size, is_main_process, timeout
from javisdit.errors import ConfigError, UserError
from javisdit.models.loading import StoredTensor, close_files
from javisdit.utils.dtype import torch_dtype

logger = logging.getLogger(__name__)

PLUGINS = ("zero2", "ddp")
OPTIMIZERS = ("adamw", "hybrid_adam")  # the same AdamW update; hybrid_adam builds ColossalAI's kernels
ADAM_BETAS = (0.9, 0.999)
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


def check_optimizer(kind: str) -> str:
    """``kind`` if it names an optimizer.

    Raises:
        ConfigError: an unknown name (the valid ones are listed).
    """
    if kind not in OPTIMIZERS:
        raise ConfigError(f"unknown optimizer {kind!r}; valid: {', '.join(OPTIMIZERS)}")
    return kind


def ensure_process_group(device: torch.device, timeout_minutes: float | None = None) -> None:
    """The booster needs a process group even for one process: make a private one if torchrun did not."""
    if dist.is_initialized():
        return
    backend = "nccl" if device.type == "cuda" else "gloo"
    if "WORLD_SIZE" in os.environ and int(os.environ["WORLD_SIZE"]) > 1:
        dist.init_process_group(backend=backend, timeout=timeout(timeout_minutes))
    else:
        dist.init_process_group(backend=backend, store=dist.HashStore(), rank=0, world_size=1,
                                timeout=timeout(timeout_minutes))


# ----- sharded tensors ------------------------------------------------------------------------------------


def shard_numel(numel: int, world: int) -> int:
    """Elements of one rank's flat shard: ZeRO pads a tensor to a multiple of ``world`` and splits it."""
    return -(-numel // world)


def shard_flat(full: torch.Tensor, rank: int, world: int, size: int | None = None) -> torch.Tensor:
    """Rank ``rank``'s flat, zero-padded shard of ``full`` (a new tensor), as ZeRO lays it out: elements
    ``[rank · size, (rank + 1) · size)`` of the flattened tensor, ``size`` = ``shard_numel`` unless given
    (the size of the shard it is for)."""
    flat = full.detach().flatten()
    size = shard_numel(flat.numel(), world) if size is None else size
    part = flat[rank * size : (rank + 1) * size]
    out = flat.new_zeros(size)
    out[: part.numel()] = part
    return out


def unshard_flat(shards: Sequence[torch.Tensor], shape: torch.Size | Sequence[int]) -> torch.Tensor:
    """The full tensor of ``shape`` from every rank's flat shard, in rank order (the padding dropped)."""
    numel = math.prod(shape)
    return torch.cat([s.detach().flatten() for s in shards])[:numel].view(tuple(shape)).clone()


def gather_to_main(value: torch.Tensor, shape: torch.Size | Sequence[int], sharded: bool) -> torch.Tensor | None:
    """Collective: the full tensor on rank 0 (fp32 as given, on CPU, owning its memory), None elsewhere.

    ``value`` is this rank's flat shard when ``sharded`` (ZeRO), else the whole tensor (the same on every
    rank, so rank 0's is taken). Only one tensor is in flight at a time: rank 0 holds ``world`` shards,
    i.e. one full tensor, on the device.
    """
    world, main = get_world_size(), is_main_process()
    if not sharded or world == 1:
        if not main:
            return None
        return unshard_flat([value.cpu()], shape) if sharded else value.detach().cpu().view(tuple(shape)).clone()
    value = value.detach().contiguous()
    parts = [torch.empty_like(value) for _ in range(world)] if main else None
    dist.gather(value, parts, dst=0)
    return unshard_flat(parts, shape).cpu() if main else None


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
        """AdamW (decoupled weight decay, betas 0.9/0.999) over the trainable ``params``.

        ``adamw``: ``torch.optim.AdamW`` (fused on CUDA), under either plugin. ``hybrid_adam``:
        ColossalAI's ``HybridAdam`` (AdamW mode) under ``zero2``, which compiles its kernels here and so
        needs ``nvcc``; under ``ddp`` it is ``torch.optim.AdamW`` (the same update), with a log line.

        Raises:
            ConfigError: an unknown optimizer, or no trainable parameter.
        """
        check_optimizer(kind)
        params = [p for p in params if p.requires_grad]
        if not params:
            raise ConfigError("no parameter is trainable: check the model's freeze flags")
        if kind == "hybrid_adam":
            if self.plugin == "zero2":
                from colossalai.nn.optimizer import HybridAdam

                return HybridAdam(params, lr=lr, betas=ADAM_BETAS, eps=eps, weight_decay=weight_decay,
                                  adamw_mode=True)
            logger.info("optimizer hybrid_adam is a ZeRO optimizer; plugin %s uses torch.optim.AdamW (the same "
                        "update)", self.plugin)
        return torch.optim.AdamW(params, lr=lr, betas=ADAM_BETAS, eps=eps, weight_decay=weight_decay,
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

    @property
    def scales_loss(self) -> bool:
        """ZeRO in fp16 scales the loss: a non-finite gradient is then an overflow of the scale, which
        ZeRO answers itself (skip the update, lower the scale), not a divergence."""
        return self._optimizer_is_zero and self.dtype == torch.float16

    def grad_norm(self, optimizer, model: nn.Module) -> float:
        """Collective: the global L2 norm of the (data-parallel averaged) gradients, before clipping;
        the same number on every rank, inf or NaN when some gradient is not finite.

        Under ZeRO it is computed from each rank's reduced gradient shards with the optimizer's own
        ``_compute_grad_norm`` (all-reduced over its data-parallel group), exactly as its ``step`` does
        (``step`` computes it again for clipping), and divided by the loss scale in fp16.
        """
        if self._optimizer_is_zero:
            groups = []
            for group_id in range(optimizer.num_param_groups):
                groups.append(sum(optimizer._compute_grad_norm(dp_pg=store.torch_pg,
                                                               gradients=store.get_working_grads_by_group_id(group_id))
                                  for store in optimizer.pg_to_grad_store.values()))
            norm = math.sqrt(sum(float(n) ** 2 for n in groups))
            mixin = getattr(optimizer, "mixed_precision_mixin", None)
            return norm / mixin.loss_scale if self.scales_loss and mixin is not None else norm
        grads = [p.grad.detach() for p in model.parameters() if p.grad is not None]
        if not grads:
            norm = torch.zeros((), device=self.device)
        else:
            norm = torch.linalg.vector_norm(torch.stack([torch.linalg.vector_norm(g, 2.0) for g in grads]), 2.0)
        # DDP's averaged gradients are the same on every rank; agreeing on finiteness costs one number and
        # guarantees that all ranks take the same branch
        bad = torch.tensor([0.0 if torch.isfinite(norm) else 1.0], device=self.device)
        if get_world_size() > 1:
            dist.all_reduce(bad)
        return float(norm) if bad.item() == 0 else float("nan")

    def step(self, optimizer, model: nn.Module, grad_norm: float) -> None:
        """Clip to global L2 norm ``grad_clip`` (0 = off) given the norm from ``grad_norm``, update the
        weights, clear the gradients."""
        if not self._optimizer_is_zero:  # ZeRO clips inside its step
            coef = self.grad_clip / (grad_norm + 1e-6)
            if self.grad_clip > 0 and coef < 1.0:
                grads = [p.grad for p in model.parameters() if p.grad is not None]
                torch._foreach_mul_(grads, coef)
        optimizer.step()
        optimizer.zero_grad()

    def skip_step(self, optimizer) -> None:
        """Leave the weights and the optimizer state as they are and clear the gradients (in fp16 ZeRO,
        through its ``step``, which finds the overflow and lowers the loss scale)."""
        if self.scales_loss:
            optimizer.step()
        optimizer.zero_grad()

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

    @property
    def has_separate_masters(self) -> bool:
        """Whether the fp32 masters are apart from the model's (bf16/fp16) weights: under ZeRO. With
        ``ddp`` the parameters are the fp32 masters and ``model/`` holds them exactly."""
        return self.plugin == "zero2"

    @torch.no_grad()
    def master_state_dict(self, optimizer, params: Mapping[str, nn.Parameter]) -> dict[str, torch.Tensor] | None:
        """Collective: the fp32 masters of ``params`` (name -> trainable parameter), full and on CPU, on
        rank 0; None on the other ranks, and everywhere when there are no separate masters."""
        if not self.has_separate_masters:
            return None
        out = {}
        for name, p in params.items():
            master, sharded = self.master_param(optimizer, p)
            value = gather_to_main(master.float(), p.shape, sharded)
            if value is not None:
                out[name] = value
        return out if is_main_process() else None

    @torch.no_grad()
    def load_master_state(self, optimizer, params: Mapping[str, nn.Parameter],
                          state: Mapping[str, torch.Tensor | StoredTensor],
                          source: str = "master weights") -> list[str]:
        """Restore the fp32 masters of ``params`` from full tensors (``master_state_dict``'s output, or the
        loader's lazy index of a file, read one tensor at a time), and the working weights from them
        (rounded to their dtype, as ZeRO does after each step). Every rank reads the full tensors and
        keeps its own shard.

        Returns:
            The names ``state`` lacks (their masters stay as built from the working weights).

        Raises:
            UserError: a tensor whose shape differs from the parameter's.
        """
        missing, rank, world = [], get_rank(), get_world_size()
        for name, p in params.items():
            if name not in state:
                missing.append(name)
                continue
            full = state[name]
            if tuple(full.shape) != tuple(p.shape):
                raise UserError(f"{source}: {name} has shape {list(full.shape)}, the model {list(p.shape)}")
            if isinstance(full, StoredTensor):
                full = full.load(torch.float32)
            master, sharded = self.master_param(optimizer, p)
            value = shard_flat(full, rank, world, master.numel()) if sharded else full.view_as(master)
            master.copy_(value.to(master.device, master.dtype))
            if p is not master:
                p.data.copy_(full.to(p.device, p.dtype).view_as(p))
        close_files(state)
        return missing

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
            _steps_beside_params(optimizer.optim if hasattr(optimizer, "optim") else optimizer)
            return
        path = folder / DDP_OPTIMIZER_FILE
        if not path.is_file():
            raise ConfigError(f"{folder}: no {DDP_OPTIMIZER_FILE} (was the checkpoint written with plugin zero2? "
                              "resume it with the same plugin)")
        optimizer.load_state_dict(torch.load(path, map_location=self.device, weights_only=True))


def _steps_beside_params(optimizer: torch.optim.Optimizer) -> None:
    """A fused (or capturable) torch Adam keeps its step counts as fp32 tensors on the parameters'
    device. ColossalAI's sharded loader leaves them where the file had them (CPU), which the fused
    kernel rejects; put them back, as ``torch.optim.Optimizer.load_state_dict`` would."""
    for group in optimizer.param_groups:
        if not (group.get("fused") or group.get("capturable")):
            continue
        for p in group["params"]:
            state = optimizer.state.get(p)
            if state and isinstance(state.get("step"), torch.Tensor):
                state["step"] = state["step"].to(device=p.device, dtype=torch.float32)


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
                     reduce_bucket_size_in_m: int = 20, find_unused_parameters: bool = False,
                     timeout_minutes: float | None = None) -> Accelerator:
    """Build the booster of ``plugin`` (``zero2`` or ``ddp``) for training in ``dtype``.

    ``timeout_minutes`` is the process group's timeout when this makes one (see ``ensure_process_group``).

    Raises:
        ConfigError: an unknown plugin or dtype, or ``zero2`` with fp32 (ZeRO trains in fp16/bf16).
    """
    compute_dtype = torch_dtype(dtype)
    name = resolve_plugin(plugin, device)
    if name == "zero2" and dtype == "fp32":
        raise ConfigError("plugin zero2 trains in bf16 or fp16 (fp32 master weights); use dtype=bf16 or plugin=ddp")
    ensure_process_group(device, timeout_minutes)
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
