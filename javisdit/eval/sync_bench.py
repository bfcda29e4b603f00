"""The JavisDiT-mini synchronisation benchmark, on the data side: what the measures of ``eval.sync`` give
on real clips of the bouncing-ball set (the ceiling), on the same clips with another clip's audio (chance),
and how well each weight-free measure separates synchronous from asynchronous pairs (AUROC over shifted,
swapped, muted and reversed audio); and on clips generated from the held-out captions by the model and by
its ablations (``generated_rows``), scored by the same ``clip_scores``.
"""

from __future__ import annotations

import dataclasses
import logging
from collections.abc import Mapping, Sequence
from pathlib import Path

import numpy as np
import pandas as pd

from javisdit.datasets.bouncing import COLOURS, MATERIALS
from javisdit.errors import UserError
from javisdit.eval.av_align import av_align
from javisdit.eval.media import load_sample
from javisdit.eval.sync import Variant, async_variants, auroc, event_scores, impact_times, prf, swap_audio
from javisdit.eval.sync_detect import audio_onsets, burst_features, classify_bursts, colour_presence

logger = logging.getLogger(__name__)

TOLERANCES_FRAMES = (1, 2)


@dataclasses.dataclass(frozen=True)
class Setting:
    """How a row of generated clips is made: ``skip`` names the ``VASTDiT3.skip_sync`` modules left out,
    ``null_prior`` replaces the prior tokens by the learned null prior, ``v2a`` generates only the sound, for
    the data clip's own picture (X-conditional video-to-audio): does the sound follow a given picture?"""

    skip: frozenset[str] = frozenset()
    null_prior: bool = False
    v2a: bool = False


#: generated-clip conditions: row name -> how its clips are made
CONDITIONS: dict[str, Setting] = {
    "model": Setting(),
    "model, null ST-prior": Setting(null_prior=True),
    "model, no video-audio cross-attention": Setting(skip=frozenset({"va_cross"})),
    "model, neither (stage-1 towers alone)": Setting(skip=frozenset({"va_cross", "st_prior"})),
    "v2a: sound for the data clip's picture": Setting(v2a=True),
    "v2a, no video-audio cross-attention": Setting(skip=frozenset({"va_cross"}), v2a=True),
}
ASYNC_SHIFT_FRAMES = (3, 12)  # a 2-frame shift would still count as in sync at ±2 frames


def clip_scores(frames: np.ndarray, fps: float, wave: np.ndarray, sample_rate: int, colours: Sequence[str],
                materials: Sequence[str], video_times: Sequence[float] | None = None) -> dict:
    """What one clip's picture and sound say against its caption.

    Args:
        frames: uint8 [T, H, W, 3]; wave: mono float [S] at ``sample_rate``.
        colours, materials: the caption's balls (names of ``COLOURS`` / ``MATERIALS``).
        video_times: the picture's impact times when already known (they do not depend on the audio).

    Returns:
        ``colour`` (the lowest fraction of frames in which each named ball is found), ``material`` (the
        fraction of detected impact sounds classified as one of the caption's materials), the event
        scores of ``eval.sync.event_scores`` (F1 at ±1 and ±2 frames, signed median offset) and
        ``video_times``.
    """
    rgbs = [COLOURS[c] for c in colours]
    if video_times is None:
        video_times = impact_times(frames, fps, rgbs)
    onsets = audio_onsets(wave, sample_rate)
    classes = classify_bursts(burst_features(wave, sample_rate, onsets), MATERIALS) if onsets else []
    material = float(np.mean([c in materials for c in classes])) if classes else 0.0
    out = event_scores(video_times, onsets, fps)
    out.update(colour=min(colour_presence(frames, rgb) for rgb in rgbs), material=material,
               video_times=list(video_times))
    return out


