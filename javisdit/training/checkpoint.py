"""Experiment folders and training checkpoints, in the original's layout (PIPELINE.md §5.8):

    <outputs>/<NNN>-<Model>/             config.txt, log.txt, tensorboard/
        epoch<EEE>-global_step<S>/       model/ (config.json + safetensors), optimizer/, lr_scheduler,
                                         ema.pt, master.safetensors (ZeRO), sampler, running_states.json

``ema.pt`` holds the averaged trained tensors (fp32) by name; ``master.safetensors`` the fp32 master
weights of the trained tensors, which ZeRO keeps apart from the bf16 weights of ``model/`` (with ``ddp``
the parameters are the fp32 masters, so ``model/`` holds them and the file is not written).

A checkpoint is written into a hidden temporary folder and renamed when complete, so a crash or
``kill -9`` while saving leaves the previous checkpoints untouched; leftovers are removed at the next
save. ``model/`` is what ``from_pretrained``, ``weight_init_from`` and ``--ckpt-path`` read;
``export_ema`` makes such a folder with the averaged weights.

Saving first runs everything collective (the optimizer's shards, gathering the EMA and the masters to
rank 0), then rank 0 writes the files while the others wait on a gloo group with ``ckpt_timeout``
(``javisdit.distributed.wait_for_main``), outside the main group's (NCCL) timeout.
"""

from __future__ import annotations

import json
import logging
import os
import re
import shutil
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
import torch.distributed as dist
from torch import nn

from javisdit.distributed import get_world_size, is_main_process, wait_for_main
from javisdit.errors import UserError
from javisdit.models.loading import latest_checkpoint, open_state_dict, read_state_dict, save_pretrained

logger = logging.getLogger(__name__)

RUNNING_STATES = "running_states.json"
EMA_FILE = "ema.pt"
MASTER_FILE = "master.safetensors"
_EXPERIMENT = re.compile(r"^(\d{3,})-")
_CHECKPOINT = re.compile(r"^epoch(\d+)-global_step(\d+)$")


def checkpoint_name(epoch: int, global_step: int) -> str:
    return f"epoch{epoch:03d}-global_step{global_step}"


def create_experiment_dir(outputs: str | os.PathLike, model_type: str) -> Path:
    """A new ``<outputs>/NNN-<model type>`` folder (NNN one above the highest in use); rank 0 creates
    it, every rank gets its path. Only ``NNN-*`` entries count, and creation is exclusive, so two jobs
    started together get different folders (the original counted every entry and could collide)."""
    path = None
    if is_main_process():
        root = Path(outputs)
        root.mkdir(parents=True, exist_ok=True)
        name = model_type.replace("/", "-")
        while path is None:
            used = [int(m.group(1)) for p in root.iterdir() if (m := _EXPERIMENT.match(p.name))]
            candidate = root / f"{max(used, default=-1) + 1:03d}-{name}"
            try:
                candidate.mkdir()
                path = candidate
            except FileExistsError:
                continue
    if get_world_size() > 1:
        box = [str(path) if path else None]
        dist.broadcast_object_list(box, src=0)
        path = Path(box[0])
    return Path(path)


@dataclass(frozen=True)
class RunningStates:
    epoch: int
    step: int  # optimizer steps done in this epoch
    global_step: int
    batch_size: int | None = None

    def to_json(self) -> str:
        return json.dumps(dict(epoch=self.epoch, step=self.step, global_step=self.global_step,
                               batch_size=self.batch_size), indent=2) + "\n"


@dataclass(frozen=True)
class Checkpoint:
    """A checkpoint folder on disk and what it holds."""

    path: Path
    states: RunningStates

    @property
    def model(self) -> Path:
        return self.path / "model"

    @property
    def optimizer(self) -> Path:
        return self.path / "optimizer"

    def file(self, name: str) -> Path | None:
        path = self.path / name
        return path if path.is_file() else None

    def load(self, name: str) -> Any:
        """A file of the checkpoint, or None: a torch file (``lr_scheduler``, ``sampler``, ``ema.pt``;
        memory-mapped, so a large one is read as it is used), or for ``*.safetensors`` the loader's lazy
        name -> ``StoredTensor`` index (``javisdit.models.loading.open_state_dict``)."""
        path = self.file(name)
        if path is None:
            return None
        if path.suffix == ".safetensors":
            return open_state_dict(path)
        return torch.load(path, map_location="cpu", weights_only=True, mmap=True)


def open_checkpoint(path: str | os.PathLike, what: str = "--load") -> Checkpoint:
    """Check that ``path`` is a training checkpoint (or a run folder: its latest checkpoint).

    Raises:
        UserError: no such folder, or not a checkpoint (what is missing is named).
    """
    folder = Path(path)
    if not folder.is_dir():
        raise UserError(f"{what} {path}: no such folder")
    if not (folder / RUNNING_STATES).is_file() and (latest := latest_checkpoint(folder)) is not None:
        folder = latest
    missing = [name for name in (RUNNING_STATES, "model") if not (folder / name).exists()]
    if missing:
        raise UserError(f"{what} {path}: not a training checkpoint (no {' and no '.join(missing)}); give a "
                        "runs/NNN-<Model>/epochEEE-global_stepS folder or its run folder")
    try:
        raw = json.loads((folder / RUNNING_STATES).read_text())
        states = RunningStates(int(raw["epoch"]), int(raw["step"]), int(raw["global_step"]), raw.get("batch_size"))
    except (ValueError, KeyError, TypeError) as err:
        raise UserError(f"{what} {path}: unreadable {RUNNING_STATES} ({type(err).__name__}: {err})") from None
    return Checkpoint(folder, states)


