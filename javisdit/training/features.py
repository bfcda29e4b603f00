"""Pre-extracted features (the "_feat" path): clip latents computed once by the frozen VAEs, so that
stages 2 and 3 can train without them (``scripts/misc/extract_feat.py``; PIPELINE.md §4.9).

The clips of a CSV are read in the training data order (bucketed batches of the sampler, seeded by
``cfg.seed``), each batch is encoded, and every ``bin_size`` batches are saved together as one bin:
``<save_dir>/s{S}_e{E}/{bin:08d}.bin``, a ``torch.save``d list of batch dicts (keys in ``encode_batch``),
which ``javisdit.datasets.BatchFeatureDataset`` reads back. Bin ``b`` always holds batches
``b·bin_size ...`` of that order (a batch of unreadable clips is replaced by the next one, which may then
also open bin ``b + 1``: a rare duplicate rather than a bin that can never be completed), and the posterior
samples come from generators seeded by (seed, bin, batch), so a bin is the same whichever process
writes it, in one run or after a restart.

Independent processes cover disjoint bin ranges (``--start-index``/``--end-index``); under ``torchrun``
each process of a range takes a contiguous share of its bins. A bin appears only when complete (written
under a temporary name, then renamed), and a rerun skips the leading bins that are already there.
"""

from __future__ import annotations

import logging
import math
import os
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
from mmengine.config import Config
from tqdm import tqdm

from javisdit.cli import format_config
from javisdit.distributed import ProcessInfo, barrier, init_distributed, shutdown
from javisdit.errors import ConfigError, UserError
from javisdit.models.text.t5 import t5_dtype
from javisdit.registry import DATASETS, MODELS, build_module
from javisdit.training.negatives import encode_with_negatives
from javisdit.utils.dtype import torch_dtype
from javisdit.utils.seed import sample_generators, set_seed

logger = logging.getLogger(__name__)

# Metadata keeps exact values whatever the latent dtype (the original stored them in bf16: 277 -> 276).
INT_KEYS = ("height", "width", "num_frames", "audio_fps")
FLOAT_KEYS = ("fps", "onset")
VIDEO_SALT, AUDIO_SALT = 0, 1  # video and audio posterior samples draw from different streams


@dataclass
class Encoders:
    """The frozen models of an extraction run (``vae`` is None for audio-only data, ``audio_vae`` may be None
    for spatial video latents)."""

    audio_vae: torch.nn.Module | None
    vae: torch.nn.Module | None = None
    text_encoder: torch.nn.Module | None = None
    video_latents: str = "full"  # one of VIDEO_LATENTS


#: What ``x`` holds: the video autoencoder's latents ("full"), or its spatial VAE's latents of every frame
#: (x 0.18215; "spatial"), the input of its temporal VAE that ``autoencoder_parts="temporal"`` trains on.
VIDEO_LATENTS = ("full", "spatial")


@dataclass
class ExtractReport:
    folder: Path
    written: list[Path] = field(default_factory=list)
    existing: list[Path] = field(default_factory=list)
    samples: int = 0
    unreadable: int = 0
    seconds: float = 0.0


# ----- bins ------------------------------------------------------------------------------------------------------

def bin_path(folder: Path, index: int) -> Path:
    return folder / f"{index:08d}.bin"


def folder_name(start: int, end: int | None, num_bins: int) -> str:
    """``s{S}_e{E}``; without ``--end-index``, E is the number of bins the data gives."""
    return f"s{start}_e{num_bins if end is None else end}"


def rank_share(bins: range, rank: int, world_size: int) -> range:
    """The contiguous part of ``bins`` that process ``rank`` of ``world_size`` extracts."""
    per = math.ceil(len(bins) / world_size)
    return bins[rank * per : (rank + 1) * per]


def count_done(folder: Path, bins: range) -> int:
    """How many of ``bins``, from the first, are already saved (a saved bin is always complete)."""
    done = 0
    while done < len(bins) and bin_path(folder, bins[done]).is_file():
        done += 1
    return done


def save_atomic(obj: Any, path: Path) -> None:
    """``torch.save`` under a temporary name, then rename: an interrupted run never leaves half a file."""
    tmp = path.with_name(path.name + ".tmp")
    torch.save(obj, tmp)
    os.replace(tmp, path)


def save_text(text: str, path: Path) -> None:
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_text(text)
    os.replace(tmp, path)


def batch_generators(seed: int, bin_index: int, batch_index: int, rows: int, salt: int) -> list[torch.Generator]:
    """Per-row CPU generators of one batch slot, keyed by (seed, bin, position in the bin, row)."""
    base = ((int(seed) * 1_000_003 + bin_index) * 1_009 + batch_index) * 100_003
    return sample_generators([base + row for row in range(rows)], salt=salt)


# ----- encoding ----------------------------------------------------------------------------------------------------

