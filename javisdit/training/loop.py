"""The training loop shared by the stages (the stage object supplies models and the loss).

One process per device under ``torchrun``; data parallel through the booster seam
(``javisdit.distributed.booster``). Per optimizer step: fetch the batch (workers prefetch in the
background), compute the stage's loss, agree over the ranks that it is finite, backward, compute the
global gradient norm (the same on every rank) and check that it is finite, clip, update, warm-up LR,
EMA. A non-finite loss or gradient norm changes nothing (weights, optimizer state, LR schedule, EMA):
``nan_policy`` ``stop`` ends the run with ``TrainingDiverged`` naming the last checkpoint, ``skip``
counts the step in ``skipped_steps`` and goes on. (In fp16 under ZeRO a non-finite gradient is an
overflow of the loss scale: ZeRO lowers the scale and the step is skipped, whatever the policy.)
Every ``log_every`` steps the metrics, every ``ckpt_every`` steps a checkpoint, and one at the end.
``--load`` resumes model, fp32 master weights, optimizer, LR, EMA, sampler and counters exactly.

The process group's collectives time out after ``dist_timeout`` minutes; while rank 0 writes a
checkpoint the others wait up to ``ckpt_timeout`` minutes on a separate gloo group.

With ``sp_size`` P > 1 (diffusion stages with a VASTDiT3 that trains video) groups of P consecutive
processes train each batch together, its video frames sharded over them
(``javisdit.distributed.sequence_parallel``): the ranks of a group read the same batch and draw the same
noise, timesteps and drops (the data are shared out over the groups, and per-step seeds follow the
group), and the booster's average over all processes gives the right gradient unchanged.
"""

from __future__ import annotations

import importlib.util
import json
import logging
import math
import os
import resource
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

import torch
from mmengine.config import Config
from torch.utils.data import DataLoader
from tqdm import tqdm

from javisdit.datasets.dataloader import build_dataloader
from javisdit.datasets.sampler import StatefulDistributedSampler
from javisdit.distributed import ProcessInfo, init_distributed, shutdown, wait_group
from javisdit.distributed.booster import Accelerator, all_reduce_sum, check_optimizer, make_accelerator
from javisdit.distributed.sequence_parallel import configured_size, enable_sequence_parallel, groups_of
from javisdit.errors import ConfigError, UserError
from javisdit.registry import DATASETS, build_module
from javisdit.training.checkpoint import (
    EMA_FILE,
    MASTER_FILE,
    Checkpoint,
    RunningStates,
    create_experiment_dir,
    open_checkpoint,
    save_checkpoint,
)
from javisdit.training.ema import EMA
from javisdit.training.lr import LinearWarmupLR
from javisdit.training.stages import DiffusionStage, PriorStage
from javisdit.utils.seed import sample_generators, set_seed

if TYPE_CHECKING:
    from javisdit.training.autoencoder import AutoencoderStage

logger = logging.getLogger(__name__)

NAN_POLICIES = ("stop", "skip")


class TrainingDiverged(UserError):
    """The loss or the gradient norm became NaN or infinite (and ``nan_policy`` is ``stop``)."""


@dataclass
class TrainReport:
    exp_dir: Path
    global_step: int = 0
    losses: list[float] = field(default_factory=list)  # the reduced loss of every step run here
    last_checkpoint: Path | None = None
    skipped_samples: int = 0
    skipped_steps: int = 0


def run_diffusion(cfg: Config) -> TrainReport:
    return train(cfg, DiffusionStage(cfg))


def run_prior_training(cfg: Config) -> TrainReport:
    return train(cfg, PriorStage(cfg))


# ----- set-up ------------------------------------------------------------------------------------------


