"""Process groups for multi-device runs launched with ``torchrun`` (NCCL on CUDA, gloo on CPU).

Inference uses torch.distributed directly: data parallelism over prompts, and optionally sequence
parallelism within groups of processes (``sequence_parallel``); the training booster (ColossalAI) lives
in its own module and is imported only by training.

Every collective of the main group must finish within its timeout (``dist_timeout`` in training, 30
minutes by default): on NCCL a watchdog aborts the job when one does not. Waiting for rank 0 to write
files (a checkpoint) is no such collective: ``wait_for_main`` waits on a separate gloo group with its own,
longer timeout, so a slow file system cannot take the job down.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from datetime import timedelta

import torch
import torch.distributed as dist

DEFAULT_TIMEOUT_MINUTES = 30.0


@dataclass(frozen=True)
class ProcessInfo:
    rank: int
    world_size: int
    local_rank: int
    device: torch.device

    @property
    def is_main(self) -> bool:
        return self.rank == 0


def timeout(minutes: float | None) -> timedelta:
    """A process-group timeout of ``minutes`` (None: ``DEFAULT_TIMEOUT_MINUTES``).

    Raises:
        ValueError: not a positive number of minutes.
    """
    minutes = DEFAULT_TIMEOUT_MINUTES if minutes is None else float(minutes)
    if not minutes > 0:
        raise ValueError(f"a process-group timeout must be a positive number of minutes, got {minutes}")
    return timedelta(minutes=minutes)


def init_distributed(prefer_cuda: bool = True, timeout_minutes: float | None = None) -> ProcessInfo:
    """Join the torchrun process group if launched by torchrun, and pick this process's device.

    Args:
        timeout_minutes: how long a collective may wait for the other ranks (None: 30 minutes).
    """
    world_size = int(os.environ.get("WORLD_SIZE", "1"))
    rank, local_rank = int(os.environ.get("RANK", "0")), int(os.environ.get("LOCAL_RANK", "0"))
    use_cuda = prefer_cuda and torch.cuda.is_available()
    if use_cuda:
        torch.cuda.set_device(local_rank % torch.cuda.device_count())
        device = torch.device("cuda", local_rank % torch.cuda.device_count())
    else:
        device = torch.device("cpu")
    if world_size > 1 and not dist.is_initialized():
        dist.init_process_group(backend="nccl" if use_cuda else "gloo", timeout=timeout(timeout_minutes))
    return ProcessInfo(rank, world_size, local_rank, device)


def get_rank() -> int:
    """This process's rank in the process group (0 without one)."""
    return dist.get_rank() if dist.is_available() and dist.is_initialized() else 0


def get_world_size() -> int:
    return dist.get_world_size() if dist.is_available() and dist.is_initialized() else 1


def is_main_process() -> bool:
    return get_rank() == 0


def barrier() -> None:
    if dist.is_available() and dist.is_initialized():
        dist.barrier()


# The gloo group of ``wait_for_main``: (main group it belongs to, timeout in minutes, the group).
_wait: tuple[object, float | None, dist.ProcessGroup] | None = None


def wait_group(timeout_minutes: float | None = None) -> dist.ProcessGroup | None:
    """The gloo group that ``wait_for_main`` waits on (None without a group of several processes).

    Made on first use, which is collective: every rank must call this (``wait_for_main`` does) at the
    same point. Later calls return the same group while the main group and the timeout stay the same.
    """
    global _wait
    if get_world_size() == 1:
        return None
    main = dist.group.WORLD
    if _wait is None or _wait[0] is not main or _wait[1] != timeout_minutes:
        _wait = (main, timeout_minutes, dist.new_group(backend="gloo", timeout=timeout(timeout_minutes)))
    return _wait[2]


def wait_for_main(timeout_minutes: float | None = None) -> None:
    """A barrier for the moments when rank 0 works alone (writing files) and the others wait.

    It runs on a gloo group of its own with ``timeout_minutes``, not on the main (NCCL) group, whose
    watchdog would abort the waiting ranks after the main group's timeout.
    """
    group = wait_group(timeout_minutes)
    if group is not None:
        dist.barrier(group=group)


def shutdown() -> None:
    global _wait
    if dist.is_available() and dist.is_initialized():
        _wait = None
        dist.destroy_process_group()
