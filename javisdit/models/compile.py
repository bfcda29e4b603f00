"""Regional ``torch.compile`` of a denoiser: each repeated transformer block is compiled in place.

Compiling the blocks rather than the whole model keeps start-up short (one graph per block kind and
token shape, shared by the blocks of that kind, since PyTorch inlines module parameters as graph
inputs) and leaves the model's Python — input checks, embeddings, patching — eager. ``nn.Module.compile``
compiles in place, so parameter names and state-dict keys do not change (checkpoints save and load as
before). Inductor fuses the elementwise steps around the matmuls (modulation, gates, residuals, GELU,
normalisation) into few passes; on a CPU it needs a C++ compiler, on CUDA Triton.
"""

from __future__ import annotations

import logging

from torch import nn

logger = logging.getLogger(__name__)

MODES = ("default", "reduce-overhead", "max-autotune")


def compile_blocks(model: nn.Module, mode: str = "default") -> int:
    """Compile, in place, every block held in an ``nn.ModuleList`` child of ``model`` (its repeated blocks).

    Args:
        model: a denoiser (``STDiT3``, ``VASTDiT3``, ``WanModel``).
        mode: ``torch.compile``'s mode.

    Returns:
        The number of blocks compiled (0 when the model has none).
    """
    if mode not in MODES:
        raise ValueError(f"compile mode must be one of {', '.join(MODES)}, got {mode!r}")
    blocks = [block for module in model.children() if isinstance(module, nn.ModuleList) for block in module]
    for block in blocks:
        block.compile(mode=mode)
    logger.info("torch.compile (%s): %d blocks of %s", mode, len(blocks), type(model).__name__)
    return len(blocks)
