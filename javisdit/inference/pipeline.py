"""Text to sounding video (JavisDiT inference): prompts in, mp4 files with their audio out.

Per batch of prompts: score suffix and caption cleaning; T5 features and ST-prior tokens (with their
null twins for classifier-free guidance); rectified-flow sampling; VAE decoding; muxing. Every random
number of a sample (video noise, audio noise, the prior's Gaussian sample) comes from that sample's own
CPU generator, seeded ``seed + prompt index * num_sample + k``, so a prompt's draws do not depend on
its batch mates, the batch size or the device. Under ``torchrun`` the batches are dealt out to the
processes, each process writes its share and logs its own summary (no final barrier: a slow process
cannot time out the others), and because seeds follow prompt indices, every process count writes the
same files. With ``sp_size`` N > 1 (sequence parallelism, VASTDiT3 only) the processes form groups of N
consecutive ranks: the batches are dealt out to the groups, the N processes of a group compute each sample
together (its video frames sharded, ``javisdit.distributed.sequence_parallel``) and the group's first
process writes it.

Whether the *outputs* also leave the batch out depends on the model: with ``prior_attn_batch_union``
(the default; the published weights were trained so) each sample's ST-prior cross-attention sees the
prior tokens of its whole batch, so a sample still changes with its batch mates; without it, it does
not.
"""

from __future__ import annotations

import inspect
import logging
import os
import time
from collections import defaultdict
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

import torch
from mmengine.config import Config
from tqdm import tqdm

from javisdit.distributed import ProcessInfo, init_distributed, shutdown
from javisdit.distributed.sequence_parallel import configured_size, enable_sequence_parallel, groups_of
from javisdit.errors import ConfigError, UserError
from javisdit.inference.conditioning import (
    Condition,
    build_condition,
    check_flags,
    plan_from_config,
    start_latents,
)
from javisdit.inference.extension import generate_extended
from javisdit.inference.media import to_uint8_frames, write_mp4, write_png, write_wav
from javisdit.inference.prompts import Prompt, load_prompts, output_stem
from javisdit.models import geometry
from javisdit.models.compile import compile_blocks
from javisdit.models.text.cleaning import append_score, text_preprocessing
from javisdit.models.text.t5 import t5_dtype
from javisdit.registry import MODELS, SCHEDULERS, build_module
from javisdit.sizes import get_clip_size
from javisdit.utils.dtype import torch_dtype
from javisdit.utils.seed import randn, set_seed

logger = logging.getLogger(__name__)

IMAGE_FPS = 120  # the fps conditioning of single images


@dataclass
class Models:
    """The models of a run."""

    model: torch.nn.Module
    text_encoder: torch.nn.Module
    audio_vae: torch.nn.Module
    scheduler: object
    vae: torch.nn.Module | None = None
    prior_encoder: torch.nn.Module | None = None
    negative: dict[str, torch.Tensor] | None = None  # the encoded negative prompt (JavisDiT++'s unconditional text)
    audio_after_video: bool = False  # ``generate``'s second pass (config key ``audio_after_video``)


@dataclass
class RunReport:
    written: list[Path] = field(default_factory=list)
    skipped: list[Path] = field(default_factory=list)
    bad_rows: list[str] = field(default_factory=list)  # prompts left out by --skip-bad-rows, with the reason
    seconds: dict[str, float] = field(default_factory=lambda: defaultdict(float))


