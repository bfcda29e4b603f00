"""Training-free step caching for the rectified-flow sampler: skip denoiser calls whose output would
barely differ from the previous step's, in the spirit of TeaCache (Liu et al., 2024).

A cheap *signal* stands in for the denoiser's output: by default the first transformer block's
timestep-modulated input (``model.cache_signal``), else the timestep itself. Its relative L1 change
between consecutive steps, ``mean|s_i - s_{i-1}| / mean|s_{i-1}|``, is summed over the steps since the
last denoiser call; a step calls the denoiser once that sum reaches ``threshold`` (and the sum restarts
at 0), otherwise the sampler reuses the last model output. The first and the last step always call it.
"""

from __future__ import annotations

import torch


def relative_l1(current: torch.Tensor, previous: torch.Tensor) -> float:
    """``mean|current - previous| / mean|previous|`` in fp32 (inf when ``previous`` is all zeros)."""
    current, previous = current.float(), previous.float()
    denominator = previous.abs().mean().item()
    numerator = (current - previous).abs().mean().item()
    if denominator == 0.0:
        return 0.0 if numerator == 0.0 else float("inf")
    return numerator / denominator


class StepCache:
    """Decides, step by step, whether the sampler calls the denoiser or reuses its last output.

    Use one instance per sampling run: ``start(num_steps)``, then ``compute(i, signal)`` at each step i.

    Attributes:
        threshold: the accumulated relative change that triggers a call (> 0).
        calls: denoiser calls decided so far in this run; ``skipped``: steps that reuse an output.
        computed: per step so far, True where the denoiser was called.
        changes: per step so far, the relative change of the signal from the step before (0 at step 0).
    """

    def __init__(self, threshold: float):
        if not threshold > 0:
            raise ValueError(f"StepCache threshold must be > 0, got {threshold!r}")
        self.threshold = float(threshold)
        self.start(0)

    def start(self, num_steps: int) -> None:
        """Forget the previous run; the next ``num_steps`` steps form a new one."""
        self.num_steps = num_steps
        self.accumulated = 0.0
        self.previous: torch.Tensor | None = None
        self.computed: list[bool] = []
        self.changes: list[float] = []

    @property
    def calls(self) -> int:
        return sum(self.computed)

    @property
    def skipped(self) -> int:
        return len(self.computed) - self.calls

    def compute(self, step: int, signal: torch.Tensor, force: bool = False) -> bool:
        """Whether step ``step`` (0-based, in order) must call the denoiser.

        Args:
            signal: this step's signal, any shape (the same shape at every step).
            force: call regardless of the signal (e.g. the frame masks changed at this step).

        Returns:
            True: call the denoiser (the accumulated change restarts at 0); False: reuse the last output.
        """
        if step != len(self.computed):
            raise ValueError(f"StepCache expects steps in order: got step {step} after {len(self.computed)} steps")
        change = 0.0 if self.previous is None else relative_l1(signal, self.previous)
        self.previous = signal
        self.changes.append(change)
        self.accumulated += change
        decision = force or step == 0 or step >= self.num_steps - 1 or self.accumulated >= self.threshold
        if decision:
            self.accumulated = 0.0
        self.computed.append(decision)
        return decision
