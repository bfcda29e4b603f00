"""AudioCLIP's audio head as the FAD feature network (``EVAL.md`` §1.3 "Audio preprocessing for FAD", §1.4
pitfall 2; ``EVAL_MODELS.md`` §0 and §2).

FAD uses only the ESResNeXt-FBSP head (``javisdit.eval.networks.esresnext``) of the published
``AudioCLIP-Full-Training.pt``: its raw 1024-d ``audio.fc`` output, before the L2 normalisation AudioCLIP
applies for its logits. The file is a flat state dict of the whole AudioCLIP (861 keys: CLIP RN50 and its
text tower, and the 370 ``audio.*`` keys). ``load_audioclip`` takes the ``audio.*`` keys strictly (all
there, shapes equal, none extra), skips the CLIP keys by their known names and refuses anything else.
(Upstream loads the whole file non-strictly and ignores the difference; here the number of skipped CLIP
keys is logged.)

Inputs (``fad_input``):

* ``faithful``: as JavisBench feeds the head: 16 kHz floats in [-1, 1], cropped or zero-padded to
  ``max_audio_len_s``. The head rescales int16-range samples to [-1, 1], so it sees a near-silent signal
  (amplitude ~3e-5 plus a DC offset of 1.5e-5) at the wrong sample rate. The tiny Fréchet distances are
  then multiplied by ``FAD_SCALE`` (the runner does this).
* ``corrected``: the same 16 kHz segment resampled to the head's 44.1 kHz and scaled to int16 range, so
  that the head's rescale gives back the [-1, 1] waveform.

Shape legend: B clips, L samples; the network takes [B, 1, L] (or [B, L]) and returns [B, 1024].
"""

from __future__ import annotations

import logging
import os
import pickle
import zipfile
from collections import OrderedDict
from collections.abc import Mapping
from pathlib import Path

import numpy as np
import torch
from torch import nn

from javisdit.errors import WeightsMismatchError
from javisdit.eval.checkpoints import DEFAULT_CHECKPOINT_DIR, SOURCES, find_checkpoint
from javisdit.eval.networks import pick_preset
from javisdit.eval.networks.esresnext import ESResNeXtFBSP
from javisdit.models.loading import load_state_dict_checked

logger = logging.getLogger(__name__)

FAD_SAMPLE_RATE = 16000  # JavisBench loads FAD audio at 16 kHz (librosa, mono)
HEAD_SAMPLE_RATE = 44100  # the rate the head was trained on
FAD_SCALE = 1e4  # upstream multiplies the FAD Fréchet distance by 10,000 (src/metrics.py), faithful mode
MODES = ("faithful", "corrected")

# Top-level names of the CLIP part of the file (EVAL_MODELS.md §2.1): present, not used by FAD.
CLIP_KEYS = ("visual", "transformer", "token_embedding", "positional_embedding", "ln_final", "text_projection",
             "logit_scale", "logit_scale_ai", "logit_scale_at")
AUDIO_PREFIX = "audio."


class AudioCLIPAudio(nn.Module):
    """The audio head under the attribute name AudioCLIP gives it, so that ``state_dict()`` has exactly the
    file's ``audio.*`` keys (in the file's order)."""

    def __init__(self, **preset) -> None:
        super().__init__()
        self.audio = ESResNeXtFBSP(**preset)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """[B, 1, L] or [B, L] waveform (int16 range expected by the head) -> raw embedding [B, 1024]."""
        return self.audio(x)


# --------------------------------------------------------------------------------------------- presets

PRESETS: dict[str, dict] = {
    "full": dict(stem=64, widths=(128, 256, 512, 1024), channels=(256, 512, 1024, 2048), blocks=(3, 4, 6, 3),
                 groups=32, embed_dim=1024),
    # Same keys and block counts, widths / 16, 4 groups, still 1024 outputs (FAD features of the same width).
    # The front end (window, FBSP with 1025 bins) is the full one: it has only 3,075 parameters.
    "tiny": dict(stem=4, widths=(8, 16, 32, 64), channels=(16, 32, 64, 128), blocks=(3, 4, 6, 3), groups=4,
                 embed_dim=1024),
}