def build_models(cfg: Config, device: torch.device, dtype: torch.dtype) -> Models:
    """Build (and load) every model of the config on ``device`` in ``dtype``."""
    audio_only = bool(cfg.get("audio_only", False))
    audio_after_video = cfg.get("audio_after_video", False)
    if not isinstance(audio_after_video, bool):
        raise ConfigError(f"audio_after_video must be true or false, got {audio_after_video!r}")
    if audio_after_video and audio_only:
        raise ConfigError("audio_after_video generates the sound again for the generated picture: it needs a "
                          "video (not audio_only)")
    text_encoder = build_module(cfg.text_encoder, MODELS, dtype=dtype)
    text_dtype = t5_dtype(dtype)  # T5 v1.1 overflows in fp16: bf16 then
    text_encoder = text_encoder.to(text_dtype) if getattr(text_encoder, "cpu_offload", False) else \
        text_encoder.to(device, text_dtype)
    prior = None
    if cfg.get("prior_encoder") is not None and not audio_only:
        prior = build_module(cfg.prior_encoder, MODELS).to(device, dtype).eval()
    vae = None if audio_only else build_module(cfg.vae, MODELS).to(device, dtype).eval()
    if vae is not None and hasattr(vae, "channels_last"):  # the layout its convolutions run fastest in
        vae.channels_last()
    audio_vae = build_module(cfg.audio_vae, MODELS).to(device, dtype).eval()
    source = cfg.get("model_path") or cfg.model.get("from_pretrained")
    # Built on the meta device and read tensor by tensor, cast to ``dtype`` on ``device`` as it comes. The
    # sizes below are given to the models that take them (v0.1's DiTs; JavisDiT++ has its own defaults).
    takes = getattr(MODELS.get(cfg.model["type"]), "accepted_kwargs", None)
    extra = dict(in_channels=geometry.VIDEO_LATENT_CHANNELS, caption_channels=text_encoder.output_dim,
                 model_max_length=text_encoder.model_max_length, lora_enabled=cfg.get("lora_enabled", True),
                 lora_dir=cfg.get("lora_dir", "lora"))
    extra = {k: v for k, v in extra.items() if (takes is None or k in takes) and k not in cfg.model}
    model = build_module(cfg.model, MODELS, from_pretrained=source, dtype=dtype, device=device, **extra).eval()
    if cfg.get("compile", False):
        compile_blocks(model)
    if getattr(model, "has_st_prior", False):
        if prior is None:
            raise ConfigError("the model has ST-prior blocks but the config has no prior_encoder")
        pc, mc = prior.config, model.config
        if (pc.spatial_token_num, pc.temporal_token_num, pc.out_dim) != (mc.spatial_prior_len, mc.temporal_prior_len,
                                                                          mc.st_prior_channel):
            raise ConfigError(f"prior_encoder gives {pc.spatial_token_num}+{pc.temporal_token_num} tokens of "
                              f"{pc.out_dim} channels but the model expects {mc.spatial_prior_len}+"
                              f"{mc.temporal_prior_len} of {mc.st_prior_channel}")
    scheduler = build_module(cfg.scheduler, SCHEDULERS)
    negative = None
    if not hasattr(model, "null_text"):  # no learned null caption: guidance is against a negative prompt
        if cfg.get("neg_prompt") is None:
            raise ConfigError(f"{cfg.model['type']} guides against a negative prompt: set neg_prompt in the config")
        negative = text_encoder.encode([cfg.neg_prompt], device=device)
    return Models(model, text_encoder, audio_vae, scheduler, vae, prior, negative, audio_after_video)


def process_prompt(text: str, cfg: Config) -> str:
    """The text the encoders read: score suffixes, then (``use_text_preprocessing``, v0.1) the caption
    cleaning twice; JavisDiT++ reads the prompt as written."""
    text = append_score(text, cfg.get("aes"), cfg.get("flow"), cfg.get("camera_motion"))
    return text_preprocessing(text) if cfg.get("use_text_preprocessing", True) else text