@torch.no_grad()
def encode_batch(batch: dict, encoders: Encoders, device: torch.device, dtype: torch.dtype, seed: int,
                 bin_index: int, batch_index: int) -> dict:
    """One collated batch -> the dict saved in a bin (on the CPU).

    Keys: ``index`` int64 [B] (CSV rows); ``x`` video latents [B, 4, T', H/8, W/8] (spatial latents
    [B, 4, T, H/8, W/8] with ``video_latents="spatial"``) and ``ax`` audio latents [B, 8, Ta, 16] (without
    an audio VAE: none) in ``dtype``; ``text`` and ``raw_text`` (the CSV captions); ``fps`` float32,
    ``audio_fps``/``height``/``width``/``num_frames`` int64 [B]; with negatives ``neg_vx``/``neg_ax``
    ({"spatial", "temporal"}: [B, N, ...]); ``onset`` float32 [B, Tmel] when the dataset gives it;
    ``y`` [B, 1, L, C] / ``mask`` [B, L] with a text encoder.
    """
    out: dict[str, Any] = {"index": batch["index"].to(torch.int64)}
    video_encode = None
    if encoders.vae is not None:
        video_encode = encoders.vae.encode_spatial if encoders.video_latents == "spatial" else encoders.vae.encode
    streams = (("video", "neg_videos", video_encode, VIDEO_SALT, "x", "neg_vx"),
               ("audio", "neg_audios", encoders.audio_vae and encoders.audio_vae.encode, AUDIO_SALT, "ax", "neg_ax"))
    for key, neg_key, encode, salt, out_key, out_neg_key in streams:
        if encode is None:
            continue
        def generators(rows: int, salt: int = salt) -> list[torch.Generator]:
            return batch_generators(seed, bin_index, batch_index, rows, salt)

        z, neg = encode_with_negatives(encode, batch[key], batch.get(neg_key), generators, device, dtype)
        out[out_key] = z.to(dtype).cpu()
        if neg is not None:
            out[out_neg_key] = {k: v.to(dtype).cpu() for k, v in neg.items()}
    out["text"] = list(batch["text"])
    out["raw_text"] = list(batch["text"])
    for key in INT_KEYS:
        out[key] = torch.as_tensor(batch[key]).to(torch.int64)
    for key in FLOAT_KEYS:
        if key in batch:
            out[key] = torch.as_tensor(batch[key]).to(torch.float32)
    if encoders.text_encoder is not None:
        text = encoders.text_encoder.encode(out["text"], device=device)
        out["y"], out["mask"] = text["y"].to(dtype).cpu(), text["mask"].cpu()
    return out


# ----- set-up ------------------------------------------------------------------------------------------------------

def _check_args(cfg: Config) -> tuple[int, int | None, int]:
    torch_dtype(cfg.get("dtype"))
    if not cfg.get("save_dir"):
        raise UserError("--save-dir is required: the folder that receives the feature bins")
    start, end, bin_size = int(cfg.start_index), cfg.get("end_index"), cfg.get("bin_size")
    if not isinstance(bin_size, int) or bin_size < 1:
        raise ConfigError(f"bin_size must be a positive integer, got {bin_size!r}")
    if start < 0:
        raise UserError(f"--start-index must be >= 0, got {start}")
    if end is not None and start >= int(end):
        raise UserError(f"--start-index ({start}) must be smaller than --end-index ({end})")
    if cfg.get("dataset") is None or not cfg.dataset.get("data_path"):
        raise UserError("no clips to read: pass --data-path CSV (dataset.data_path is not set)")
    if cfg.get("bucket_config") is None:
        raise ConfigError("feature extraction reads clips in buckets: the config needs a bucket_config")
    if cfg.video_latents not in VIDEO_LATENTS:
        raise ConfigError(f"video_latents must be one of {', '.join(map(repr, VIDEO_LATENTS))}, got "
                          f"{cfg.video_latents!r}")
    spatial = cfg.video_latents == "spatial"
    if spatial and cfg.audio_only:
        raise ConfigError("video_latents='spatial' encodes video: audio_only must be False")
    for key in ("vae", "audio_vae"):
        optional = (key == "vae" and cfg.audio_only) or (key == "audio_vae" and spatial)
        if cfg.get(key) is None and not optional:
            raise ConfigError(f"feature extraction needs the config's {key} (the model that encodes the clips)")
    if cfg.save_text_features and cfg.get("text_encoder") is None:
        raise ConfigError("save_text_features=True needs a text_encoder in the config")
    return start, None if end is None else int(end), bin_size


def _check_writable(folder: Path) -> None:
    try:
        folder.mkdir(parents=True, exist_ok=True)
        probe = folder / f".write-test-{os.getpid()}"
        probe.write_bytes(b"")
        probe.unlink()
    except OSError as err:
        raise UserError(f"--save-dir {folder} is not writable ({err.strerror or err})") from None


def build_encoders(cfg: Config, device: torch.device, dtype: torch.dtype) -> Encoders:
    # Seeded first: encoders without weights (the tiny configs) are then the same in every run.
    set_seed(int(cfg.seed))
    vae = None if cfg.audio_only else build_module(cfg.vae, MODELS).to(device, dtype).eval()
    audio_vae = None if cfg.get("audio_vae") is None else build_module(cfg.audio_vae, MODELS).to(device, dtype).eval()
    text_encoder = None
    if cfg.save_text_features:
        text_encoder = build_module(cfg.text_encoder, MODELS, dtype=dtype)
        on_cpu = getattr(text_encoder, "cpu_offload", False)
        text_dtype = t5_dtype(dtype)  # T5 v1.1 overflows in fp16: bf16 then
        text_encoder = text_encoder.to(text_dtype) if on_cpu else text_encoder.to(device, text_dtype)
    return Encoders(audio_vae, vae, text_encoder, cfg.video_latents)