def save_checkpoint(
    exp_dir: Path,
    states: RunningStates,
    write_model: Callable[[Path], None],
    write_optimizer: Callable[[Path], None] | None,
    files: Mapping[str, Callable[[], Any]],
    save_total_limit: int | None = None,
    wait_timeout_minutes: float | None = None,
) -> Path:
    """Write one checkpoint; collective (every rank calls it), rank 0 writes the files.

    Args:
        write_model: rank 0 writes ``model/`` into the folder given.
        write_optimizer: every rank takes part in writing ``optimizer/`` (ZeRO shards it).
        files: name -> a function giving the object to save (called on every rank, since gathering e.g.
            the EMA is collective; saved by rank 0 unless None): ``*.safetensors`` names take a name ->
            tensor dict, others any object for ``torch.save``.
        save_total_limit: keep at most this many checkpoints in ``exp_dir`` (oldest removed first).
        wait_timeout_minutes: how long the other ranks wait for rank 0's writing (None: 30 minutes);
            the wait is on a gloo group, not bound to the main group's timeout.

    Returns:
        The final checkpoint folder.
    """
    main = is_main_process()
    name = checkpoint_name(states.epoch, states.global_step)
    final, tmp = exp_dir / name, exp_dir / f".{name}.tmp"
    if main:
        for stale in exp_dir.glob(".epoch*.tmp"):
            shutil.rmtree(stale, ignore_errors=True)
        tmp.mkdir(parents=True)
    wait_for_main(wait_timeout_minutes)
    # everything that communicates first, so that no rank waits in a collective of the main group
    # while rank 0 writes (ZeRO's optimizer saving writes its shards between its own gathers)
    if write_optimizer is not None:
        write_optimizer(tmp / "optimizer")
    objects = {file_name: make() for file_name, make in files.items()}
    if main:
        write_model(tmp / "model")
        for file_name, obj in objects.items():
            if obj is None:
                continue
            if file_name.endswith(".safetensors"):
                from safetensors.torch import save_file

                save_file(obj, str(tmp / file_name), metadata={"format": "pt"})
            else:
                torch.save(obj, tmp / file_name)
        del objects
        (tmp / RUNNING_STATES).write_text(states.to_json())
        _sync_tree(tmp)
        if final.exists():  # the same step saved again (e.g. the end of a resumed run)
            shutil.rmtree(final)
        os.replace(tmp, final)
        _prune(exp_dir, save_total_limit)
        logger.info("saved checkpoint %s", final)
    wait_for_main(wait_timeout_minutes)
    return final


def export_ema(checkpoint: str | os.PathLike, out: str | os.PathLike) -> Path:
    """A model folder (``config.json`` + ``model.safetensors``, what ``--ckpt-path`` and
    ``from_pretrained`` read) with the checkpoint's averaged weights: ``model/`` with the tensors of
    ``ema.pt`` laid over it, in the dtype of ``model/``'s tensors.

    Args:
        checkpoint: a training checkpoint folder, or a run folder (its latest checkpoint).
        out: the folder to write.

    Raises:
        UserError: not a checkpoint, no ``ema.pt`` in it, or EMA tensors that ``model/`` does not have.
    """
    ckpt = open_checkpoint(checkpoint, what="checkpoint")
    ema = ckpt.load(EMA_FILE)
    if ema is None:
        raise UserError(f"{ckpt.path}: no {EMA_FILE} (stage 2 keeps no EMA)")
    state = read_state_dict(ckpt.model)
    unknown = sorted(set(ema) - set(state))
    if unknown:
        raise UserError(f"{ckpt.path / EMA_FILE}: {len(unknown)} tensor(s) not in model/, e.g. {unknown[0]}")
    for key, value in ema.items():
        state[key] = value.to(state[key].dtype)
    config = ckpt.model / "config.json"
    out = Path(out)
    save_pretrained(nn.Module(), out, config=json.loads(config.read_text()) if config.is_file() else None,
                    state_dict=state)
    return out


def _prune(exp_dir: Path, limit: int | None) -> None:
    if not limit:
        return
    found = sorted((int(m.group(2)), p) for p in exp_dir.iterdir() if p.is_dir() and (m := _CHECKPOINT.match(p.name)))
    for _, old in found[: max(0, len(found) - limit)]:
        shutil.rmtree(old, ignore_errors=True)
        logger.info("removed old checkpoint %s (save_total_limit=%d)", old, limit)


def _sync_tree(folder: Path) -> None:
    """fsync the files of a finished checkpoint before it is renamed into place."""
    for path in folder.rglob("*"):
        if path.is_file():
            with open(path, "rb") as handle:
                os.fsync(handle.fileno())
