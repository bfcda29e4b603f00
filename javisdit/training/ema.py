"""Exponential moving average of the trained weights, kept in fp32 from the optimizer's master weights.

Only trainable parameters are averaged (a frozen tensor's average is itself), which keeps the EMA of
stage 3 at the size of the sync modules instead of the whole 3.7 B model. Under ZeRO each rank averages
its own flat shard of every master weight, as the original did; ``state_dict`` gathers the shards.
"""

from __future__ import annotations

from collections.abc import Mapping

import torch
from torch import nn

from javisdit.distributed import get_rank
from javisdit.distributed.booster import Accelerator, all_gather_flat


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
    def state_dict(self, model: nn.Module) -> dict[str, torch.Tensor]:
        """The full fp32 state dict of the averaged model (frozen tensors as they are), on CPU.
        Collective under ZeRO: every rank must call it."""
        out = {}
        for name, tensor in model.state_dict().items():
            if name in self.shadow:
                value = self.shadow[name]
                if self.sharded:
                    value = all_gather_flat(value, tensor.numel()).view(tensor.shape)
                out[name] = value.cpu().clone()
            else:
                out[name] = tensor.detach().float().cpu().clone() if tensor.is_floating_point() else tensor.cpu()
        return out

    @torch.no_grad()
    def load_state_dict(self, state: Mapping[str, torch.Tensor]) -> None:
        """Restore from ``state_dict`` output (missing names keep their current average)."""
        for name, shadow in self.shadow.items():
            if name not in state:
                continue
            value = state[name].float().to(shadow.device)
            if self.sharded:  # this rank's slice of the flat, zero-padded tensor
                flat = value.flatten()
                start = get_rank() * shadow.numel()
                part = flat[start : start + shadow.numel()]
                shadow.zero_()[: part.numel()].copy_(part)
            else:
                shadow.copy_(value.view_as(shadow))