def _check_config(cfg: Config) -> None:
    if cfg.get("dataset") is None or not cfg.dataset.get("data_path"):
        raise ConfigError("no training data: pass --data-path (a CSV, or a feature folder for *_feat configs)")
    check_optimizer(cfg.optimizer)
    for key in ("dist_timeout", "ckpt_timeout"):
        if not float(cfg[key]) > 0:
            raise ConfigError(f"{key} must be a positive number of minutes, got {cfg[key]}")
    if cfg.nan_policy not in NAN_POLICIES:
        raise ConfigError(f"nan_policy must be one of {', '.join(NAN_POLICIES)}, got {cfg.nan_policy!r}")
    for key in ("epochs", "log_every"):
        if int(cfg[key]) < 1:
            raise ConfigError(f"{key} must be >= 1, got {cfg[key]}")
    if cfg.start_from_scratch and not cfg.load:
        raise ConfigError("--start-from-scratch needs --load <checkpoint>")
    if cfg.wandb and importlib.util.find_spec("wandb") is None:
        raise ConfigError("--wandb True needs the wandb package: pip install wandb")


def _threads(info: ProcessInfo) -> None:
    """CPU processes share the cores; more threads than cores per process only slows everyone down."""
    if info.device.type == "cpu":
        local = int(os.environ.get("LOCAL_WORLD_SIZE", "1"))
        torch.set_num_threads(max(1, (os.cpu_count() or 1) // local))
    os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")


def _log_to_file(exp_dir: Path) -> logging.Handler:
    handler = logging.FileHandler(exp_dir / "log.txt")
    handler.setFormatter(logging.Formatter("[%(asctime)s %(levelname)s %(name)s] %(message)s", "%Y-%m-%d %H:%M:%S"))
    logging.getLogger("javisdit").addHandler(handler)
    return handler


def _build_data(cfg: Config, replicas: int, rank: int, pin_memory: bool):
    """(loader, sampler) for a CSV dataset or a feature folder, this process's share of ``replicas``."""
    dataset_cfg = dict(cfg.dataset)
    kind = dataset_cfg.get("type")
    if kind == "BatchFeatureDataset":
        if not cfg.get("load_va_features"):
            raise ConfigError("dataset BatchFeatureDataset reads pre-extracted latents: set load_va_features=True")
        dataset = build_module(dataset_cfg, DATASETS)
        sampler = StatefulDistributedSampler(len(dataset), replicas, rank, seed=cfg.seed)
        workers = int(cfg.num_workers)
        extra = dict(persistent_workers=True, multiprocessing_context="forkserver",
                     prefetch_factor=cfg.prefetch_factor) if workers else {}
        loader = DataLoader(dataset, batch_size=None, sampler=sampler, num_workers=workers, **extra)
        return loader, sampler
    if cfg.get("load_va_features"):
        raise ConfigError("load_va_features=True needs dataset.type='BatchFeatureDataset' (a feature folder)")
    if cfg.get("bucket_config") is None:
        raise ConfigError(f"dataset {kind} needs a bucket_config")
    dataset = build_module(dataset_cfg, DATASETS, audio_cfg=cfg.get("audio_cfg"))
    loader, sampler = build_dataloader(dataset, cfg.bucket_config, seed=cfg.seed, num_workers=int(cfg.num_workers),
                                       prefetch_factor=cfg.prefetch_factor, num_replicas=replicas, rank=rank,
                                       pin_memory=pin_memory)
    return loader, sampler


def _sample_seeds(batch: dict, seed: int, epoch: int) -> list[int]:
    """Each sample's seed: from the sampler (CSV datasets), or from its index (feature batches)."""
    if "seed" in batch:
        return [int(s) for s in batch["seed"]]
    return [(seed * 1_000_003 + epoch * 100_003 + int(i)) % 2**63 for i in batch["index"]]


def _memory_gb(device: torch.device) -> float:
    if device.type == "cuda":
        return torch.cuda.max_memory_allocated(device) / 2**30
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 2**20  # KiB on Linux


class _Metrics:
    """Rank-0 sinks: log line, ``metrics.jsonl``, TensorBoard, and wandb when asked."""

    def __init__(self, cfg: Config, exp_dir: Path, main: bool):
        self.main = main
        self.writer = self.wandb = None
        if not main:
            return
        self.jsonl = open(exp_dir / "metrics.jsonl", "a")  # noqa: SIM115 (kept open; closed by close())
        from torch.utils.tensorboard import SummaryWriter

        self.writer = SummaryWriter(str(exp_dir / "tensorboard"))
        if cfg.wandb:
            import wandb

            self.wandb = wandb.init(project=cfg.get("wandb_project", "JavisDiT"), name=exp_dir.name,
                                    config=cfg.to_dict(), dir=str(exp_dir))

    def log(self, global_step: int, values: dict[str, float]) -> None:
        if not self.main:
            return
        self.jsonl.write(json.dumps({"global_step": global_step, **values}) + "\n")
        self.jsonl.flush()
        for key, value in values.items():
            self.writer.add_scalar(key, value, global_step)
        if self.wandb is not None:
            self.wandb.log(values, step=global_step)

    def close(self) -> None:
        if self.main:
            self.jsonl.close()
            self.writer.close()
            if self.wandb is not None:
                self.wandb.finish()


# ----- the loop ----------------------------------------------------------------------------------------


class Trainer:
    def __init__(self, cfg: Config, stage: DiffusionStage | PriorStage | AutoencoderStage):
        self.cfg, self.stage = cfg, stage
        _check_config(cfg)
        # sp_size is a key of scripts/train.py's configs only (the config check rejects it elsewhere)
        sp_size = configured_size(cfg, "audio-only training") if isinstance(stage, DiffusionStage) else 1
        self.info = init_distributed(timeout_minutes=float(cfg.dist_timeout))
        _threads(self.info)
        # Data parallelism over the sequence-parallel groups (each process a group of its own without SP).
        self.sp = groups_of(sp_size, self.info.world_size, self.info.device)
        self.dp_rank, self.dp_size = self.info.rank // sp_size, self.info.world_size // sp_size
        set_seed(int(cfg.seed))
        self.device = self.info.device
        self.acc: Accelerator = make_accelerator(cfg.plugin, cfg.dtype, self.device, float(cfg.grad_clip or 0.0),
                                                 int(cfg.reduce_bucket_size_in_m),
                                                 bool(cfg.get("find_unused_parameters", False)),
                                                 timeout_minutes=float(cfg.dist_timeout))
        wait_group(float(cfg.ckpt_timeout))  # made now, by all ranks together; saving waits on it
        self.ckpt: Checkpoint | None = open_checkpoint(cfg.load) if cfg.load else None
        # the autoencoder stage trains cfg.vae or cfg.audio_vae (no cfg.model) and names the folder itself
        self.exp_dir = create_experiment_dir(cfg.outputs, getattr(stage, "model_type", None) or cfg.model.type)
        self._file_log = None
        if self.info.is_main:
            (self.exp_dir / "config.txt").write_text(json.dumps(cfg.to_dict(), indent=2, default=str) + "\n")
            self._file_log = _log_to_file(self.exp_dir)
        logger.info("%s in %s: %d process(es) on %s, plugin %s%s", stage.name, self.exp_dir, self.info.world_size,
                    self.device.type, self.acc.plugin,
                    "" if self.sp is None else f", sequence-parallel groups of {sp_size}")

        self.loader, self.sampler = _build_data(cfg, self.dp_size, self.dp_rank, self.device.type == "cuda")
        model = stage.build(self.device, self.acc.dtype)
        if cfg.grad_checkpoint:
            for module in model.modules():
                if hasattr(module, "grad_checkpointing"):
                    module.grad_checkpointing = True
        if self.ckpt is not None:
            stage.load_weights(model, self.ckpt.model)
            logger.info("loaded model weights from %s", self.ckpt.model)
        optimizer = self.acc.make_optimizer(model.parameters(), lr=float(cfg.lr), weight_decay=float(cfg.weight_decay),
                                            eps=float(cfg.adam_eps), kind=cfg.optimizer)
        warmup = cfg.warmup_steps
        lr_scheduler = LinearWarmupLR(optimizer, int(warmup)) if warmup else None
        self.model, self.optimizer, self.lr_scheduler = self.acc.boost(model, optimizer, lr_scheduler)
        self.module = self.acc.unwrap(self.model)
        if self.sp is not None:
            try:
                enable_sequence_parallel(self.module, self.sp)
            except TypeError as err:
                raise ConfigError(f"--sp-size {sp_size}: {err}") from None
        self.module.train()
        self.trainable = {name: p for name, p in self.module.named_parameters() if p.requires_grad}
        self.ema = None
        if stage.uses_ema and cfg.get("ema_decay") is not None:
            self.ema = EMA(self.module, self.optimizer, self.acc, float(cfg.ema_decay))
        self.epoch, self.step_in_epoch, self.global_step = 0, 0, 0
        self._saved_at: int | None = None
        if self.ckpt is not None:
            self._resume(self.ckpt)

    def _resume(self, ckpt: Checkpoint) -> None:
        fresh_lrs = [group["lr"] for group in self.optimizer.param_groups]
        self.acc.load_optimizer(self.optimizer, ckpt.optimizer)
        if self.acc.has_separate_masters:
            self._load_masters(ckpt)
        if self.ema is not None and (state := ckpt.load(EMA_FILE)) is not None:
            self.ema.load_state_dict(state)
        if self.cfg.start_from_scratch:
            for group, lr in zip(self.optimizer.param_groups, fresh_lrs):  # the new run's schedule, not the old
                group["lr"] = lr
            logger.info("--start-from-scratch: weights and optimizer from %s, counters from zero", ckpt.path)
            return
        if self.lr_scheduler is not None and (state := ckpt.load("lr_scheduler")) is not None:
            self.lr_scheduler.load_state_dict(state)
        if (state := ckpt.load("sampler")) is not None:
            self.sampler.load_state_dict(state)
        s = ckpt.states
        self.epoch, self.step_in_epoch, self.global_step = s.epoch, s.step, s.global_step
        self._saved_at = s.global_step
        self.sampler.set_epoch(self.epoch)
        if len(self.sampler) == 0:  # the checkpoint closed its epoch
            self.epoch, self.step_in_epoch = self.epoch + 1, 0
            self.sampler.last_micro_batch_access_index = 0
        logger.info("resumed from %s: epoch %d, step %d, global step %d", ckpt.path, self.epoch, self.step_in_epoch,
                    self.global_step)

    def _load_masters(self, ckpt: Checkpoint) -> None:
        """The fp32 masters of the trained weights (ZeRO built them from the bf16 weights of ``model/``)."""
        state = ckpt.load(MASTER_FILE)
        if state is None:
            logger.warning("%s has no %s: the fp32 master weights start from the %s weights of model/ (rounded)",
                           ckpt.path, MASTER_FILE, self.acc.dtype)
            return
        missing = self.acc.load_master_state(self.optimizer, self.trainable, state, source=str(ckpt.path / MASTER_FILE))
        if missing:
            logger.warning("%s lacks %d trained tensor(s) (e.g. %s): their masters start from model/", MASTER_FILE,
                           len(missing), missing[0])

    # ----- checkpoints ---------------------------------------------------------------------------------

    def save(self) -> Path:
        states = RunningStates(self.epoch, self.step_in_epoch, self.global_step, self.cfg.get("batch_size"))
        files: dict[str, Any] = {"sampler": lambda: self.sampler.state_dict(self.step_in_epoch)}
        if self.lr_scheduler is not None:
            files["lr_scheduler"] = self.lr_scheduler.state_dict
        if self.ema is not None:
            files[EMA_FILE] = self.ema.state_dict
        files[MASTER_FILE] = lambda: self.acc.master_state_dict(self.optimizer, self.trainable)  # None with ddp
        self._saved_at = self.global_step
        return save_checkpoint(self.exp_dir, states, lambda folder: self.stage.save_model(self.module, folder),
                               lambda folder: self.acc.save_optimizer(self.optimizer, folder), files,
                               self.cfg.save_total_limit, wait_timeout_minutes=float(self.cfg.ckpt_timeout))

    # ----- steps ---------------------------------------------------------------------------------------

    def _clock(self) -> float:
        """Now; with ``record_time`` on CUDA, after the queued kernels finish, so phases are timed exactly
        (at the cost of the overlap between them)."""
        if self.cfg.record_time and self.device.type == "cuda":
            torch.cuda.synchronize(self.device)
        return time.perf_counter()

    def _batches(self) -> Iterator[tuple[dict | None, float]]:
        """(batch, seconds waited for it); all ranks see None when any rank's batch was unreadable."""
        iterator = iter(self.loader)
        while True:
            start = self._clock()
            try:
                batch = next(iterator)
            except StopIteration:
                return
            waited = self._clock() - start
            ok = all_reduce_sum(torch.tensor([0.0 if batch is None else 1.0], device=self.device))
            yield (batch if int(ok.item()) == self.info.world_size else None), waited

    def fit(self) -> TrainReport:
        cfg, report = self.cfg, TrainReport(self.exp_dir)
        metrics = _Metrics(cfg, self.exp_dir, self.info.is_main)
        max_steps = cfg.get("max_steps")
        window: dict[str, float] = {}
        done = max_steps is not None and self.global_step >= int(max_steps)  # resumed at the end already
        if done:
            logger.info("resumed at step %d: max_steps (%s) reached, nothing to train", self.global_step, max_steps)
        try:
            while self.epoch < int(cfg.epochs) and not done:
                self.sampler.set_epoch(self.epoch)
                bar = tqdm(total=self.step_in_epoch + len(self.sampler), initial=self.step_in_epoch,
                           desc=f"epoch {self.epoch}", disable=not self.info.is_main, leave=False, dynamic_ncols=True)
                stop = False
                for batch, waited in self._batches():
                    window["time/data"] = window.get("time/data", 0.0) + waited
                    values = self._step(batch, report, window)
                    self.step_in_epoch += 1
                    self.global_step += 1
                    bar.update(1)
                    if values is not None:
                        report.losses.append(values["loss"])
                    if self.global_step % int(cfg.log_every) == 0:
                        self._log(window, metrics, bar)
                        window = {}
                    if cfg.ckpt_every and self.global_step % int(cfg.ckpt_every) == 0:
                        report.last_checkpoint = self.save()
                    stop = max_steps is not None and self.global_step >= int(max_steps)
                    if stop:
                        break
                bar.close()
                if (stop or self.epoch + 1 >= int(cfg.epochs)) and self._saved_at != self.global_step:
                    report.last_checkpoint = self.save()  # the final state, named by the epoch it ends
                if stop:
                    break
                self.epoch, self.step_in_epoch = self.epoch + 1, 0
        finally:
            metrics.close()
            if self._file_log is not None:
                logging.getLogger("javisdit").removeHandler(self._file_log)
                self._file_log.close()
        report.global_step = self.global_step
        logger.info("done: %d steps, last checkpoint %s", self.global_step, report.last_checkpoint)
        return report

    def _step(self, batch: dict | None, report: TrainReport, window: dict[str, float]) -> dict[str, float] | None:
        """One optimizer step; returns the reduced metrics (None when the step was skipped)."""
        cfg = self.cfg
        # any global-RNG use left in a step (e.g. a user's module) is then reproducible on resume
        torch.manual_seed(int(cfg.seed) + 7919 * self.global_step + self.dp_rank)
        if batch is None:
            report.skipped_steps += 1
            window["skipped_steps"] = window.get("skipped_steps", 0) + 1
            logger.warning("global step %d: an unreadable batch on some rank; the step is skipped", self.global_step)
            return None
        start = self._clock()
        generators = sample_generators(_sample_seeds(batch, int(cfg.seed), self.epoch))
        with self.acc.autocast():
            loss, terms = self.stage.loss(self.model, batch, generators)
        names = ["loss", *terms]
        local = torch.stack([loss.detach().float(), *[v.detach().float() for v in terms.values()]]).cpu()
        stats = torch.cat([local, torch.tensor([float(batch.get("skipped", 0)), float(len(generators)),
                                                float(torch.isfinite(local).all())])])
        reduced = all_reduce_sum(stats.to(self.device)).cpu()
        world = self.info.world_size
        finite = int(reduced[-1].item()) == world
        if not finite:
            return self._non_finite(report, window, "loss")
        self.acc.backward(loss, self.optimizer)
        fwd_bwd = self._clock()
        grad_norm = self.acc.grad_norm(self.optimizer, self.model)  # collective: every rank gets the same
        if not math.isfinite(grad_norm):
            return self._non_finite(report, window, "gradient norm")
        window["lr"] = self.optimizer.param_groups[0]["lr"]  # the rate this step uses
        self.acc.step(self.optimizer, self.model, grad_norm)
        if self.lr_scheduler is not None:
            self.lr_scheduler.step()
        if self.ema is not None:
            self.ema.update()
        end = self._clock()
        values = {name: float(reduced[i]) / world for i, name in enumerate(names)}
        sp = world // self.dp_size  # the ranks of a sequence-parallel group count the same samples
        samples, skipped = float(reduced[-2]) / sp, float(reduced[-3]) / sp
        report.skipped_samples += int(skipped)
        for key, value in (("time/forward_backward", fwd_bwd - start), ("time/optimizer", end - fwd_bwd),
                           ("samples", samples), ("skipped", skipped), ("steps", 1.0)):
            window[key] = window.get(key, 0.0) + value
        window.update(values)  # the last step's values are logged
        window["grad_norm"] = grad_norm
        return values

    def _non_finite(self, report: TrainReport, window: dict[str, float], what: str) -> None:
        """A step whose ``what`` (``loss``, or ``gradient norm`` after backward) is not finite on some rank:
        nothing is updated; skip it or stop, by ``nan_policy``."""
        overflow = what != "loss" and self.acc.scales_loss
        if what == "loss":
            self.acc.zero_grad(self.optimizer)
        else:
            self.acc.skip_step(self.optimizer)
        where = f"epoch {self.epoch}, step {self.step_in_epoch}, global step {self.global_step}"
        if overflow or self.cfg.nan_policy == "skip":
            report.skipped_steps += 1
            window["skipped_steps"] = window.get("skipped_steps", 0) + 1
            if overflow:
                logger.info("fp16 loss-scale overflow at %s: step skipped, loss scale lowered", where)
            else:
                logger.warning("non-finite %s at %s: step skipped (nan_policy=skip)", what, where)
            return
        last = report.last_checkpoint or (self.ckpt.path if self.ckpt else None)
        raise TrainingDiverged(
            f"the {what} is not finite at {where}; nothing was updated. Last checkpoint: "
            f"{last or 'none yet'}. Lower the learning rate (--lr), check the data, or set nan_policy='skip' "
            f"(--cfg-options nan_policy=skip) to skip such steps"
        )

    def _log(self, window: dict[str, float], metrics: _Metrics, bar: tqdm) -> None:
        steps = window.get("steps", 0.0)
        elapsed = sum(window.get(k, 0.0) for k in ("time/data", "time/forward_backward", "time/optimizer"))
        lr = window.get("lr", self.optimizer.param_groups[0]["lr"])
        values = {k: v for k, v in window.items() if k in ("loss", "grad_norm") or k.startswith(("loss/", "prior/"))}
        values.update(lr=lr, epoch=self.epoch, skipped=window.get("skipped", 0.0),
                      skipped_steps=window.get("skipped_steps", 0.0), memory_gb=_memory_gb(self.device))
        if steps and elapsed > 0:
            values.update({"steps_per_s": steps / elapsed, "samples_per_s": window.get("samples", 0.0) / elapsed})
            for key in ("time/data", "time/forward_backward", "time/optimizer"):
                values[key] = window.get(key, 0.0) / steps
        metrics.log(self.global_step, values)
        if self.info.is_main and "loss" in values:
            parts = " ".join(f"{k.split('/')[-1]} {v:.4f}" for k, v in values.items() if k.startswith(("loss/",
                                                                                                       "prior/")))
            bar.set_postfix(loss=f"{values['loss']:.4f}")
            logger.info("epoch %d global step %d: loss %.4f (%s) lr %.3g grad norm %.3g | %.2f steps/s %.2f "
                        "samples/s | skipped %d | %.2f GB", self.epoch, self.global_step, values["loss"], parts, lr,
                        values.get("grad_norm", float("nan")), values.get("steps_per_s", 0.0),
                        values.get("samples_per_s", 0.0), values["skipped"], values["memory_gb"])


def train(cfg: Config, stage: DiffusionStage | PriorStage | AutoencoderStage) -> TrainReport:
    try:
        return Trainer(cfg, stage).fit()
    finally:
        shutdown()
