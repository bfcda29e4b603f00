"""Normalisation layers: parameter-free LayerNorm (optionally apex's fused kernel) and RMSNorm."""

from __future__ import annotations

import logging
from functools import lru_cache

import torch
import torch.nn.functional as F
from torch import nn

logger = logging.getLogger(__name__)


@lru_cache(maxsize=1)
def _fused_layer_norm_cls():
    try:
        from apex.normalization import FusedLayerNorm
    except ImportError:
        return None
    return FusedLayerNorm


class LayerNorm(nn.Module):
    """LayerNorm without affine parameters (the DiT modulates instead), so it has no state-dict keys."""

    def __init__(self, dim: int, eps: float = 1e-6):
        super().__init__()
        self.dim, self.eps = dim, eps

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return F.layer_norm(x, (self.dim,), eps=self.eps)


def make_layer_norm(dim: int, eps: float = 1e-6, use_kernel: bool = False) -> nn.Module:
    """A parameter-free LayerNorm; apex's fused kernel when asked for and installed."""
    if use_kernel:
        fused = _fused_layer_norm_cls()
        if fused is not None:
            return fused(dim, eps=eps, elementwise_affine=False)
        _warn_no_apex()
    return LayerNorm(dim, eps)


@lru_cache(maxsize=1)
def _warn_no_apex() -> None:
    logger.info("enable_layernorm_kernel: NVIDIA apex is not installed, using torch LayerNorm")


class RMSNorm(nn.Module):
    """RMSNorm over the last dimension, computed in fp32 and cast back before the learned scale."""

    def __init__(self, dim: int, eps: float = 1e-6):
        super().__init__()
        self.weight = nn.Parameter(torch.ones(dim))
        self.eps = eps

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        dtype = x.dtype
        x32 = x.float()
        x32 = x32 * torch.rsqrt(x32.pow(2).mean(-1, keepdim=True) + self.eps)
        return self.weight * x32.to(dtype)
