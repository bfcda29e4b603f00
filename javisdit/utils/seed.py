"""Seeding of the global random generators (python, numpy, torch on every device), and per-sample
generators for training."""

from __future__ import annotations

import random
from collections.abc import Sequence

import numpy as np
import torch


def set_seed(seed: int) -> None:
    random.seed(seed)
    np.random.seed(seed % 2**32)
    torch.manual_seed(seed)


def sample_generators(seeds: Sequence[int], salt: int = 0) -> list[torch.Generator]:
    """One CPU generator per sample. Training draws every random number of a sample (timestep, noise,
    caption dropout, masks, posterior samples) from its own generator, so a sample's draws do not
    depend on which other samples share its batch or which process it lands on."""
    return [torch.Generator().manual_seed((int(s) * 6_364_136_223_846_793_005 + salt) % 2**63) for s in seeds]


def randn(shape: Sequence[int], generator=None, device=None, dtype: torch.dtype | None = None) -> torch.Tensor:
    """``torch.randn`` whose ``generator`` may also be a list of per-row generators (rows = dim 0)."""
    if generator is None or isinstance(generator, torch.Generator):
        return torch.randn(tuple(shape), generator=generator, device=device, dtype=dtype)
    if len(generator) != shape[0]:
        raise ValueError(f"{len(generator)} generators for {shape[0]} rows")
    rows = [torch.randn(tuple(shape[1:]), generator=g, device=g.device, dtype=dtype) for g in generator]
    return torch.stack(rows).to(device)


def rand(shape: Sequence[int], generator=None, device=None) -> torch.Tensor:
    """``torch.rand`` with per-row generators allowed, as ``randn``."""
    if generator is None or isinstance(generator, torch.Generator):
        return torch.rand(tuple(shape), generator=generator, device=device)
    if len(generator) != shape[0]:
        raise ValueError(f"{len(generator)} generators for {shape[0]} rows")
    return torch.stack([torch.rand(tuple(shape[1:]), generator=g, device=g.device) for g in generator]).to(device)
