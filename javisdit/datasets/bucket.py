"""Multi-resolution, multi-length buckets (Open-Sora 1.2's scheme, used by JavisDiT stages 1-3).

A bucket config ``{resolution: {num_frames: (probability, batch_size)}}`` lists, per resolution, the clip
lengths to train at; the probability may be a pair (keep this resolution, keep this length). A clip
of T frames and H x W pixels goes to the largest resolution whose pixel budget it reaches (80 %), at the
longest length it holds, subject to those probabilities, drawn from generators seeded per sample and
per epoch so that every process agrees; its aspect ratio is the closest key of that resolution's table.
"""

from __future__ import annotations

from collections.abc import Mapping

import numpy as np

from javisdit.errors import ConfigError
from javisdit.sizes import ASPECT_RATIOS, get_closest_ratio

APPROX = 0.8  # a clip must reach 80 % of a resolution's pixel budget


class Bucket:
    def __init__(self, bucket_config: Mapping[str, Mapping[int, object]]):
        unknown = [name for name in bucket_config if name not in ASPECT_RATIOS]
        if unknown:
            raise ConfigError(f"bucket_config: unknown resolution(s) {unknown}; valid: {', '.join(ASPECT_RATIOS)}")
        if not bucket_config:
            raise ConfigError("bucket_config is empty")
        self.probs: dict[str, dict[int, object]] = {}
        self.batch_sizes: dict[tuple[str, int], int] = {}
        self.ids: dict[tuple[str, int], int] = {}
        self.num_bucket = 0
        for res in sorted(bucket_config, key=lambda r: ASPECT_RATIOS[r][0], reverse=True):
            frames = sorted((int(t) for t in bucket_config[res]), reverse=True)
            self.probs[res] = {}
            for t in frames:
                entry = bucket_config[res][t]
                if not isinstance(entry, (tuple, list)) or len(entry) != 2:
                    raise ConfigError(f"bucket_config[{res!r}][{t}] must be (probability, batch_size), got {entry!r}")
                prob, batch_size = entry
                if int(batch_size) < 1:
                    raise ConfigError(f"bucket_config[{res!r}][{t}]: batch size must be >= 1, got {batch_size}")
                self.probs[res][t] = tuple(prob) if isinstance(prob, (tuple, list)) else prob
                self.batch_sizes[(res, t)] = int(batch_size)
                self.ids[(res, t)] = len(self.ids)
                self.num_bucket += len(ASPECT_RATIOS[res][1])

    def get_bucket_id(self, T: int, H: int, W: int, frame_interval: int = 1, seed: int = 0):
        """``(resolution, num_frames, aspect_ratio_key)`` for a clip, or None when it fits no bucket."""
        for res, lengths in self.probs.items():
            if H * W < APPROX * ASPECT_RATIOS[res][0]:
                continue
            chosen = None
            for t, prob in lengths.items():
                if isinstance(prob, tuple):
                    rng = np.random.default_rng(seed + self.ids[(res, t)])
                    if rng.random() > prob[1]:
                        continue
                if T > t * frame_interval and t != 1:
                    chosen = t
                    break
            if chosen is None:
                continue
            prob = lengths[chosen]
            keep = prob[0] if isinstance(prob, tuple) else prob
            # A fresh generator with the chosen bucket's seed: its first draw decides, as the original.
            if keep >= 1 or np.random.default_rng(seed + self.ids[(res, chosen)]).random() < keep:
                return res, chosen, get_closest_ratio(H, W, ASPECT_RATIOS[res][1])
        return None

    def target_size(self, bucket: tuple[str, int, str]) -> tuple[int, int, int]:
        """(T, H, W) clips of a bucket are cut and resized to."""
        res, t, ar = bucket
        return (t, *ASPECT_RATIOS[res][1][ar])

    def batch_size(self, bucket: tuple[str, int, str]) -> int:
        return self.batch_sizes[bucket[:2]]