def build_data(cfg: Config):
    """The clip dataset and its bucketed loader; every process reads the same, global, batch order."""
    from javisdit.datasets import build_dataloader

    overrides: dict[str, Any] = dict(audio_cfg=cfg.get("audio_cfg"))
    if cfg.audio_only:
        overrides["audio_only"] = True
    dataset = build_module(cfg.dataset, DATASETS, **overrides)
    if not hasattr(dataset, "clip_sizes"):
        raise ConfigError(f"feature extraction reads clips; dataset.type {cfg.dataset.type!r} does not give any")
    try:
        loader, sampler = build_dataloader(dataset, cfg.bucket_config, seed=int(cfg.seed),
                                           num_workers=int(cfg.num_workers), prefetch_factor=cfg.prefetch_factor,
                                           num_replicas=1, rank=0,
                                           frame_interval=int(cfg.dataset.get("frame_interval", 1)))
        num_batches = len(sampler)
    except ValueError as err:  # no complete batch in any bucket
        raise UserError(f"{cfg.dataset.data_path}: {err}") from None
    return loader, sampler, num_batches


# ----- run ---------------------------------------------------------------------------------------------------------

def run(cfg: Config) -> ExtractReport:
    """Extract the features of a merged config (see ``scripts/misc/extract_feat.py``)."""
    started = time.perf_counter()
    start, end, bin_size = _check_args(cfg)
    save_dir = Path(cfg.save_dir)
    _check_writable(save_dir)
    loader, sampler, num_batches = build_data(cfg)
    num_bins = num_batches // bin_size
    folder = save_dir / folder_name(start, end, num_bins)
    report = ExtractReport(folder)
    stop = num_bins if end is None else min(num_bins, end)
    if start >= stop:
        logger.warning("nothing to extract: the data gives %d bin(s) of %d batches, --start-index is %d",
                       num_bins, bin_size, start)
        return report
    info: ProcessInfo = init_distributed()
    try:
        mine = rank_share(range(start, stop), info.rank, info.world_size)
        folder.mkdir(parents=True, exist_ok=True)
        if info.is_main:
            save_text(format_config(cfg), folder / "config.txt")
        done = count_done(folder, mine)
        report.existing = [bin_path(folder, b) for b in mine[:done]]
        logger.info("%d batch(es) -> %d bin(s) of %d; bins %d-%d to %s (process %d of %d: %d bin(s), %d already "
                    "there)", num_batches, num_bins, bin_size, start, stop - 1, folder, info.rank, info.world_size,
                    len(mine), done)
        if done < len(mine):
            encoders = build_encoders(cfg, info.device, torch_dtype(cfg.dtype))
            _extract(cfg, loader, sampler, encoders, info, folder, mine[done:], bin_size, report)
        barrier()
    finally:
        shutdown()
    report.seconds = time.perf_counter() - started
    logger.info("Feature extraction finished: %d bin(s) written, %d already there, %d sample(s) encoded "
                "(%d unreadable skipped) in %.1f s -> %s", len(report.written), len(report.existing),
                report.samples, report.unreadable, report.seconds, folder)
    return report


def _extract(cfg: Config, loader, sampler, encoders: Encoders, info: ProcessInfo, folder: Path, bins: range,
             bin_size: int, report: ExtractReport) -> None:
    dtype, seed = torch_dtype(cfg.dtype), int(cfg.seed)
    bar = tqdm(total=len(bins) * bin_size, desc="batches", disable=not info.is_main)
    iterator, slot = None, -1  # slot: position in the global batch order of the iterator's next batch
    for b in bins:
        if iterator is None or slot != b * bin_size:  # start of the range, or the last bin borrowed a batch
            sampler.last_micro_batch_access_index = slot = b * bin_size
            iterator = iter(loader)
        items: list[dict] = []
        while len(items) < bin_size:
            batch = next(iterator, StopIteration)
            slot += 1
            if batch is StopIteration:
                break
            if batch is None:  # every sample of it unreadable (logged by the dataset): take the next one
                logger.warning("bin %d: batch %d of the data order could not be read; the next one fills in "
                               "(and may then appear in two bins)", b, slot - 1)
                continue
            items.append(encode_batch(batch, encoders, info.device, dtype, seed, b, len(items)))
            report.samples += len(items[-1]["index"])
            report.unreadable += int(batch.get("skipped", 0))
            bar.update(1)
        if len(items) < bin_size:
            logger.warning("bin %d not written: the data ran out after %d of its %d batches", b, len(items), bin_size)
            break
        path = bin_path(folder, b)
        save_atomic(items, path)
        report.written.append(path)
    bar.close()
