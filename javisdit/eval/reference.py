"""Ground-truth features for FVD/KVD/FAD: read the published cache, or extract one from real clips.

The cache (``JavisBench-vanilla-max4s.pt`` in the ``JavisVerse/JavisBench`` dataset) is a dict with
``video`` [N, 400] I3D logits and ``audio`` [N, 1024] AudioCLIP embeddings, row ``i`` for CSV row ``i``.
Upstream's extraction tool is broken at HEAD (EVAL.md §1.4 item 9); ``extract_reference`` writes the same
layout, plus a ``protocol`` entry saying how it was computed, with the same preprocessing as the samples.
"""

from __future__ import annotations

import logging
import os
from collections.abc import Sequence
from pathlib import Path

import numpy as np
import torch

from javisdit.errors import UserError
from javisdit.eval.checkpoints import file_hash
from javisdit.eval.media import SampleError, load_sample

logger = logging.getLogger(__name__)


def load_reference(path: str | os.PathLike) -> tuple[np.ndarray, np.ndarray, dict]:
    """(video [N, 400], audio [N, 1024], description) of a reference cache.

    Raises:
        UserError: the file is missing or not a cache of that layout.
    """
    path = Path(path)
    if not path.is_file():
        raise UserError(f"--fvd-avcache-path {path}: no such file (JavisBench's is "
                        "cache/fvd_fad/JavisBench-vanilla-max4s.pt in the JavisVerse/JavisBench dataset)")
    try:
        cache = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as err:  # unpickling errors come in many types
        raise UserError(f"--fvd-avcache-path {path}: cannot read it ({type(err).__name__}: {err})") from None
    if not isinstance(cache, dict) or not {"video", "audio"} <= set(cache):
        raise UserError(f"--fvd-avcache-path {path}: expected a dict with `video` and `audio` features")
    video, audio = (torch.as_tensor(cache[k]).double().numpy() for k in ("video", "audio"))
    if video.ndim != 2 or audio.ndim != 2 or len(video) != len(audio):
        raise UserError(f"--fvd-avcache-path {path}: `video` {list(video.shape)} and `audio` {list(audio.shape)} "
                        "must be [N, D] with the same N")
    info = {"path": str(path), "hash": file_hash(path), "rows": len(video)}
    if isinstance(cache.get("protocol"), dict):
        info["protocol"] = cache["protocol"]
    return video, audio, info


def reference_features(rows: Sequence, nets, settings) -> tuple[np.ndarray, np.ndarray]:
    """I3D and AudioCLIP features of the ground-truth clips of ``rows`` (``gt_video`` / ``gt_audio``)."""
    from tqdm import tqdm

    from javisdit.eval.groups import fvd_features

    video, audio = [], []
    for row in tqdm(rows, desc="ground truth", unit="clip"):
        gt_audio = row.gt_audio if row.gt_audio and row.gt_audio != row.gt_video else None
        try:
            sample = load_sample(row.gt_video, gt_audio)
        except SampleError as err:
            raise UserError(f"row {row.index} (ground truth): {err}") from None
        features = fvd_features(sample, nets, settings)
        video.append(features["fvd"])
        audio.append(features["fad"])
    return np.stack(video), np.stack(audio)


def extract_reference(rows: Sequence, nets, settings, output: str | os.PathLike) -> Path:
    """Write a reference cache for ``rows`` (all of a CSV's rows, in order) to ``output``."""
    from dataclasses import asdict

    from javisdit.eval.protocol import versions

    video, audio = reference_features(rows, nets, settings)
    output = Path(output)
    output.parent.mkdir(parents=True, exist_ok=True)
    cache = {"video": torch.from_numpy(video).float(), "audio": torch.from_numpy(audio).float(),
             "protocol": {"settings": asdict(settings), "checkpoints": nets.hashes, "rows": len(rows),
                          "versions": versions()}}
    tmp = output.with_name(output.name + ".tmp")
    torch.save(cache, tmp)
    os.replace(tmp, output)
    logger.info("wrote %d reference features to %s", len(rows), output)
    return output
