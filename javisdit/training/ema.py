"""Exponential moving average of the trained weights, kept in fp32 from the optimizer's master weights.

Only trainable parameters are averaged (a frozen tensor's average is itself, and ``model/`` holds it),
which keeps the EMA of stage 3 at the size of the sync modules instead of the whole 3.7 B model. Under
ZeRO each rank averages its own flat shard of every master weight, as the original did.

``ema.pt`` holds exactly the averaged tensors, fp32, by parameter name: ``state_dict`` gathers them on
rank 0 one tensor at a time, and the other ranks hold nothing. To sample with the averaged weights, lay
them over the checkpoint's ``model/`` (``javisdit.training.checkpoint.export_ema``). An ``ema.pt`` of the
whole model (as earlier versions wrote) still loads: the frozen tensors in it are ignored.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping

import torch
from torch import nn

from javisdit.distributed import get_rank, get_world_size, is_main_process
from javisdit.distributed.booster import Accelerator, gather_to_main, shard_flat

logger = logging.getLogger(__name__)


class EMA:
    def __init__(self, model: nn.Module, optimizer, accelerator: Accelerator, decay: float):
        """``model``: the unwrapped module; starts as a copy of its (master) weights."""
        if not 0.0 <= decay <= 1.0:
            raise ValueError(f"ema_decay must be in [0, 1], got {decay}")
        self.decay, self.accelerator = decay, accelerator
        self.params = {name: p for name, p in model.named_parameters() if p.requires_grad}
        self.shadow: dict[str, torch.Tensor] = {}
        self.sharded = False
        with torch.no_grad():
            for name, p in self.params.items():
                master, self.sharded = accelerator.master_param(optimizer, p)
                self.shadow[name] = master.detach().float().clone()
        self._optimizer = optimizer

    @torch.no_grad()
    def update(self) -> None:
        """``ema ← decay · ema + (1 − decay) · master`` for every trainable weight."""
        for name, p in self.params.items():
            master, _ = self.accelerator.master_param(self._optimizer, p)
            self.shadow[name].lerp_(master.detach().float(), 1.0 - self.decay)

    @torch.no_grad()
    def state_dict(self) -> dict[str, torch.Tensor] | None:
        """The averaged (trained) tensors, fp32, full and on CPU, on rank 0; None on the other ranks.
        Collective: every rank must call it."""
        out = {}
        for name, p in self.params.items():
            value = gather_to_main(self.shadow[name], p.shape, self.sharded)
            if value is not None:
                out[name] = value
        return out if is_main_process() else None

    @torch.no_grad()
    def load_state_dict(self, state: Mapping[str, torch.Tensor]) -> None:
        """Restore from ``state_dict`` output (or a whole-model EMA: names that do not train are ignored;
        trained names it lacks keep their current average, with a warning)."""
        missing = []
        for name, shadow in self.shadow.items():
            if name not in state:
                missing.append(name)
                continue
            value = state[name].float()
            if self.sharded:  # this rank's slice of the flat, zero-padded tensor
                value = shard_flat(value, get_rank(), get_world_size(), shadow.numel())
            shadow.copy_(value.to(shadow.device).view_as(shadow))
        if missing:
            logger.warning("the EMA state lacks %d trained tensor(s) (e.g. %s); they start from the weights",
                           len(missing), missing[0])
