"""LAION CLAP (``laion/clap-htsat-unfused``) through transformers: the network of the CLAP score
(``EVAL.md`` §1.3 "CLAP score").

The model is transformers' ``ClapModel`` (RoBERTa text tower, HTSAT-tiny audio tower, no fusion) and its
inputs come from the folder's own ``ClapProcessor`` (RoBERTa BPE, ``ClapFeatureExtractor``); nothing here
re-implements a layer. The checkpoint is the folder ``clap-htsat-unfused`` as the hub snapshot (or
``save_pretrained``) writes it: ``config.json``, ``model.safetensors`` (or ``pytorch_model.bin``),
``preprocessor_config.json`` and the tokenizer files.

The score of one sample, as upstream computes it (``src/metrics.py:280-309``):

* the audio loaded with librosa at 48 kHz, mono, full length (``clap_audio``: the same soxr_hq resampling);
* ``processor(text=prompt, audios=wave, return_tensors="pt", padding=True, sampling_rate=48000)`` with
  the wave as float64 (upstream hands the processor a torch tensor, which it converts to float64);
* score = cos(``text_embeds``, ``audio_embeds``) (``nn.CosineSimilarity(eps=1e-6)``), batch 1.

Faithful mode keeps upstream's ``padding=True``: the processor passes it to the tokenizer *and* to the
feature extractor, where it replaces the configured ``repeatpad``, so a clip shorter than 10 s is
zero-padded instead of repeated. Corrected mode leaves the processor's own padding (``repeatpad``).
A clip longer than 10 s is randomly cropped by the processor (``rand_trunc``, NumPy's global RNG) in both
modes, as upstream.

Shape legend: S samples at 48 kHz, L text tokens, E the projection width (512).
"""

from __future__ import annotations

import json
import logging
import os
import tempfile
from pathlib import Path

import numpy as np
import torch
from transformers import ClapConfig, ClapFeatureExtractor, ClapModel, ClapProcessor, RobertaTokenizerFast
from transformers.models.gpt2.tokenization_gpt2 import bytes_to_unicode

from javisdit.errors import MissingWeightsError, WeightsMismatchError
from javisdit.eval.checkpoints import DEFAULT_CHECKPOINT_DIR, SOURCES, find_checkpoint
from javisdit.eval.media import resample
from javisdit.eval.protocol import MODES
from javisdit.eval.scores import cosine

logger = logging.getLogger(__name__)

__all__ = ["CLAP_SAMPLE_RATE", "PRESETS", "build_clap", "clap_audio", "clap_score", "load_clap",
           "write_random_clap"]

CLAP_SAMPLE_RATE = 48000
WEIGHT_FILES = ("model.safetensors", "pytorch_model.bin")
# Buffers that the model computes in __init__ (index tables): a checkpoint may lack them without harm.
DERIVED_BUFFERS = ("position_ids", "token_type_ids", "relative_position_index")

PRESETS: dict[str, dict] = {
    # ``config``: ClapConfig keyword arguments; {} = transformers' defaults, the laion/clap-htsat-unfused
    # architecture (RoBERTa-base text, HTSAT-tiny audio, 512-d projections, no fusion). Loading "full" uses
    # the folder's config.json as it is.
    # ``features``: ClapFeatureExtractor settings for write_random_clap (load_clap reads the folder's own
    # preprocessor_config.json); "full" has the published file's values (64 mels, 50-14000 Hz, 10 s,
    # rand_trunc, repeatpad).
    "full": dict(
        config={},
        features=dict(feature_size=64, sampling_rate=CLAP_SAMPLE_RATE, hop_length=480, max_length_s=10,
                      fft_window_size=1024, frequency_min=50, frequency_max=14000, top_db=None,
                      truncation="rand_trunc", padding="repeatpad"),
        max_text_tokens=512,
    ),
    # Same key names; a 2-layer 32-wide text tower over a 272-token BPE, a 2-stage 16/32-wide HTSAT on 16 mel
    # bins (spec 64, 4x4 patches, window 4) and 1 s clips at 48 kHz (101 frames <= 64 x 4 the tower takes).
    "tiny": dict(
        config=dict(
            text_config=dict(vocab_size=300, hidden_size=32, num_hidden_layers=2, num_attention_heads=2,
                             intermediate_size=64, max_position_embeddings=80),
            audio_config=dict(num_mel_bins=16, spec_size=64, patch_size=4, patch_stride=[4, 4], window_size=4,
                              depths=[1, 1], num_attention_heads=[1, 2], patch_embeds_hidden_size=16,
                              hidden_size=32),
            projection_dim=16,
        ),
        features=dict(feature_size=16, sampling_rate=CLAP_SAMPLE_RATE, hop_length=480, max_length_s=1,
                      fft_window_size=1024, frequency_min=50, frequency_max=14000, top_db=None,
                      truncation="rand_trunc", padding="repeatpad"),
        max_text_tokens=77,
    ),
}