def _preset(size: str) -> dict:
    return pick_preset(PRESETS, size, "AudioCLIP")


def build_audioclip(size: str = "full") -> AudioCLIPAudio:
    """A randomly initialised audio head of preset ``size`` (FBSP at its initial DFT basis), eval mode, float32."""
    return AudioCLIPAudio(**_preset(size)).eval()


# ---------------------------------------------------------------------------------------------- files


def _is_clip_key(key: str) -> bool:
    return any(key == name or key.startswith(name + ".") for name in CLIP_KEYS)


def _read_flat_state_dict(path: Path) -> Mapping[str, object]:
    mmap = zipfile.is_zipfile(path)  # memory-map the zip format: the CLIP tensors (400 MB) are never read
    try:
        state = torch.load(path, map_location="cpu", weights_only=True, mmap=mmap)
    except (pickle.UnpicklingError, RuntimeError, EOFError, ValueError) as error:
        first_line = str(error).strip().splitlines()[0] if str(error).strip() else type(error).__name__
        raise WeightsMismatchError(f"{path} cannot be read as a weights-only state dict: {first_line}") from error
    if not isinstance(state, Mapping):
        raise WeightsMismatchError(f"{path} is not a flat state dict (the published AudioCLIP layout) but a "
                                   f"{type(state).__name__}")
    return state


def load_audioclip(checkpoint_dir: str | os.PathLike = DEFAULT_CHECKPOINT_DIR, size: str = "full",
                   device: torch.device | str = "cpu") -> AudioCLIPAudio:
    """The audio head with the weights of ``AudioCLIP-Full-Training.pt`` in ``checkpoint_dir``, eval mode.

    The ``audio.*`` keys load strictly (``audio.window`` and the BatchNorm ``num_batches_tracked`` counters
    included); the CLIP keys (``CLIP_KEYS``) are skipped; any other key is refused.

    Raises:
        MissingWeightsError: the file is not there (the message names it and where to download it).
        WeightsMismatchError: it is not a flat state dict, holds keys that are neither audio nor CLIP, or its
            ``audio.*`` keys are missing, extra or mis-shaped (each listed by name).
    """
    path = find_checkpoint("audioclip", checkpoint_dir)
    state = _read_flat_state_dict(path)
    audio = OrderedDict((k, v) for k, v in state.items() if k.startswith(AUDIO_PREFIX))
    clip = [k for k in state if not k.startswith(AUDIO_PREFIX) and _is_clip_key(k)]
    unknown = [k for k in state if not k.startswith(AUDIO_PREFIX) and not _is_clip_key(k)]
    if unknown:
        shown = ", ".join(unknown[:10]) + (f", ... ({len(unknown) - 10} more)" if len(unknown) > 10 else "")
        raise WeightsMismatchError(f"{path}: {len(unknown)} keys are neither AudioCLIP's audio head (audio.*) "
                                   f"nor its CLIP part: {shown}")
    not_tensors = [k for k, v in audio.items() if not isinstance(v, torch.Tensor)]
    if not_tensors:
        raise WeightsMismatchError(f"{path}: entries that are not tensors: {', '.join(not_tensors[:10])}")
    with torch.device("meta"):
        model = AudioCLIPAudio(**_preset(size))
    load_state_dict_checked(model, audio, source=str(path), device=device)
    logger.info("AudioCLIP %s: loaded %d audio.* tensors; skipped %d CLIP keys (not used by FAD)", path,
                len(audio), len(clip))
    return model.eval()


