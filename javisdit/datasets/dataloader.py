"""Batches: the collate function (drops and counts unreadable samples) and the DataLoader builder."""

from __future__ import annotations

import logging
import random

import numpy as np
import torch
from torch.utils.data import DataLoader, default_collate

from javisdit.datasets.sampler import VariableVideoBatchSampler

logger = logging.getLogger(__name__)


def collate(samples: list) -> dict | None:
    """Stack the samples that could be read; ``skipped`` counts the others. A batch of nothing but
    unreadable samples becomes None, with a warning (the training loop skips it)."""
    good = [s for s in samples if s is not None]
    skipped = len(samples) - len(good)
    if not good:
        logger.warning("a whole batch of %d sample(s) could not be read; it is skipped", len(samples))
        return None
    batch = default_collate(good)
    batch["skipped"] = skipped
    return batch


def _seed_worker(worker_id: int) -> None:
    # torch seeds each worker from the loader's generator (distinct per process, worker and epoch);
    # python and numpy follow. Sample randomness itself is seeded per sample by the sampler.
    seed = torch.initial_seed() % 2**32
    random.seed(seed)
    np.random.seed(seed)


def build_dataloader(dataset, bucket_config: dict, seed: int = 42, num_workers: int = 0,
                     prefetch_factor: int | None = None, num_replicas: int | None = None, rank: int | None = None,
                     frame_interval: int = 1, pin_memory: bool = False) -> tuple[DataLoader, VariableVideoBatchSampler]:
    sampler = VariableVideoBatchSampler(dataset.clip_sizes(), bucket_config, num_replicas=num_replicas, rank=rank,
                                        seed=seed, frame_interval=frame_interval)
    generator = torch.Generator().manual_seed(seed + 7919 * sampler.rank)
    # Workers start from a clean process ("forkserver"): forking a process that already ran codec and
    # math threads can deadlock the children. They persist across epochs, so the start-up is paid once.
    workers = dict(multiprocessing_context="forkserver", persistent_workers=True,
                   prefetch_factor=prefetch_factor) if num_workers > 0 else {}
    loader = DataLoader(dataset, batch_sampler=sampler, num_workers=num_workers, collate_fn=collate,
                        worker_init_fn=_seed_worker, generator=generator, pin_memory=pin_memory, **workers)
    return loader, sampler