@torch.no_grad()
def generate(gen: Models, texts: list[str], clip: tuple[int, int, int], fps: int, dtype: torch.dtype,
             generator: Sequence[torch.Generator], progress: bool = False, timings: dict | None = None,
             text: dict[str, torch.Tensor] | None = None, device: torch.device | str | None = None,
             condition: Condition | None = None):
    """Sample B clips for processed prompts; returns (video [B, 3, T, H', W'] or None, audio [B, S]).

    Args:
        generator: one generator per prompt (CPU ones make a sample independent of the device); row i's
            video noise, audio noise and prior sample, and any draw of the scheduler, come from
            ``generator[i]``.
        text: the prompts' T5 features when already computed (they do not change between the samples
            of a prompt; the prior is sampled anew each time).
        device: where the models run (default: the DiT's device).
        condition: X-conditional generation (``javisdit.inference.conditioning``): reference latents and
            per-sample frame masks; kept frames start from (and end as) the reference's latents.
    """
    B = len(texts)
    if isinstance(generator, torch.Generator) or len(generator) != B:
        raise ValueError(f"generate needs one generator per prompt ({B}), got {generator!r}")
    generator = list(generator)
    timings = timings if timings is not None else defaultdict(float)
    model = gen.model
    device = torch.device(device) if device is not None else next(model.parameters()).device
    T, H, W = clip
    start = time.perf_counter()
    if text is None:
        text = gen.text_encoder.encode(texts, device=device)
    if gen.negative is not None:  # JavisDiT++: the negative prompt is the unconditional text
        y = torch.cat([text["y"].to(dtype), gen.negative["y"].to(device, dtype).expand(B, *text["y"].shape[1:])])
        mask = torch.cat([text["mask"], gen.negative["mask"].to(text["mask"].device).expand(B, -1)])
        kwargs = dict(y=y, mask=mask)
    else:
        y = torch.cat([text["y"].to(dtype), model.null_text().to(dtype).expand(B, -1, -1, -1)])
        kwargs = dict(y=y, mask=text["mask"].repeat(2, 1))
    if getattr(model, "has_st_prior", False):
        prior = gen.prior_encoder(texts, generator=generator)
        null_spatial, null_temporal = model.null_prior()
        kwargs["spatial_prior"] = torch.cat([prior["spatial_prior"].to(dtype), null_spatial.to(dtype).expand(B, -1, -1)])
        kwargs["temporal_prior"] = torch.cat([prior["temporal_prior"].to(dtype), null_temporal.to(dtype).expand(B, -1, -1)])
    video_fps = IMAGE_FPS if T == 1 else fps
    clip_kwargs = dict(fps=float(video_fps), height=float(H), width=float(W), num_frames=float(T))
    takes = inspect.signature(model.forward).parameters  # each family reads its own of these
    kwargs.update({k: torch.full((2 * B,), v, device=device) for k, v in clip_kwargs.items() if k in takes})
    seconds = T / fps
    z = {}
    if gen.vae is not None:
        z["video"] = randn((B, gen.vae.out_channels, *gen.vae.get_latent_size((T, H, W))), generator, device=device)
    z["audio"] = randn((B, *gen.audio_vae.latent_size(seconds)), generator, device=device)
    timings["encode"] += time.perf_counter() - start

    start = time.perf_counter()
    masks = None
    if condition is not None:
        masks = {k: m.to(device) for k, m in condition.masks.items() if k in z}
        z = start_latents(z, condition.latents, masks)
    z = gen.scheduler.sample(model, z, kwargs, clip_size=(T, H, W), masks=masks, generator=generator,
                             progress=progress)
    if gen.audio_after_video:
        z = _audio_again(gen, z, kwargs, (T, H, W), masks, condition, generator, progress)
    timings["sample"] += time.perf_counter() - start

    start = time.perf_counter()
    video = gen.vae.decode(z["video"].to(dtype), num_frames=T).float() if gen.vae is not None else None
    audio = gen.audio_vae.decode(z["audio"].to(dtype), geometry.audio_samples(seconds))
    timings["decode"] += time.perf_counter() - start
    return video, audio