def write_random_audioclip(checkpoint_dir: str | os.PathLike, size: str = "tiny", seed: int = 0) -> Path:
    """Write a random audio head of preset ``size`` as ``checkpoint_dir/AudioCLIP-Full-Training.pt`` in the
    published layout (a flat state dict saved with ``torch.save``, ``audio.*`` keys next to CLIP keys);
    returns the path.

    A few small stand-ins for the CLIP keys (``logit_scale*``, ``visual.conv1.weight``, ``token_embedding``)
    exercise the skipping. BatchNorm statistics and the FBSP parameters are random too, so that a load that
    missed them would show.
    """
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        model = build_audioclip(size)
        with torch.no_grad():
            for module in model.modules():
                if isinstance(module, nn.BatchNorm2d):
                    module.weight.uniform_(0.8, 1.2)
                    module.bias.normal_(0.0, 0.1)
                    module.running_mean.normal_(0.0, 0.1)
                    module.running_var.uniform_(0.5, 1.5)
                    module.num_batches_tracked.fill_(1000)
            fbsp = model.audio.fbsp
            fbsp.m.uniform_(0.0, 0.5)
            fbsp.fb.uniform_(0.5, 1.5)
            fbsp.fc.add_(torch.randn_like(fbsp.fc) * 0.1)
        state: OrderedDict[str, torch.Tensor] = OrderedDict()
        state["logit_scale"] = torch.tensor(4.6052)  # log(100), as CLIP's
        state["visual.conv1.weight"] = torch.randn(2, 3, 3, 3)
        state["token_embedding.weight"] = torch.randn(4, 2)
        state.update((AUDIO_PREFIX + k, v.detach().clone()) for k, v in model.audio.state_dict().items())
        state["logit_scale_ai"] = torch.tensor(2.3026)
        state["logit_scale_at"] = torch.tensor(2.3026)
    path = Path(checkpoint_dir) / SOURCES["audioclip"].name
    path.parent.mkdir(parents=True, exist_ok=True)
    torch.save(state, path)
    return path


# ----------------------------------------------------------------------------------------------- inputs


def fad_input(wave: np.ndarray, max_audio_len_s: float = 4.0, mode: str = "faithful") -> torch.Tensor:
    """The head's input for one clip.

    Args:
        wave: [N] mono float waveform at 16 kHz in [-1, 1] (as librosa loads it).
        max_audio_len_s: the clip is cropped (its start kept) or zero-padded at the end to
            int(max_audio_len_s · 16000) samples, 64,000 for 4 s.
        mode: ``faithful`` (the 16 kHz floats as they are) or ``corrected`` (that segment resampled to
            44.1 kHz with librosa's ``soxr_hq``, length int(max_audio_len_s · 44100), and mapped to int16
            range by x = 32767.5·y - 0.5, the inverse of the head's rescale).

    Returns:
        [1, L] float32.

    Raises:
        ValueError: an unknown mode, or a wave that is not 1-D.
    """
    if mode not in MODES:
        raise ValueError(f"unknown FAD input mode {mode!r}; valid: {', '.join(MODES)}")
    wave = np.asarray(wave, dtype=np.float32)
    if wave.ndim != 1:
        raise ValueError(f"fad_input wants a mono waveform [N], got shape {list(wave.shape)}")
    wave = _fit(wave, int(max_audio_len_s * FAD_SAMPLE_RATE))
    if mode == "corrected":
        import librosa

        resampled = librosa.resample(wave, orig_sr=FAD_SAMPLE_RATE, target_sr=HEAD_SAMPLE_RATE, res_type="soxr_hq")
        resampled = _fit(resampled.astype(np.float64), int(max_audio_len_s * HEAD_SAMPLE_RATE))
        wave = (32767.5 * resampled - 0.5).astype(np.float32)
    return torch.from_numpy(np.ascontiguousarray(wave))[None]


def _fit(wave: np.ndarray, length: int) -> np.ndarray:
    """Crop (keep the start) or zero-pad at the end to ``length`` samples."""
    return wave[:length] if wave.shape[0] >= length else np.pad(wave, (0, length - wave.shape[0]))


@torch.no_grad()
def audioclip_features(model: nn.Module, batch: torch.Tensor) -> torch.Tensor:
    """FAD features of a batch of ``fad_input`` outputs.

    Args:
        model: an ``AudioCLIPAudio`` (``load_audioclip``) in eval mode.
        batch: [B, 1, L] (stacked ``fad_input`` outputs).

    Returns:
        [B, 1024] float32 raw embeddings (not normalised), on the model's device.
    """
    device = next(model.parameters()).device
    return model(batch.to(device=device, dtype=torch.float32)).float()
