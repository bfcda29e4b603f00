"""The protocol record: exactly how a JavisBench number was computed, written into every result file.

Published numbers for the same model differ by a factor of four between papers because clip length,
frame count, resolution and subset go unrecorded (EVAL.md §1.4 items 4 and 12). Every output therefore
carries a ``protocol`` block: what the samples are (read from the files, not from a config), every
evaluation parameter, faithful or corrected maths, the checkpoints' hashes, how many rows each metric
saw, and the package versions.

``--protocol paper`` pins the v0.1 paper's evaluation settings (16 frames for FVD, 224 px, 4 s audio,
2.0 s / 1.5 s JavisScore windows) and warns about samples that do not fit them.
"""

from __future__ import annotations

import logging
import platform
import sys
from collections import Counter
from dataclasses import asdict, dataclass, field, fields
from importlib import metadata

from javisdit.errors import UserError

logger = logging.getLogger(__name__)

MODES = ("faithful", "corrected")

# EVAL.md §1.4: the settings the v0.1 paper's evaluation ran with
PAPER = dict(max_frames=16, image_size=224, max_audio_len_s=4.0, window_size_s=2.0, window_overlap_s=1.5)
PAPER_DURATION_S = 4.0

# deliberate differences from the upstream evaluator, whatever the mode
DIFFERENCES = (
    "frames are decoded with PyAV (upstream: OpenCV / decord / torio per metric)",
    "audio is read from the .wav beside a sample, else from the mp4's own audio track (upstream needs .wav files)",
    "audio is resampled with librosa soxr_hq where a metric needs another rate "
    "(upstream: librosa or torchaudio per metric; identical for 16 kHz samples)",
    "CAVP frames are taken from the decoded video at 4 fps (ffmpeg fps-filter rule) instead of a lossy re-encode",
    "CLIP runs in float32 (upstream: float16 on a GPU through the clip package)",
    "CAVP failures are counted and left out of the mean (upstream scores them 0.0)",
)
CORRECTIONS = {
    "fvd": "I3D sees frames in [-1, 1] (faithful: ~[0, 1], the uint8 conversion bug)",
    "kvd": "plain unbiased MMD² (faithful: each set centred on its own mean first, so mean shifts are ignored)",
    "fad": "AudioCLIP gets 44.1 kHz audio in its int16 range and FAD is not multiplied by 10^4 "
           "(faithful: 16 kHz floats in [-1, 1], FAD x 10^4)",
    "av_align": "the README's symmetric formula, peaks within ±3 frames (faithful: the code's one-sided ±1 frame)",
    "clip_score": "CLIP gets RGB frames (faithful: red and blue swapped, upstream converts BGR to RGB twice)",
    "clap_score": "the CLAP processor repeat-pads clips shorter than 10 s (faithful: zero-padded, as upstream's "
                  "padding=True makes it)",
    "imagebind": "each audio clip/window is centred on a copy (faithful: in place on the shared waveform)",
}


@dataclass
class Settings:
    """Every parameter an evaluation depends on (the CLI flags of EVAL.md §1.2 and ours)."""

    mode: str = "faithful"
    protocol: str = "custom"
    max_frames: int = 24
    image_size: int = 224
    max_audio_len_s: float = 4.0
    window_size_s: float = 2.0
    window_overlap_s: float = 1.5
    fad_sample_rate: int = 16000
    clap_sample_rate: int = 48000
    network_size: str = "full"
    eval_gt: bool = False
    eval_num: int | None = None

    def __post_init__(self) -> None:
        if self.mode not in MODES:
            raise UserError(f"--mode must be one of {', '.join(MODES)}, got {self.mode!r}")
        if self.max_frames < 9:
            raise UserError(f"--max-frames must be at least 9 (I3D's temporal pooling), got {self.max_frames}")
        if not self.max_audio_len_s > 0:
            raise UserError(f"--max-audio-len-s must be positive, got {self.max_audio_len_s}")
        if not 0 <= self.window_overlap_s < self.window_size_s:
            raise UserError(f"--window-overlap-s must be in [0, --window-size-s), got {self.window_overlap_s} "
                            f"with a {self.window_size_s} s window")

    def comparable(self) -> dict:
        """The settings two runs must share for their numbers to be merged into one file."""
        out = asdict(self)
        out.pop("protocol")
        return out


def paper_settings(explicit: dict, **rest) -> Settings:
    """``Settings`` for ``--protocol paper``: the paper's values; an explicit flag that contradicts them
    is an error."""
    clash = {k: v for k, v in explicit.items() if k in PAPER and v is not None and v != PAPER[k]}
    if clash:
        raise UserError("--protocol paper fixes " + ", ".join(f"--{k.replace('_', '-')} {PAPER[k]}" for k in clash)
                        + "; drop the conflicting flag(s) or use --protocol custom")
    return Settings(protocol="paper", **PAPER, **rest)


