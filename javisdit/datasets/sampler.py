"""The variable-size distributed batch sampler: batches of one bucket (same length and size) each,
dealt out to the processes, resumable exactly mid-epoch.

Per epoch, every row gets a bucket (``Bucket.get_bucket_id``, seeded per row and epoch); each bucket's
rows are shuffled and cut into batches (the incomplete last batch dropped); the list of batches is
shuffled and trimmed to a multiple of the number of processes; step i gives process r batch i·W + r.
Each yielded item is a list of ``(row, T, H, W, seed)`` tuples: the clip's target size and the seed of
its random choices (crop window, negatives), so what a sample looks like does not depend on which
process or worker loads it, and a resumed run sees exactly the batches it had not seen yet.
"""

from __future__ import annotations

import logging
from collections import defaultdict

import torch
from torch.utils.data import Sampler

from javisdit.datasets.bucket import Bucket
from javisdit.distributed import get_rank, get_world_size

logger = logging.getLogger(__name__)


class VariableVideoBatchSampler(Sampler):
    def __init__(self, clip_sizes: list[tuple[int, int, int]], bucket_config: dict, num_replicas: int | None = None,
                 rank: int | None = None, seed: int = 42, frame_interval: int = 1, drop_last: bool = True):
        num_replicas = get_world_size() if num_replicas is None else num_replicas
        rank = get_rank() if rank is None else rank
        self.clip_sizes = clip_sizes
        self.bucket = Bucket(bucket_config)
        self.num_replicas, self.rank, self.seed = num_replicas, rank, seed
        self.frame_interval, self.drop_last = frame_interval, drop_last
        self.epoch = 0
        self.last_micro_batch_access_index = 0
        self._plan_cache: tuple[int, list] | None = None

    def set_epoch(self, epoch: int) -> None:
        self.epoch = epoch

    def group_by_bucket(self) -> dict[tuple, list[int]]:
        groups: dict[tuple, list[int]] = defaultdict(list)
        for row, (T, H, W) in enumerate(self.clip_sizes):
            bucket = self.bucket.get_bucket_id(T, H, W, self.frame_interval,
                                               seed=self.seed + self.epoch + row * self.bucket.num_bucket)
            if bucket is not None:
                groups[bucket].append(row)
        return dict(groups)

    def _plan(self) -> list[tuple[tuple, list[int]]]:
        """All batches of the epoch in order, for every process (cached per epoch)."""
        if self._plan_cache is not None and self._plan_cache[0] == self.epoch:
            return self._plan_cache[1]
        g = torch.Generator().manual_seed(self.seed + self.epoch)
        batches = []
        for bucket, rows in sorted(self.group_by_bucket().items()):
            bs = self.bucket.batch_size(bucket)
            order = [rows[i] for i in torch.randperm(len(rows), generator=g).tolist()]
            usable = len(order) - len(order) % bs if self.drop_last else len(order)
            batches += [(bucket, order[i : i + bs]) for i in range(0, usable, bs)]
        batches = [batches[i] for i in torch.randperm(len(batches), generator=g).tolist()]
        batches = batches[: len(batches) - len(batches) % self.num_replicas]
        if not batches:
            raise ValueError(f"the bucket config admits no complete batch of {len(self.clip_sizes)} clips "
                             f"for {self.num_replicas} process(es)")
        self._plan_cache = (self.epoch, batches)
        return batches

    def __iter__(self):
        plan = self._plan()
        start = self.last_micro_batch_access_index // self.num_replicas
        self.last_micro_batch_access_index = 0  # only the resumed epoch starts late
        for step in range(start, len(plan) // self.num_replicas):
            bucket, rows = plan[step * self.num_replicas + self.rank]
            T, H, W = self.bucket.target_size(bucket)
            yield [(row, T, H, W, self.sample_seed(row)) for row in rows]

    def sample_seed(self, row: int) -> int:
        return (self.seed * 1_000_003 + self.epoch * 100_003 + row) % 2**63

    def __len__(self) -> int:
        return len(self._plan()) // self.num_replicas - self.last_micro_batch_access_index // self.num_replicas

    def state_dict(self, num_steps: int) -> dict:
        """State after ``num_steps`` steps of this epoch (all processes advance together)."""
        return {"seed": self.seed, "epoch": self.epoch, "last_micro_batch_access_index": num_steps * self.num_replicas}

    def load_state_dict(self, state: dict) -> None:
        self.seed, self.epoch = state["seed"], state["epoch"]
        self.last_micro_batch_access_index = state["last_micro_batch_access_index"]



class StatefulDistributedSampler(Sampler):
    """Indices of a dataset whose items are already batches (``BatchFeatureDataset``): shuffled per
    epoch with the same order on every process, split over the processes, resumable mid-epoch with
    the same ``state_dict`` as ``VariableVideoBatchSampler``."""

    def __init__(self, num_items: int, num_replicas: int | None = None, rank: int | None = None, seed: int = 42,
                 shuffle: bool = True):
        num_replicas = get_world_size() if num_replicas is None else num_replicas
        rank = get_rank() if rank is None else rank
        if num_items < num_replicas:
            raise ValueError(f"{num_items} feature batch(es) cannot feed {num_replicas} process(es)")
        self.num_items, self.num_replicas, self.rank = num_items, num_replicas, rank
        self.seed, self.shuffle, self.epoch = seed, shuffle, 0
        self.last_micro_batch_access_index = 0

    def set_epoch(self, epoch: int) -> None:
        self.epoch = epoch

    def _order(self) -> list[int]:
        if self.shuffle:
            order = torch.randperm(self.num_items, generator=torch.Generator().manual_seed(self.seed + self.epoch))
            order = order.tolist()
        else:
            order = list(range(self.num_items))
        return order[: self.num_items - self.num_items % self.num_replicas]

    def __iter__(self):
        order = self._order()
        start = self.last_micro_batch_access_index // self.num_replicas
        self.last_micro_batch_access_index = 0
        for step in range(start, len(order) // self.num_replicas):
            yield order[step * self.num_replicas + self.rank]

    def __len__(self) -> int:
        return self.num_items // self.num_replicas - self.last_micro_batch_access_index // self.num_replicas

    def state_dict(self, num_steps: int) -> dict:
        return {"seed": self.seed, "epoch": self.epoch, "last_micro_batch_access_index": num_steps * self.num_replicas}

    def load_state_dict(self, state: dict) -> None:
        self.seed, self.epoch = state["seed"], state["epoch"]
        self.last_micro_batch_access_index = state["last_micro_batch_access_index"]