# The tiny byte-level BPE of write_random_clap: RoBERTa's special tokens, the 256 byte symbols, these merges.
_MERGES = (("Ġ", "t"), ("h", "e"), ("t", "he"), ("Ġt", "he"), ("Ġ", "a"), ("o", "g"), ("Ġ", "d"), ("Ġd", "og"),
           ("Ġ", "b"), ("a", "r"), ("Ġb", "ar"))


def _preset(size: str) -> dict:
    if size not in PRESETS:
        raise ValueError(f"unknown CLAP size {size!r}; valid: {', '.join(PRESETS)}")
    return PRESETS[size]


def _config(size: str) -> ClapConfig:
    return ClapConfig(**_preset(size)["config"])


def build_clap(size: str = "full") -> ClapModel:
    """A randomly initialised ``ClapModel`` of preset ``size``, eval mode, float32.

    Only the model: the processor that feeds it comes from the checkpoint folder (``load_clap``). (Its
    HTSAT stages call ``.item()`` while building, so for a model without memory use transformers'
    ``init_empty_weights`` rather than ``torch.device("meta")``.)
    """
    return ClapModel(_config(size)).eval()


def _check_folder(folder: Path) -> None:
    missing = [name for name in ("config.json", "preprocessor_config.json") if not (folder / name).is_file()]
    if not any((folder / name).is_file() for name in WEIGHT_FILES):
        missing.append(" or ".join(WEIGHT_FILES))
    if missing:
        raise MissingWeightsError(f"the CLAP folder {folder} lacks {', '.join(missing)}; download it again: "
                                  f"`huggingface-cli download {SOURCES['clap'].url} --local-dir {folder}`")


def load_clap(checkpoint_dir: str | os.PathLike = DEFAULT_CHECKPOINT_DIR, size: str = "full",
              device: torch.device | str = "cpu") -> tuple[ClapModel, ClapProcessor]:
    """``(ClapModel, ClapProcessor)`` from the folder ``clap-htsat-unfused`` in ``checkpoint_dir`` (offline),
    the model in eval mode on ``device``.

    ``full`` builds the architecture of the folder's config.json; ``tiny`` builds the tiny preset (so a
    full folder does not fit it). Every parameter and persistent buffer must be in the weights file, except
    the index tables the model computes itself (``DERIVED_BUFFERS``).

    Raises:
        MissingWeightsError: the folder, its config, weights or processor files are not there.
        WeightsMismatchError: keys are missing, unexpected or mis-shaped (named, with the folder).
    """
    config = None if size == "full" else _config(size)  # full: the folder's config.json as it is
    folder = find_checkpoint("clap", checkpoint_dir)
    _check_folder(folder)
    # ignore_mismatched_sizes: mis-shaped keys come back by name in the loading info instead of a
    # RuntimeError that names only the last attribute; any of them is an error below.
    model, info = ClapModel.from_pretrained(folder, config=config, local_files_only=True, output_loading_info=True,
                                            ignore_mismatched_sizes=True)
    own = model.state_dict()
    missing = [k for k in info["missing_keys"] if not k.endswith(DERIVED_BUFFERS)]
    unexpected = list(info["unexpected_keys"])
    mismatched = [f"{k} (the model wants {list(own[k].shape)})" for k in info["mismatched_keys"]]
    if missing or unexpected or mismatched:
        parts = [f"{len(keys)} {what}: {', '.join(keys[:10])}{', ...' if len(keys) > 10 else ''}"
                 for what, keys in (("missing", missing), ("unexpected", unexpected), ("mis-shaped", mismatched))
                 if keys]
        raise WeightsMismatchError(f"{folder} does not fit ClapModel ({size}): {'; '.join(parts)}")
    try:
        processor = ClapProcessor.from_pretrained(folder, local_files_only=True)
    except (OSError, ValueError, TypeError) as error:
        raise MissingWeightsError(f"the CLAP folder {folder} has no usable processor files "
                                  f"({str(error).strip().splitlines()[0]})") from None
    return model.to(device).eval(), processor