def _audio_again(gen: Models, z: dict[str, torch.Tensor], kwargs: dict, clip: tuple[int, int, int],
                 masks: dict[str, torch.Tensor] | None, condition: Condition | None,
                 generator: Sequence[torch.Generator], progress: bool) -> dict[str, torch.Tensor]:
    """The second pass of ``audio_after_video``: the sound sampled again from new noise with the first
    pass's video kept as a clean reference (video-to-audio), so that it follows the finished picture rather
    than one as noisy as itself. Audio frames the condition keeps stay kept; without generated video or
    audio frames there is nothing to redo and ``z`` is returned as it is."""
    B = z["video"].shape[0]
    audio_mask = masks.get("audio") if masks else None
    if audio_mask is None:
        audio_mask = torch.ones(B, z["audio"].shape[2], device=z["audio"].device)
    video_mask = masks.get("video") if masks else None
    if not bool((audio_mask > 0).any()) or (video_mask is not None and not bool((video_mask > 0).any())):
        return z
    audio = z["audio"] if condition is None else \
        start_latents({"audio": z["audio"]}, condition.latents, {"audio": audio_mask})["audio"]
    keep_video = torch.zeros(B, z["video"].shape[2], device=z["video"].device)
    return gen.scheduler.sample(gen.model, {"video": z["video"], "audio": audio}, kwargs, clip_size=clip,
                                masks={"video": keep_video, "audio": audio_mask}, generator=generator,
                                progress=progress)


def _check_save_dir(save_dir: Path) -> None:
    try:
        save_dir.mkdir(parents=True, exist_ok=True)
        probe = save_dir / f".write-test-{os.getpid()}"  # one per process: torchrun ranks check at once
        probe.write_bytes(b"")
        probe.unlink()
    except OSError as err:
        raise UserError(f"--save-dir {save_dir} is not writable ({err.strerror or err})") from None


def _extension(T: int, audio_only: bool) -> str:
    return ".wav" if audio_only else (".png" if T == 1 else ".mp4")


def _seed(cfg: Config, prompt: Prompt, k: int) -> int:
    return int(cfg.seed) + prompt.index * int(cfg.num_sample) + k


def run(cfg: Config) -> RunReport:
    """Run inference for a merged config (see ``scripts/inference.py``)."""
    report = RunReport()
    torch_dtype(cfg.get("dtype"))  # checked before any work
    T, H, W = get_clip_size(cfg.num_frames, cfg.resolution, cfg.aspect_ratio, cfg.get("image_size"), int(cfg.fps))
    prompts = load_prompts(cfg.get("prompt"), cfg.get("prompt_path"), cfg.start_index, cfg.get("end_index"))
    check_flags(cfg)
    _check_sequence_parallel(cfg)
    save_dir = Path(cfg.save_dir)
    _check_save_dir(save_dir)
    info: ProcessInfo = init_distributed()
    try:
        with torch.no_grad():
            _run(cfg, info, prompts, (T, H, W), save_dir, report)
    finally:
        shutdown()
    return report


def _check_sequence_parallel(cfg: Config) -> None:
    """``sp_size`` > 1 needs a VASTDiT3 that generates video (checked before anything is built)."""
    size = configured_size(cfg, "audio-only generation")
    if size > 1 and cfg.get("compile", False):  # collectives inside compiled blocks: not tried
        raise ConfigError(f"--sp-size {size} cannot be combined with --compile")


