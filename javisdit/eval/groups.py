"""The metric groups of JavisBench (EVAL.md §1.2-1.3): for each, the networks it loads and what it
computes from one decoded sample.

A group's ``per_sample`` returns a dict of values for one row: scores (floats) for the per-sample
metrics, feature vectors for the set metrics (FVD/KVD/FAD). A metric that fails on one sample returns
an ``Failure`` for it, which is counted in the protocol and left out of the mean (upstream's CAVP scores
0.0 silently instead).
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F

from javisdit.eval import scores
from javisdit.eval.checkpoints import SOURCES, file_hash, find_checkpoint
from javisdit.eval.inputs import Row
from javisdit.eval.media import Sample
from javisdit.eval.protocol import Settings

logger = logging.getLogger(__name__)

IMAGEBIND_SAMPLE_RATE = 16000
FRAME_BATCH = 32  # frames per ImageBind forward (AVHScore / JavisScore embed every frame)


@dataclass
class Failure:
    """A metric that could not be computed for one sample, and why."""

    reason: str


class Networks:
    """Loads each evaluation network once (from ``checkpoint_dir``) and remembers its file hash."""

    def __init__(self, checkpoint_dir: str, size: str, device: torch.device, download: bool = False):
        self.checkpoint_dir, self.size, self.device, self.download = checkpoint_dir, size, device, download
        self._loaded: dict[str, Any] = {}
        self.hashes: dict[str, dict] = {}

    def get(self, name: str) -> Any:
        if name not in self._loaded:
            path = find_checkpoint(name, self.checkpoint_dir, download=self.download)
            loader = _LOADERS[name]
            logger.info("loading %s from %s", name, path)
            self._loaded[name] = loader(self.checkpoint_dir, self.size, self.device)
            self.hashes[name] = {"file": path.name, "hash": file_hash(path), "source": SOURCES[name].url}
        return self._loaded[name]

    def release(self) -> None:
        self._loaded.clear()
        if self.device.type == "cuda":
            torch.cuda.empty_cache()


def _load(module: str, function: str) -> Callable:
    def load(checkpoint_dir: str, size: str, device: torch.device):
        import importlib

        return getattr(importlib.import_module(module), function)(checkpoint_dir, size=size, device=device)

    return load


_LOADERS = {
    "i3d": _load("javisdit.eval.networks.i3d", "load_i3d"),
    "audioclip": _load("javisdit.eval.networks.audioclip", "load_audioclip"),
    "imagebind": _load("javisdit.eval.networks.imagebind", "load_imagebind"),
    "cavp": _load("javisdit.eval.networks.cavp", "load_cavp"),
    "clip": _load("javisdit.eval.networks.clip", "load_clip"),
    "clap": _load("javisdit.eval.networks.clap", "load_clap"),
}


# ---------------------------------------------------------------------------------------------- features


def fvd_features(sample: Sample, nets: Networks, settings: Settings) -> dict[str, Any]:
    """I3D logits [400] (FVD/KVD) and the AudioCLIP embedding [1024] (FAD) of one sample."""
    from javisdit.eval.networks.audioclip import audioclip_features, fad_input
    from javisdit.eval.networks.i3d import fvd_frame_indices, i3d_features, i3d_input

    model = nets.get("i3d")
    indices = fvd_frame_indices(sample.num_frames, settings.max_frames)
    video = i3d_input(sample.frames[indices], settings.image_size, settings.mode)  # [3, T, S, S]
    if video.shape[-1] != model.image_size:  # I3D's own preprocessing scales to its input size (224)
        video = F.interpolate(video.transpose(0, 1), size=(model.image_size,) * 2, mode="bilinear",
                              align_corners=False).transpose(0, 1)
    wave = fad_input(sample.mono(settings.fad_sample_rate), settings.max_audio_len_s, settings.mode)
    return {
        "fvd": i3d_features(model, video[None].to(nets.device))[0].double().cpu().numpy(),
        "fad": audioclip_features(nets.get("audioclip"), wave[None].to(nets.device))[0].double().cpu().numpy(),
    }


@torch.no_grad()
def _imagebind_audio(model, sample: Sample, mode: str, device) -> torch.Tensor:
    from javisdit.eval.imagebind_inputs import audio_inputs

    wave = torch.from_numpy(np.array(sample.channels(IMAGEBIND_SAMPLE_RATE), dtype=np.float32))
    return model.embed_audio(audio_inputs(wave, mode)[None].to(device))[0]


@torch.no_grad()
def imagebind_scores(sample: Sample, row: Row, nets: Networks, settings: Settings) -> dict[str, float]:
    """TV-IB, TA-IB and AV-IB of one sample (EVAL.md §1.3)."""
    from javisdit.eval.imagebind_inputs import video_views
    from javisdit.models.prior.tokenizer import ImageBindTokenizer

    model = nets.get("imagebind")
    tokens = ImageBindTokenizer()([row.text, row.audio_text]).to(nets.device)
    text, audio_text = model.embed_text(tokens)
    video = model.embed_vision(video_views(sample.frames, sample.fps)[None].to(nets.device))[0]
    audio = _imagebind_audio(model, sample, settings.mode, nets.device)
    return {"ib_tv": float(scores.cosine(text, video)), "ib_ta": float(scores.cosine(audio_text, audio)),
            "ib_av": float(scores.cosine(audio, video))}


@torch.no_grad()
def av_scores(sample: Sample, nets: Networks, settings: Settings) -> dict[str, float]:
    """AVHScore and JavisScore of one sample (ImageBind on every frame)."""
    from javisdit.eval.imagebind_inputs import frame_images, javis_windows, window_audio_inputs

    model = nets.get("imagebind")
    images = frame_images(sample.frames)
    frames = torch.cat([model.embed_vision(images[i:i + FRAME_BATCH].to(nets.device))
                        for i in range(0, images.shape[0], FRAME_BATCH)])
    audio = _imagebind_audio(model, sample, settings.mode, nets.device)
    wave = torch.from_numpy(np.array(sample.channels(IMAGEBIND_SAMPLE_RATE), dtype=np.float32))
    video_windows, audio_windows = javis_windows(sample.num_frames, sample.fps, wave.shape[-1], IMAGEBIND_SAMPLE_RATE,
                                                 settings.window_size_s, settings.window_overlap_s)
    windows = model.embed_audio(window_audio_inputs(wave, audio_windows, settings.mode).to(nets.device))
    return {"avh_score": scores.avh_score(frames, audio),
            "javis_score": scores.javis_score(frames, windows, video_windows)}


@torch.no_grad()
def clip_score(sample: Sample, row: Row, nets: Networks, settings: Settings) -> float:
    from javisdit.eval.networks.clip import clip_score as score

    return score(nets.get("clip"), sample.frames, row.text, device=nets.device, mode=settings.mode)


@torch.no_grad()
def clap_score(sample: Sample, row: Row, nets: Networks, settings: Settings) -> float:
    from javisdit.eval.networks.clap import clap_score as score

    model, processor = nets.get("clap")
    return score(model, processor, sample.mono(settings.clap_sample_rate), row.audio_text, device=nets.device,
                 mode=settings.mode)


@torch.no_grad()
def cavp_score(sample: Sample, nets: Networks, settings: Settings) -> float | Failure:
    from javisdit.eval.cavp_inputs import cavp_frames, cavp_mel, cavp_seconds
    from javisdit.eval.cavp_inputs import cavp_score as score

    seconds = cavp_seconds(sample.duration)
    if seconds < 1:
        return Failure(f"the clip lasts {sample.duration:.2f} s; CAVP needs at least 1 s")
    model = nets.get("cavp")
    try:
        video = model.encode_video(cavp_frames(sample.frames, sample.fps, seconds)[None].to(nets.device))[0]
        spec = model.encode_spec(cavp_mel(sample.mono(IMAGEBIND_SAMPLE_RATE), seconds)[None].to(nets.device))[0]
        return score(video, spec)
    except ValueError as err:
        return Failure(str(err))


def av_align_score(sample: Sample, settings: Settings) -> float:
    from javisdit.eval.av_align import av_align

    return av_align(sample.frames, sample.fps, sample.audio.mean(axis=0), sample.sample_rate,
                    symmetric=settings.mode == "corrected")


# ---------------------------------------------------------------------------------------------- groups


@dataclass(frozen=True)
class Group:
    """A metric group: the output keys it produces and which of them are set metrics."""

    name: str
    keys: tuple[str, ...]
    set_metrics: bool = False


GROUPS: dict[str, Group] = {
    "fvd+kvd+fad": Group("fvd+kvd+fad", ("fvd", "kvd", "fad"), set_metrics=True),
    "imagebind-score": Group("imagebind-score", ("ib_tv", "ib_ta", "ib_av")),
    "cxxp-score": Group("cxxp-score", ("clip_score", "clap_score", "cavp_score")),
    "av-align": Group("av-align", ("av_align",)),
    "av-score": Group("av-score", ("avh_score", "javis_score")),
}
# upstream's groups this evaluator does not compute (their networks are not part of the v0.1 paper)
NOT_IMPLEMENTED = ("video-quality", "audio-quality", "desync", "audio-score", "av-reward")
ALL_KEYS = tuple(k for g in GROUPS.values() for k in g.keys)


def compute(group: Group, keys: tuple[str, ...], sample: Sample, row: Row, nets: Networks,
            settings: Settings) -> dict[str, Any]:
    """The values of ``keys`` (a subset of the group's) for one sample."""
    if group.name == "fvd+kvd+fad":
        return fvd_features(sample, nets, settings)
    if group.name == "imagebind-score":
        return imagebind_scores(sample, row, nets, settings)
    if group.name == "av-score":
        return av_scores(sample, nets, settings)
    if group.name == "av-align":
        return {"av_align": av_align_score(sample, settings)}
    out: dict[str, Any] = {}
    if "clip_score" in keys:
        out["clip_score"] = clip_score(sample, row, nets, settings)
    if "clap_score" in keys:
        out["clap_score"] = clap_score(sample, row, nets, settings)
    if "cavp_score" in keys:
        out["cavp_score"] = cavp_score(sample, nets, settings)
    return out
