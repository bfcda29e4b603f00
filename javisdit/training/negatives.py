"""Encoding clips together with their stage-2 negatives: one VAE call per modality for the positives
and every negative, split back afterwards (used by stage-2 training and by feature extraction)."""

from __future__ import annotations

from collections.abc import Callable, Sequence

import torch

NEGATIVE_KINDS = ("spatial", "temporal")

Negatives = dict[str, torch.Tensor]  # {kind: [B, N, ...]}


def with_negatives(positives: torch.Tensor, negatives: Negatives | None) -> torch.Tensor:
    """[B, ...] and {kind: [B, N, ...]} -> [B + B·N_spatial + B·N_temporal, ...], in that order."""
    if negatives is None:
        return positives
    return torch.cat([positives, *(negatives[k].flatten(0, 1) for k in NEGATIVE_KINDS)])


def split_negatives(z: torch.Tensor, B: int, negatives: Negatives | None) -> tuple[torch.Tensor, Negatives | None]:
    """Inverse of ``with_negatives`` on the latents: ([B, ...], {kind: [B, N, ...]} or None)."""
    if negatives is None:
        return z, None
    counts = [negatives[k].shape[1] for k in NEGATIVE_KINDS]
    parts = z[B:].split([B * n for n in counts])
    return z[:B], {k: part.unflatten(0, (B, n)) for k, part, n in zip(NEGATIVE_KINDS, parts, counts)}


@torch.no_grad()
def encode_with_negatives(
    encode: Callable[..., torch.Tensor],
    positives: torch.Tensor,
    negatives: Negatives | None,
    generators: Callable[[int], Sequence[torch.Generator]],
    device: torch.device,
    dtype: torch.dtype,
) -> tuple[torch.Tensor, Negatives | None]:
    """Latents of the clips and of their negatives, from one ``encode(x, per-row generators)`` call;
    ``generators(rows)`` gives one generator per row of the concatenated batch."""
    x = with_negatives(positives, negatives).to(device, dtype)
    return split_negatives(encode(x, generators(len(x))), positives.shape[0], negatives)


def row_generators(generators: Sequence[torch.Generator], negatives: Negatives | None) -> list[torch.Generator]:
    """Per-row generators for ``with_negatives`` rows, each drawn from its own sample's generator, so a
    sample's rows do not depend on its batch mates."""
    counts = [negatives[k].shape[1] for k in NEGATIVE_KINDS] if negatives is not None else []
    seeds = [torch.randint(0, 2**62, (1 + sum(counts),), generator=g).tolist() for g in generators]
    order = [s[0] for s in seeds]
    offset = 1
    for n in counts:
        order += [s[offset + j] for s in seeds for j in range(n)]
        offset += n
    return [torch.Generator().manual_seed(seed) for seed in order]