def _plain(value):
    """A config value as JSON writes it: tuples as lists, config dicts as dicts."""
    if isinstance(value, Mapping):
        return {k: _plain(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_plain(v) for v in value]
    return value


def _summary(rows: list[dict]) -> dict:
    """Pooled event precision, recall and F1 over clips, mean colour/material scores, median of the clips'
    median offsets."""
    out: dict = {"clips": len(rows)}
    for tol in TOLERANCES_FRAMES:
        tp, fp, fn = (sum(r[f"{key}_{tol}f"] for r in rows) for key in ("tp", "fp", "fn"))
        out[f"precision_{tol}f"], out[f"recall_{tol}f"], out[f"f1_{tol}f"] = prf(tp, fp, fn)
    offsets = [r["median_offset_ms"] for r in rows if r.get("median_offset_ms") is not None]
    out["median_offset_ms"] = float(np.median(offsets)) if offsets else None
    out["colour"] = float(np.mean([r["colour"] for r in rows]))
    out["material"] = float(np.mean([r["material"] for r in rows]))
    return out


def data_baselines(csv: str | Path, num_clips: int | None = None, seed: int = 0) -> dict:
    """Ceiling (the clips as they are), chance (another clip's audio) and the sync/async AUROC of each
    measure, over the first ``num_clips`` rows of a bouncing-ball CSV (e.g. ``heldout.csv``)."""
    csv = Path(csv)
    table = pd.read_csv(csv, keep_default_na=False)
    if num_clips is not None:
        table = table.head(num_clips)
    rng = np.random.default_rng(seed)
    clips = []
    for record in table.to_dict("records"):
        video = csv.parent / record["path"]
        sample = load_sample(video, csv.parent / record["audio_path"])
        clips.append((sample, record["colours"].split(), record["materials"].split()))
    ceiling, chance = [], []
    positives: dict[str, list[float]] = {"event_f1_1f": [], "event_f1_2f": [], "av_align": []}
    negatives: dict[str, list[float]] = {k: [] for k in positives}
    waves = [s.mono(16000) for s, _, _ in clips]
    swapped = [wave for _, wave in swap_audio(waves, rng)]
    for i, (sample, colours, materials) in enumerate(clips):
        base = clip_scores(sample.frames, sample.fps, waves[i], 16000, colours, materials)
        ceiling.append(base)
        chance.append(clip_scores(sample.frames, sample.fps, swapped[i], 16000, colours, materials,
                                  video_times=base["video_times"]))
        variants = [*async_variants(waves[i], 16000, sample.fps, rng, shift_frames=ASYNC_SHIFT_FRAMES),
                    Variant("swapped", 0, swapped[i])]
        for variant in variants:
            scores = event_scores(base["video_times"], audio_onsets(variant.wave, 16000), sample.fps)
            target = positives if variant.sync else negatives
            target["event_f1_1f"].append(scores["f1_1f"])
            target["event_f1_2f"].append(scores["f1_2f"])
            target["av_align"].append(av_align(sample.frames, sample.fps, variant.wave, 16000))
    return {
        "ceiling": _summary(ceiling),
        "chance (swapped audio)": _summary(chance),
        "auroc": {k: auroc(positives[k], negatives[k]) for k in positives},
        "pairs": {"sync": len(positives["av_align"]), "async": len(negatives["av_align"])},
        "protocol": {"csv": str(csv), "clips": len(clips), "seed": seed, "tolerances_frames": TOLERANCES_FRAMES,
                     "async_shift_frames": ASYNC_SHIFT_FRAMES, "sample_rate": 16000},
    }


def autoencoded_rows(cfg, csv: str | Path, num_clips: int) -> dict:
    """The clips of ``csv`` through the config's two autoencoders (encode, decode: what a generated clip
    can at best look and sound like), scored against their captions: ``{"data through the autoencoders":
    summary}``. The first ``num_frames`` of each clip and the matching audio are used."""
    import torch

    from javisdit.models import geometry
    from javisdit.registry import MODELS, build_module
    from javisdit.sizes import get_clip_size

    csv = Path(csv)
    records = pd.read_csv(csv, keep_default_na=False).head(num_clips).to_dict("records")
    if not records:
        raise UserError(f"{csv}: no clips")
    T = get_clip_size(cfg.num_frames, cfg.resolution, cfg.aspect_ratio, cfg.get("image_size"))[0]
    vae, audio_vae = build_module(cfg.vae, MODELS).eval(), build_module(cfg.audio_vae, MODELS).eval()
    rows = []
    for record in records:
        sample = load_sample(csv.parent / record["path"], csv.parent / record["audio_path"])
        if sample.num_frames < T:
            raise UserError(f"{record['path']}: {sample.num_frames} frames, {T} needed")
        seconds = T / sample.fps
        frames = torch.from_numpy(sample.frames[:T]).permute(3, 0, 1, 2)[None].float() / 127.5 - 1
        wave = torch.from_numpy(sample.mono(geometry.SAMPLE_RATE)[: geometry.audio_samples(seconds)]).float()[None]
        with torch.no_grad():
            video = vae.decode(vae.encode(frames), num_frames=T)[0]
            audio = audio_vae.decode(audio_vae.encode_waveform(wave, seconds), wave.shape[1])[0]
        pixels = ((video.clamp(-1, 1) + 1) * 127.5).round().to(torch.uint8).permute(1, 2, 3, 0).numpy()
        rows.append(clip_scores(pixels, sample.fps, audio.numpy(), geometry.SAMPLE_RATE, record["colours"].split(),
                                record["materials"].split()))
    return {"data through the autoencoders": _summary(rows)}


def _slug(name: str) -> str:
    """A condition's folder name: ``model, null ST-prior`` -> ``model_null_ST-prior``."""
    return "_".join("".join(c for c in name if c.isalnum() or c in " -").split())


class _NullPrior:
    """Stands in for the prior encoder: every caption gets the model's learned null prior (the ablation that
    removes what the ST-prior estimator says about the caption, keeping the blocks that read it)."""

    def __init__(self, model):
        self.model = model

    def __call__(self, texts: Sequence[str], generator=None) -> dict:
        spatial, temporal = self.model.null_prior()
        B = len(texts)
        return {"spatial_prior": spatial.expand(B, -1, -1), "temporal_prior": temporal.expand(B, -1, -1)}


def generated_rows(cfg, csv: str | Path, num_clips: int, seed: int = 0, batch_size: int = 10,
                   conditions: Sequence[str] = tuple(CONDITIONS), save_dir: str | Path | None = None) -> dict:
    """Generate a clip for each of the first ``num_clips`` captions of ``csv`` (held-out captions) under each
    condition of ``CONDITIONS`` (the same seed per caption in every condition: clip ``i`` uses ``seed + i``)
    with the inference config ``cfg``, and score them; plus chance: the model's videos with another generated
    clip's audio. Returns ``{row name: summary}`` and ``protocol``; with ``save_dir`` the mp4s are kept."""
    import torch

    from javisdit.eval.checkpoints import file_hash
    from javisdit.inference.conditioning import generate_conditioned
    from javisdit.inference.media import to_uint8_frames, write_mp4
    from javisdit.inference.pipeline import build_models, generate, process_prompt
    from javisdit.models import geometry
    from javisdit.schedulers.rflow import check_cfg_scale
    from javisdit.sizes import get_clip_size
    from javisdit.utils.dtype import torch_dtype
    from javisdit.utils.seed import set_seed

    unknown = [c for c in conditions if c not in CONDITIONS]
    if unknown:
        raise UserError(f"unknown condition(s) {unknown}; valid: {', '.join(CONDITIONS)}")
    table = pd.read_csv(csv, keep_default_na=False).head(num_clips)
    records = table.to_dict("records")
    if not records:
        raise UserError(f"{csv}: no captions to generate from")
    dtype = torch_dtype(cfg.dtype)
    clip = get_clip_size(cfg.num_frames, cfg.resolution, cfg.aspect_ratio, cfg.get("image_size"))
    fps = int(cfg.fps)
    set_seed(int(cfg.seed))
    gen = build_models(cfg, torch.device("cpu"), dtype)
    results: dict = {}
    model_clips: list[tuple[np.ndarray, np.ndarray, dict]] = []
    for name in conditions:
        setting = CONDITIONS[name]
        gen.model.skip_sync = setting.skip
        models = dataclasses.replace(gen, prior_encoder=_NullPrior(gen.model)) if setting.null_prior else gen
        rows = []
        for start in range(0, len(records), batch_size):
            batch = records[start : start + batch_size]
            texts = [process_prompt(r["text"], cfg) for r in batch]
            seeds = [seed + start + i for i in range(len(batch))]
            if setting.v2a:
                video, audio = generate_conditioned(models, texts, clip, fps, dtype, seeds, mode="v2a",
                                                    video=[str(Path(csv).parent / r["path"]) for r in batch])
            else:
                video, audio = generate(models, texts, clip, fps, dtype, [torch.Generator().manual_seed(s) for s in seeds])
            for i, record in enumerate(batch):
                frames, wave = to_uint8_frames(video[i]), audio[i].float().cpu().numpy()
                score = clip_scores(frames, fps, wave, geometry.SAMPLE_RATE, record["colours"].split(),
                                    record["materials"].split())
                rows.append(score)
                if name == "model":
                    model_clips.append((frames, wave, record))
                if save_dir is not None:
                    folder = Path(save_dir) / _slug(name)
                    folder.mkdir(parents=True, exist_ok=True)
                    write_mp4(folder / f"sample_{start + i:04d}.mp4", frames, fps, wave, geometry.SAMPLE_RATE)
        gen.model.skip_sync = frozenset()
        results[name] = _summary(rows)
        logger.info("%s: %s", name, results[name])
    if model_clips:
        rng = np.random.default_rng(seed)
        swapped = [wave for _, wave in swap_audio([w for _, w, _ in model_clips], rng)]
        chance = [clip_scores(frames, fps, swapped[i], geometry.SAMPLE_RATE, r["colours"].split(),
                              r["materials"].split()) for i, (frames, _, r) in enumerate(model_clips)]
        results["model, swapped audio (chance)"] = _summary(chance)
    sampler = cfg.scheduler
    results["protocol"] = {
        "csv": str(csv), "captions": len(records), "seed": seed, "seeds": f"clip i: {seed} + i",
        "clip": dict(zip(("frames", "height", "width"), clip)), "fps": fps, "dtype": str(cfg.dtype),
        "sampling_steps": int(sampler.get("num_sampling_steps", 30)),
        "cfg_scale": check_cfg_scale(sampler.get("cfg_scale", 7.0)), "cfg_interval": _plain(sampler.get("cfg_interval")),
        "sync_guidance": _plain(sampler.get("sync_guidance", 0.0)),
        "audio_after_video": bool(cfg.get("audio_after_video", False)),
        "tolerances_frames": TOLERANCES_FRAMES,
        "weights": {key: file_hash(cfg[key]["from_pretrained"]) for key in ("model", "prior_encoder", "vae", "audio_vae",
                                                                              "text_encoder")
                    if cfg.get(key) and cfg[key].get("from_pretrained") and Path(cfg[key]["from_pretrained"]).exists()},
    }
    return results


def markdown(results: dict) -> str:
    """The benchmark table (one row per condition) and the AUROC line."""
    header = ("| condition | clips | colour | material | F1 ±1 frame | precision ±2 | recall ±2 | F1 ±2 frames "
              "| median offset (ms) |")
    lines = [header, "|---|---|---|---|---|---|---|---|---|"]
    for name, row in results.items():
        if not isinstance(row, dict) or "f1_1f" not in row:
            continue
        offset = "n/a" if row["median_offset_ms"] is None else f"{row['median_offset_ms']:+.1f}"
        lines.append(f"| {name} | {row['clips']} | {row['colour']:.3f} | {row['material']:.3f} | {row['f1_1f']:.3f} "
                     f"| {row['precision_2f']:.3f} | {row['recall_2f']:.3f} | {row['f1_2f']:.3f} | {offset} |")
    pairs = results.get("pairs", {})
    aurocs = ", ".join(f"{k} {v:.3f}" for k, v in results.get("auroc", {}).items())
    lines += ["", f"AUROC sync vs async ({pairs.get('sync', 0)} sync, {pairs.get('async', 0)} async pairs): {aurocs}"]
    return "\n".join(lines) + "\n"
