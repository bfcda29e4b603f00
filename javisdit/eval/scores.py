"""Per-sample scores from embeddings, and their aggregation over the set and its categories.

* cosine: ``nn.CosineSimilarity(eps=1e-6)`` as upstream (IB, CLIP, CLAP, CAVP);
* AVHScore (TAVGBench): mean over frames of cos(frame, whole audio);
* JavisScore: per window, the mean of the lowest ⌊0.4·N⌋ frame-vs-window-audio cosines (N frames in the
  window), then the mean over windows (EVAL.md §1.3, items 5-6);
* per-category means from ``cat*_ind`` (EVAL.md §1.2, ``--verbose``).
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import torch
import torch.nn.functional as F

from javisdit.eval.inputs import CATEGORIES

COSINE_EPS = 1e-6
BOTTOM_FRACTION = 0.4


def cosine(a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    """Cosine similarity along the last axis (broadcasting), float32."""
    return F.cosine_similarity(a.float(), b.float(), dim=-1, eps=COSINE_EPS)


def avh_score(frame_embeds: torch.Tensor, audio_embed: torch.Tensor) -> float:
    """frames [N, E] vs audio [E] -> mean over frames of the cosine."""
    return float(cosine(frame_embeds, audio_embed[None]).mean())


def bottom_mean(values: torch.Tensor, fraction: float = BOTTOM_FRACTION) -> float:
    """Mean of the ⌊fraction·N⌋ smallest values (all of them when that is 0)."""
    k = int(math.floor(fraction * values.numel()))
    if k == 0:
        return float(values.mean())
    return float(torch.topk(values.flatten(), k, largest=False).values.mean())


def javis_score(frame_embeds: torch.Tensor, window_audio_embeds: torch.Tensor,
                video_windows: Sequence[tuple[int, int]]) -> float:
    """JavisScore of one sample.

    Args:
        frame_embeds: [N, E], one embedding per frame.
        window_audio_embeds: [M, E], one per audio window.
        video_windows: M frame ranges [start, end), paired with the audio windows.
    """
    if len(video_windows) != window_audio_embeds.shape[0]:
        raise ValueError(f"{len(video_windows)} video windows for {window_audio_embeds.shape[0]} audio windows")
    per_window = [bottom_mean(cosine(frame_embeds[start:end], audio[None]))
                  for (start, end), audio in zip(video_windows, window_audio_embeds)]
    return float(sum(per_window) / len(per_window))


def mean(values: Sequence[float]) -> float:
    return float(sum(values) / len(values)) if values else float("nan")


def category_means(values: Sequence[float], categories: Sequence[Sequence[Sequence[int]]]) -> dict[str, list]:
    """Per aspect k (key ``str(k)``), the mean score of each category (None where no row has it).

    Args:
        values: one score per row.
        categories: per row, per aspect, the category indices of the row.
    """
    out = {}
    for aspect, names in enumerate(CATEGORIES):
        means = []
        for category in range(len(names)):
            members = [v for v, cats in zip(values, categories) if category in cats[aspect]]
            means.append(mean(members) if members else None)
        out[str(aspect)] = means
    return out


def category_subsets(categories: Sequence[Sequence[Sequence[int]]]) -> dict[tuple[int, int], list[int]]:
    """(aspect, category) -> the positions of the rows in it (for set metrics recomputed per category)."""
    return {(aspect, category): [i for i, cats in enumerate(categories) if category in cats[aspect]]
            for aspect, names in enumerate(CATEGORIES) for category in range(len(names))}
