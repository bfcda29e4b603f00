"""Hub ids: ``resolve_weights`` turns a ``from_pretrained`` value into a local path, downloading through
``huggingface_hub`` when it is a hub id (``HF_HUB_OFFLINE``, ``HF_ENDPOINT`` and the local cache are
honoured). Ids of the ``JavisDiT`` organisation are read as their new ``JavisVerse`` ids; a copy cached
under the old id is still used. Without the weights, the error gives the command that downloads them.
"""

from __future__ import annotations

import logging
import os
import re
from pathlib import Path

from javisdit.errors import MissingWeightsError

logger = logging.getLogger(__name__)

_HUB_ID = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]*/[A-Za-z0-9][A-Za-z0-9._-]*$")


def is_hub_id(source: str) -> bool:
    weights_file = source.endswith((".pt", ".pth", ".bin", ".safetensors", ".ckpt"))
    return bool(_HUB_ID.match(source)) and not source.startswith((".", "/")) and not weights_file


def _hub_snapshot(repo_id: str, subfolders: tuple[str, ...], local_only: bool = False) -> Path:
    """Download (or find in the cache) configs, tokenizer files and weights, preferring safetensors
    and fetching ``*.bin`` weights only for a folder that has no safetensors. ``local_only``: the cache
    alone (raises when the repository is not there)."""
    from huggingface_hub import snapshot_download

    prefixes = [f"{folder.strip('/')}/" if folder else "" for folder in subfolders]
    patterns = [f"{p}{ext}" for p in prefixes for ext in ("*.json", "*.model", "*.txt", "*.safetensors")]
    path = Path(snapshot_download(repo_id, allow_patterns=patterns, local_files_only=local_only))
    missing = [p for p in prefixes if not any((path / p).glob("*.safetensors"))]
    if missing:
        path = Path(snapshot_download(repo_id, allow_patterns=[f"{p}*.bin" for p in missing],
                                      local_files_only=local_only))
    return path


def _cached(repo_id: str, subfolders: tuple[str, ...]) -> Path | None:
    try:
        return _hub_snapshot(repo_id, subfolders, local_only=True)
    except Exception:  # not in the cache (or an unusable entry there)
        return None


#: Hub organisations whose repositories moved: old name -> new name (the hub redirects the old ids).
MOVED_ORGANISATIONS = {"JavisDiT": "JavisVerse"}


def current_hub_id(repo_id: str) -> str:
    """``repo_id`` under its organisation's current name (``JavisDiT/X`` -> ``JavisVerse/X``)."""
    org, _, name = repo_id.partition("/")
    return f"{MOVED_ORGANISATIONS[org]}/{name}" if org in MOVED_ORGANISATIONS else repo_id


def _former_hub_id(repo_id: str) -> str | None:
    """The id a moved repository had before (``JavisVerse/X`` -> ``JavisDiT/X``), else None."""
    org, _, name = repo_id.partition("/")
    former = next((old for old, new in MOVED_ORGANISATIONS.items() if new == org), None)
    return f"{former}/{name}" if former else None


#: Local folder names the configs and README use -> the published repository with those weights.
PUBLISHED = {
    "OpenSora-STDiT-v3": "hpcai-tech/OpenSora-STDiT-v3",
    "JavisDiT-v0.1-audio": "JavisVerse/JavisDiT-v0.1-audio",
    "JavisDiT-v0.1-prior": "JavisVerse/JavisDiT-v0.1-prior",
    "JavisDiT-v0.1-jav": "JavisVerse/JavisDiT-v0.1-jav",
}


def _download_hint(path: Path, config_key: str) -> str:
    folder = next((part for part in path.parts if part in PUBLISHED), None)
    if folder is None:
        return ""
    repo = PUBLISHED[folder]
    local = Path(*path.parts[: path.parts.index(folder) + 1])
    hint = (f"; download the published weights with `huggingface-cli download {repo} --local-dir {local}` or set "
            f"{config_key} to the hub id {repo}")
    if folder in ("JavisDiT-v0.1-audio", "JavisDiT-v0.1-prior"):
        stage = "stage 1" if folder.endswith("audio") else "stage 2"
        hint += f" (or move your {stage} checkpoint folder there, or point {config_key} at its runs/ folder)"
    return hint


def resolve_weights(source: str | os.PathLike, config_key: str = "from_pretrained",
                    subfolders: tuple[str, ...] = ("",)) -> Path:
    """A local path for ``source``: itself when it exists, else a hub snapshot.

    A repository of a moved organisation is fetched under its new id (``JavisDiT/X`` is read as
    ``JavisVerse/X``, with one log line); when only its old id is in the local cache (weights downloaded
    before the move), that copy is used.

    Args:
        source: a file, a folder, or a hub id such as ``JavisVerse/JavisDiT-v0.1-jav``.
        config_key: the config key that named ``source``, quoted in error messages.
        subfolders: the parts of a hub repository to fetch (e.g. ``("vae", "vocoder")``).

    Raises:
        MissingWeightsError: a local path that does not exist, or a hub id that is neither cached
            nor downloadable (offline, no network, unknown repo); the message gives the download
            command and the config key to point at a local folder.
    """
    path = Path(source)
    if path.exists():
        return path
    source = str(source)
    if not is_hub_id(source):
        raise MissingWeightsError(f"{config_key}: no such file or folder: {source}{_download_hint(path, config_key)}")
    repo = current_hub_id(source)
    if repo != source:
        logger.info("%s moved to %s; using the new id", source, repo)
    former = _former_hub_id(repo)
    if former is not None and _cached(repo, subfolders) is None and (cached := _cached(former, subfolders)):
        logger.info("using the copy of %s cached under its former id %s", repo, former)
        return cached
    try:
        return _hub_snapshot(repo, subfolders)
    except Exception as err:  # offline, network, unknown repository, gated repository, ...
        name = repo.split("/")[-1]
        reason = str(err).splitlines()[0] if str(err) else type(err).__name__
        include = "" if subfolders == ("",) else " --include " + " ".join(f"'{f}/*'" for f in subfolders)
        also = f" (nor under its former id {former!r})" if former is not None else ""
        raise MissingWeightsError(
            f"{config_key}: the weights {repo!r} are not in the local Hugging Face cache{also} and could not be "
            f"downloaded ({type(err).__name__}: {reason}); download them with "
            f"`huggingface-cli download {repo}{include} --local-dir ./checkpoints/{name}` and set "
            f"{config_key}=./checkpoints/{name} (e.g. --cfg-options {config_key}=./checkpoints/{name})"
        ) from None
