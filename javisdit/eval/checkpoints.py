"""Where the evaluation networks' weights come from, and how a missing one is reported.

Every network is looked up in one folder (``--checkpoint-dir``, default ``./checkpoints/eval``) under the
name its publisher gives the file (or, for hub models, the folder ``save_pretrained`` writes). Nothing is
downloaded unless asked (``download=True``, the evaluator's ``--download``): a missing file is one
:class:`MissingWeightsError` line naming the file, its source and where to put it.
"""

from __future__ import annotations

import hashlib
import os
from dataclasses import dataclass
from pathlib import Path

from javisdit.errors import MissingWeightsError

DEFAULT_CHECKPOINT_DIR = "./checkpoints/eval"


@dataclass(frozen=True)
class CheckpointSource:
    """One published checkpoint.

    Attributes:
        name: the file (or folder) name it is found under inside the checkpoint folder; the first of
            ``names`` when several published names are accepted.
        url: where it is published.
        metric: the metric(s) that need it, for the error message.
        names: every accepted name, in order of preference.
        folder: True for hub models stored as a ``save_pretrained`` folder.
    """

    name: str
    url: str
    metric: str
    names: tuple[str, ...] = ()
    folder: bool = False

    @property
    def accepted(self) -> tuple[str, ...]:
        return self.names or (self.name,)

    def missing_message(self, folder: Path) -> str:
        what = "folder" if self.folder else "file"
        alternatives = f" (or {', '.join(self.accepted[1:])})" if len(self.accepted) > 1 else ""
        how = (f"`huggingface-cli download {self.url} --local-dir {folder / self.name}`" if self.folder
               else f"{self.url} -> {folder / self.name}")
        return (f"{self.metric} needs the {what} {self.name}{alternatives} in the checkpoint folder {folder}, "
                f"which is not there; download it: {how} (or pass --download, or --checkpoint-dir)")


SOURCES: dict[str, CheckpointSource] = {
    "i3d": CheckpointSource(
        "i3d_pretrained_400.pt",
        "https://huggingface.co/spaces/LanguageBind/Open-Sora-Plan-v1.0.0/resolve/main/opensora/eval/fvd/"
        "videogpt/i3d_pretrained_400.pt",
        "FVD/KVD (I3D, Kinetics-400)"),
    "audioclip": CheckpointSource(
        "AudioCLIP-Full-Training.pt",
        "https://github.com/AndreyGuzhov/AudioCLIP/releases/download/v0.1/AudioCLIP-Full-Training.pt",
        "FAD (AudioCLIP's ESResNeXt-FBSP audio head)"),
    "imagebind": CheckpointSource(
        "imagebind_huge.pth", "https://dl.fbaipublicfiles.com/imagebind/imagebind_huge.pth",
        "TV-IB/TA-IB/AV-IB, AVHScore and JavisScore (ImageBind-Huge)"),
    "cavp": CheckpointSource(
        "cavp_epoch66.ckpt", "https://huggingface.co/SimianLuo/Diff-Foley/resolve/main/diff_foley_ckpt/"
        "cavp_epoch66.ckpt", "the CAVP score (Diff-Foley)"),
    "clip": CheckpointSource(
        "open_clip_model.safetensors",
        "https://huggingface.co/timm/vit_base_patch32_clip_224.openai/resolve/main/open_clip_model.safetensors",
        "the CLIP score (OpenAI ViT-B/32)", names=("open_clip_model.safetensors", "open_clip_pytorch_model.bin")),
    "clap": CheckpointSource(
        "clap-htsat-unfused", "laion/clap-htsat-unfused", "the CLAP score (LAION CLAP HTSAT, unfused)", folder=True),
}


def find_checkpoint(network: str, checkpoint_dir: str | os.PathLike = DEFAULT_CHECKPOINT_DIR,
                    download: bool = False) -> Path:
    """The path of ``network``'s checkpoint inside ``checkpoint_dir``; with ``download``, a missing one is
    first fetched from its source into that folder under its published name.

    Raises:
        MissingWeightsError: none of its accepted names is there (and it could not be downloaded); the
            message says what to download.
    """
    source = SOURCES[network]
    folder = Path(checkpoint_dir)
    for name in source.accepted:
        path = folder / name
        if (path.is_dir() if source.folder else path.is_file()):
            return path
    if download:
        return fetch(source, folder)
    raise MissingWeightsError(source.missing_message(folder))


def fetch(source: CheckpointSource, folder: Path) -> Path:
    """Download ``source`` into ``folder`` (a partial download never takes the published name)."""
    import logging

    target = folder / source.name
    folder.mkdir(parents=True, exist_ok=True)
    logging.getLogger(__name__).info("downloading %s from %s", source.name, source.url)
    try:
        if source.folder:
            from huggingface_hub import snapshot_download

            partial = folder / (source.name + ".partial")
            snapshot_download(source.url, local_dir=partial)
            os.replace(partial, target)
        else:
            from torch.hub import download_url_to_file

            download_url_to_file(source.url, str(target), progress=True)  # writes a temporary file, then renames
    except Exception as err:  # network, HTTP and hub errors of every kind
        raise MissingWeightsError(f"{source.missing_message(folder)}; downloading it failed "
                                  f"({type(err).__name__}: {err})") from None
    return target


def file_hash(path: str | os.PathLike, chunk: int = 1 << 24) -> str:
    """``sha256:<first 16 hex digits>`` of a file, or of a folder's files in name order."""
    path = Path(path)
    digest = hashlib.sha256()
    files = sorted(p for p in path.rglob("*") if p.is_file()) if path.is_dir() else [path]
    for file in files:
        if path.is_dir():
            digest.update(str(file.relative_to(path)).encode())
        with open(file, "rb") as handle:
            while block := handle.read(chunk):
                digest.update(block)
    return "sha256:" + digest.hexdigest()[:16]