@dataclass
class SampleFacts:
    """What one sample is, read from its files."""

    num_frames: int
    fps: float
    height: int
    width: int
    audio_sample_rate: int
    audio_channels: int
    audio_duration_s: float
    audio_source: str  # "wav" or "video track"

    @property
    def duration_s(self) -> float:
        return self.num_frames / self.fps


def _histogram(values) -> dict[str, int]:
    return {str(k): v for k, v in sorted(Counter(values).items(), key=lambda kv: str(kv[0]))}


def summarise_samples(facts: dict[int, SampleFacts]) -> dict:
    """The generation settings of the samples, as histograms of the values found."""
    items = list(facts.values())
    return {
        "num_samples": len(items),
        "num_frames": _histogram(f.num_frames for f in items),
        "fps": _histogram(round(f.fps, 3) for f in items),
        "resolution": _histogram(f"{f.height}x{f.width}" for f in items),
        "duration_s": _histogram(round(f.duration_s, 3) for f in items),
        "audio_sample_rate": _histogram(f.audio_sample_rate for f in items),
        "audio_channels": _histogram(f.audio_channels for f in items),
        "audio_duration_s": _histogram(round(f.audio_duration_s, 3) for f in items),
        "audio_source": _histogram(f.audio_source for f in items),
    }


def sample_warnings(facts: dict[int, SampleFacts], settings: Settings) -> list[str]:
    """One line per kind of mismatch between the samples and the protocol."""
    warnings = []
    if not facts:
        return warnings
    short = sorted(i for i, f in facts.items() if f.duration_s + 1e-6 < settings.max_audio_len_s)
    if short:
        durations = sorted({round(facts[i].duration_s, 3) for i in short})
        warnings.append(f"{len(short)} of {len(facts)} samples are shorter ({', '.join(map(str, durations[:5]))} s) "
                        f"than the protocol's {settings.max_audio_len_s} s (rows {short[:5]}...): audio is zero-padded "
                        "and the numbers do not compare with published ones")
    if settings.protocol == "paper":
        off = [i for i, f in facts.items() if abs(f.duration_s - PAPER_DURATION_S) > 0.05]
        if off:
            warnings.append(f"--protocol paper evaluates {PAPER_DURATION_S:g} s clips; {len(off)} samples are not "
                            f"(e.g. row {off[0]}: {facts[off[0]].duration_s:.3f} s)")
    rates = {round(f.fps, 3) for f in facts.values()}
    if len(rates) > 1:
        warnings.append(f"the samples have different frame rates: {sorted(rates)}")
    drift = [i for i, f in facts.items() if abs(f.audio_duration_s - f.duration_s) > max(0.1, 1.5 / f.fps)]
    if drift:
        f = facts[drift[0]]
        warnings.append(f"{len(drift)} samples have audio and video of different lengths (e.g. row {drift[0]}: "
                        f"video {f.duration_s:.3f} s, audio {f.audio_duration_s:.3f} s)")
    return warnings


VERSIONED = ("torch", "torchvision", "numpy", "scipy", "librosa", "soundfile", "av", "opencv-python-headless",
             "open-clip-torch", "transformers", "javisdit")


def versions() -> dict[str, str]:
    out = {"python": sys.version.split()[0], "platform": platform.platform()}
    for name in VERSIONED:
        try:
            out[name] = metadata.version(name)
        except metadata.PackageNotFoundError:
            continue
    return out


@dataclass
class MetricCount:
    rows: int = 0
    failed: int = 0
    skipped: int = 0
    failures: list[str] = field(default_factory=list)

    def as_dict(self) -> dict:
        out = {f.name: getattr(self, f.name) for f in fields(self) if f.name != "failures"}
        if self.failures:
            out["failures"] = self.failures[:20]
        return out


def protocol_block(settings: Settings, facts: dict[int, SampleFacts], counts: dict[str, MetricCount],
                   checkpoints: dict[str, dict], reference: dict | None, rows: dict) -> dict:
    """The ``protocol`` entry of a result file."""
    return {
        "settings": asdict(settings),
        "mode": settings.mode,
        "corrections": {k: v for k, v in CORRECTIONS.items()} if settings.mode == "corrected" else {},
        "samples": summarise_samples(facts),
        "rows": rows,
        "metrics": {name: count.as_dict() for name, count in sorted(counts.items())},
        "checkpoints": checkpoints,
        "reference": reference,
        "differences_from_upstream": list(DIFFERENCES),
        "warnings": sample_warnings(facts, settings),
        "versions": versions(),
    }