def _run(cfg: Config, info: ProcessInfo, prompts: list[Prompt], clip: tuple[int, int, int], save_dir: Path,
         report: RunReport) -> None:
    sp = groups_of(int(cfg.get("sp_size", 1)), info.world_size, info.device)
    # Data parallelism over the SP groups (each process is a group of its own without SP).
    group, groups = (info.rank, info.world_size) if sp is None else (info.rank // sp.size, info.world_size // sp.size)
    writes = sp is None or sp.rank == 0
    dtype = torch_dtype(cfg.dtype)
    if info.device.type == "cuda" and cfg.get("allow_tf32", True):
        torch.backends.cuda.matmul.allow_tf32 = True
        torch.backends.cudnn.allow_tf32 = True
    audio_only = bool(cfg.get("audio_only", False))
    T = clip[0]
    ext = _extension(T, audio_only)
    verbose, num_sample = int(cfg.verbose), int(cfg.num_sample)
    batch_size = int(cfg.batch_size)
    batches = [prompts[i : i + batch_size] for i in range(0, len(prompts), batch_size)]
    mine = batches[group::groups]
    logger.info("%d prompt(s) in %d batch(es); %s %dx%dx%d at %d fps -> %s (process %d of %d%s)", len(prompts),
                len(batches), "audio" if audio_only else "video", *clip, cfg.fps, save_dir, info.rank, info.world_size,
                "" if sp is None else f"; rank {sp.rank} of sequence-parallel group {group} of {groups}")

    start = time.perf_counter()
    # Seeded before building: models without weights (the tiny configs) are the same in every run
    # and every process. Sampling draws from per-prompt generators.
    set_seed(int(cfg.seed))
    gen = build_models(cfg, info.device, dtype)
    if sp is not None:
        try:
            enable_sequence_parallel(gen.model, sp)
        except TypeError as err:
            raise ConfigError(f"--sp-size {sp.size}: {err}") from None
    plan = plan_from_config(cfg, gen, clip)
    report.seconds["load"] += time.perf_counter() - start

    bar = tqdm(mine, desc="prompts", disable=not (verbose == 1 and info.is_main))
    for batch in bar:
        condition = None
        if plan is not None:
            start = time.perf_counter()
            stride = gen.vae.time_stride if gen.vae is not None else geometry.VIDEO_TIME_STRIDE
            batch, references, errors = plan.references(batch, clip, int(cfg.fps), stride,
                                                        bool(cfg.get("skip_bad_rows", False)))
            report.bad_rows.extend(errors)
            if not batch:
                continue
            condition = build_condition(gen, references, plan.masks, clip, int(cfg.fps), dtype, info.device,
                                        [f"prompt {p.index}" for p in batch])
            report.seconds["reference"] += time.perf_counter() - start
        texts, text = [process_prompt(p.text, cfg) for p in batch], None
        if verbose >= 2:
            for line in texts:
                logger.info("Prompt: %s", line)
        for k in range(num_sample):
            paths = [output_stem(save_dir, p, cfg.get("sample_name"), bool(cfg.prompt_as_path), k, num_sample)
                     .with_suffix(ext) for p in batch]
            done = all(path.exists() for path in paths)
            if sp is not None:  # the group computes together: its writer's view decides
                done = sp.broadcast_flag(done)
            if done:
                report.skipped.extend(paths)
                if verbose >= 2:
                    logger.info("exists, skipped: %s", ", ".join(p.name for p in paths))
                continue
            if text is None:  # once per batch, whatever the number of samples
                start = time.perf_counter()
                text = gen.text_encoder.encode(texts, device=info.device)
                report.seconds["encode"] += time.perf_counter() - start
            generators = [torch.Generator().manual_seed(_seed(cfg, p, k)) for p in batch]
            if int(cfg.get("loop", 1)) > 1:
                video, audio = generate_extended(gen, texts, clip, int(cfg.fps), dtype, generators, int(cfg.loop),
                                                 first=condition, device=info.device, progress=verbose >= 2,
                                                 timings=report.seconds)
            else:
                video, audio = generate(gen, texts, clip, int(cfg.fps), dtype, generators, progress=verbose >= 2,
                                        timings=report.seconds, text=text, device=info.device, condition=condition)
            start = time.perf_counter()
            for i, path in enumerate(paths if writes else ()):
                if path.exists():
                    continue
                wave = audio[i].cpu().numpy()
                if audio_only:
                    write_wav(path, wave, geometry.SAMPLE_RATE)
                elif T == 1:
                    write_png(path, to_uint8_frames(video[i])[0])
                else:
                    write_mp4(path, to_uint8_frames(video[i]), int(cfg.save_fps), wave, geometry.SAMPLE_RATE)
                report.written.append(path)
                if verbose >= 2:
                    logger.info("Saved to %s", path)
            report.seconds["write"] += time.perf_counter() - start
    # No barrier: each process finishes its own share (a barrier after an uneven share is where NCCL's
    # watchdog aborts a slow rank); run() tears the process group down.
    if report.bad_rows:
        logger.warning("%d prompt(s) skipped (--skip-bad-rows): their references could not be used", len(report.bad_rows))
    phases = ", ".join(f"{name} {sec:.1f} s" for name, sec in report.seconds.items())
    logger.info("Inference finished (process %d of %d): %d written, %d already there, in %s (%s)", info.rank,
                info.world_size, len(report.written), len(report.skipped), save_dir, phases)