def _tiny_tokenizer(max_tokens: int) -> RobertaTokenizerFast:
    """A byte-level BPE ``RobertaTokenizerFast`` built offline from a generated vocab.json / merges.txt."""
    vocab = {"<s>": 0, "<pad>": 1, "</s>": 2, "<unk>": 3}
    for token in [*bytes_to_unicode().values(), *("".join(pair) for pair in _MERGES), "<mask>"]:
        vocab.setdefault(token, len(vocab))
    with tempfile.TemporaryDirectory() as source:
        vocab_file, merges_file = Path(source) / "vocab.json", Path(source) / "merges.txt"
        vocab_file.write_text(json.dumps(vocab, ensure_ascii=False), encoding="utf-8")
        merges_file.write_text("#version: 0.2\n" + "".join(f"{a} {b}\n" for a, b in _MERGES), encoding="utf-8")
        return RobertaTokenizerFast(vocab_file=str(vocab_file), merges_file=str(merges_file),
                                    model_max_length=max_tokens)


def write_random_clap(checkpoint_dir: str | os.PathLike, size: str = "tiny", seed: int = 0) -> Path:
    """Write the folder ``checkpoint_dir/clap-htsat-unfused``: a random ``ClapModel`` of preset ``size``
    (``save_pretrained``, safetensors) and a working ``ClapProcessor`` (the preset's feature extractor and a
    small byte-level BPE tokenizer generated here); returns the folder.

    The logit scales are random too, so that a load that missed them would show.
    """
    preset = _preset(size)
    folder = Path(checkpoint_dir) / SOURCES["clap"].name
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        model = build_clap(size)
        with torch.no_grad():
            model.logit_scale_a.uniform_(1.0, 3.0)
            model.logit_scale_t.uniform_(1.0, 3.0)
    model.save_pretrained(folder, safe_serialization=True)
    tokenizer = _tiny_tokenizer(preset["max_text_tokens"])
    ClapProcessor(ClapFeatureExtractor(**preset["features"]), tokenizer).save_pretrained(folder)
    return folder


# ----------------------------------------------------------------------------------------------- inputs


def clap_audio(wave: np.ndarray, sample_rate: int) -> np.ndarray:
    """The audio as ``librosa.load(path, sr=48000)`` gives it: channels averaged, resampled to 48 kHz with
    ``librosa.resample(res_type="soxr_hq")``.

    Args:
        wave: float [S] or [C, S] at ``sample_rate``.

    Returns:
        float32 [S'] at 48 kHz.
    """
    wave = np.asarray(wave, dtype=np.float32)
    if wave.ndim == 2:
        wave = wave.mean(axis=0)
    if wave.ndim != 1:
        raise ValueError(f"clap_audio wants a waveform [S] or [C, S], got shape {list(wave.shape)}")
    return resample(wave, sample_rate, CLAP_SAMPLE_RATE)


@torch.no_grad()
def clap_score(model: ClapModel, processor: ClapProcessor, wave: np.ndarray, text: str,
               device: torch.device | str = "cpu", mode: str = "faithful") -> float:
    """The CLAP score of one sample: cos(text embedding, audio embedding).

    Args:
        model, processor: from ``load_clap``, the model on ``device``.
        wave: float [S] mono at 48 kHz, full length (``clap_audio``).
        text: the prompt (the CSV's ``audio_text``, else ``text``).
        mode: ``faithful`` (upstream's ``padding=True``: short clips zero-padded to the processor's length)
            or ``corrected`` (the processor's configured padding, ``repeatpad``).
    """
    if mode not in MODES:
        raise ValueError(f"unknown CLAP score mode {mode!r}; valid: {', '.join(MODES)}")
    wave = np.asarray(wave, dtype=np.float64)
    if wave.ndim != 1:
        raise ValueError(f"clap_score wants a mono waveform [S], got shape {list(wave.shape)}")
    extra = dict(padding=True) if mode == "faithful" else {}
    inputs = processor(text=text, audios=wave, return_tensors="pt", sampling_rate=CLAP_SAMPLE_RATE, **extra)
    outputs = model(**inputs.to(device))  # text_embeds, audio_embeds: [1, E], L2-normalised
    return float(cosine(outputs.text_embeds, outputs.audio_embeds)[0])
