"""Asynchronous negatives for stage 2 (JavisDiT §3.3): spatially or temporally out-of-sync versions of a
clip's video and audio, built online from each sample.

Per sample and round: one video-spatial, one video-temporal, one audio-spatial and one audio-temporal
negative, each operation drawn uniformly from its kind. Parameters follow the original; its bugs are
fixed (the volume window is ``L`` samples, a repeated segment plays twice, not three times, the
unpaired audio is padded to the clip's length, a temporal shift that has no other start falls back to a
stall instead of failing). Operations that need external pools (SA-V masklets for ``add_masklet``,
other recordings for ``add_sound_source``, separated stems for ``del_sound_source``) take a folder from
the config and fall back, with one log line, when it is absent. All randomness comes from the
per-sample generator, so a sample's negatives are the same in every run.
"""

from __future__ import annotations

import logging
import math
import random
from pathlib import Path

import numpy as np
import torch

logger = logging.getLogger(__name__)

VIDEO_SPATIAL = ("random_mask", "add_masklet")
VIDEO_TEMPORAL = ("temporal_shift", "video_stall")
AUDIO_SPATIAL = ("add_sound_source", "del_sound_source", "scale_volume")
AUDIO_TEMPORAL = ("temporal_shift", "audio_stall", "audio_repeat", "scale_speed")
SILENCE_RMS = 0.1


# ----- video ---------------------------------------------------------------------------------------------------

def random_mask(video: torch.Tensor, rng: random.Random, low: float = 0.2, high: float = 0.8) -> torch.Tensor:
    """Grey out a random share of the cells of a grid (cell = min(H, W) // 6) on every frame."""
    out = video.clone()
    H, W = video.shape[-2:]
    g = max(1, min(H, W) // 6)
    rows, cols = H // g, W // g
    for _ in range(int(rows * cols * rng.uniform(low, high))):
        r, c = rng.randrange(rows), rng.randrange(cols)
        out[..., r * g : (r + 1) * g, c * g : (c + 1) * g] = 0
    return out


def video_temporal_shift(video: torch.Tensor, rng: random.Random) -> torch.Tensor:
    """Roll the frames by k in [T // 10, T // 2) (at least 1): the picture runs ahead of the sound."""
    T = video.shape[1]
    k = rng.randint(max(1, T // 10), max(1, T // 10, T // 2 - 1))
    return torch.roll(video, shifts=-k, dims=1)


def video_stall(video: torch.Tensor, rng: random.Random) -> torch.Tensor:
    """Freeze one frame for d in [12, T] frames (fewer for short clips), then continue."""
    T = video.shape[1]
    d = rng.randint(min(12, T), T)
    start = rng.randint(0, T - d)
    index = list(range(start)) + [start] * d + list(range(start + 1, T))
    return video[:, index[:T]]


# ----- audio ---------------------------------------------------------------------------------------------------

def silence_aware_start(wave: torch.Tensor, length: int, rng: random.Random) -> tuple[int, bool]:
    """A start for a window of ``length`` samples inside sound rather than silence (RMS of tenths),
    and whether the whole clip is silent."""
    S = wave.shape[0]
    chunk = S // 10
    if chunk == 0:
        return 0, True
    loud = [float(part.pow(2).mean().sqrt()) >= SILENCE_RMS for part in torch.tensor_split(wave, 10)]
    runs, current = [], None
    for i, is_loud in enumerate(loud):
        if is_loud:
            current = [current[0] if current else i * chunk, (i + 1) * chunk]
        elif current:
            runs.append(current)
            current = None
    if current:
        runs.append(current)
    if not runs:
        return rng.randint(0, max(0, S - length - 1)), True
    long_enough = [r for r in runs if r[1] - r[0] >= length]
    if long_enough:
        b, e = rng.choice(long_enough)
        return rng.randint(b, e - length), False
    b, e = rng.choice(runs)
    low, high = max(0, e - length), min(S - length, b)
    return (rng.randint(low, high) if low <= high else max(0, min(low, S - length))), False


def _envelopes(n: int, gain: float) -> list[torch.Tensor]:
    x = torch.linspace(0, math.pi, n)
    return [gain * torch.sin(x), gain * torch.cos(x), gain * torch.linspace(0, 1, n), gain * torch.linspace(1, 0, n)]


def scale_volume(wave: torch.Tensor, start: int, length: int, rng: random.Random) -> torch.Tensor:
    """Multiply a window by a rising, falling or arched gain in [0.5, 2]."""
    out = wave.clone()
    n = min(length, wave.shape[0] - start)
    envelope = rng.choice(_envelopes(n, rng.uniform(0.5, 2.0)))
    out[start : start + n] = (out[start : start + n] * envelope).clamp(-1, 1)
    return out


def audio_stall(wave: torch.Tensor, start: int, length: int) -> torch.Tensor:
    """Insert ``length`` samples of silence at ``start`` (what follows arrives late)."""
    S = wave.shape[0]
    return torch.cat([wave[:start], torch.zeros(length), wave[start:]])[:S]


def audio_repeat(wave: torch.Tensor, start: int, length: int) -> torch.Tensor:
    """Play the window [start, start + length) twice."""
    S = wave.shape[0]
    return torch.cat([wave[: start + length], wave[start : start + length], wave[start + length :]])[:S]


def scale_speed(wave: torch.Tensor, start: int, length: int, rng: random.Random) -> torch.Tensor:
    """Play a window at half or double speed (time-stretched, pitch kept), spliced in place."""
    import librosa

    S = wave.shape[0]
    rate = 0.5 if rng.uniform(0, 1) < 0.5 else 2.0
    window = wave[start : start + length].numpy()
    stretched = torch.from_numpy(librosa.effects.time_stretch(window, rate=rate).astype(np.float32))
    if stretched.shape[0] < length:
        stretched = torch.nn.functional.pad(stretched, (0, length - stretched.shape[0]))
    return torch.cat([wave[:start], stretched, wave[start + length :]])[:S]


def audio_temporal_shift(full: torch.Tensor, window: tuple[int, int], rng: random.Random) -> torch.Tensor | None:
    """The same length of the clip's whole recording from another start (None when there is none)."""
    a0, a1 = window
    S, total = a1 - a0, full.shape[0]
    starts = total - S + 1
    if starts <= 1:
        return None
    new = rng.randrange(starts - 1)
    new = new + 1 if new >= a0 else new  # any start but the clip's own
    return full[new : new + S].clone()


# ----- SA-V masklets -------------------------------------------------------------------------------------------

def usable_frames(visible: list[bool], carry: int = 10) -> list[int]:
    """Visible frames, plus the first ``carry`` frames of every run of invisible ones."""
    usable, gap = [], 0
    for i, seen in enumerate(visible):
        gap = 0 if seen else gap + 1
        if seen or gap <= carry:
            usable.append(i)
    return usable


class MaskletPool:
    """SA-V masklets: ``{vid}_meta_{i}.json`` (``video_frame_height``, ``video_frame_width``,
    ``visible[]``, ``crop_bbox[]`` as x, y, w, h per frame) beside ``{vid}_masklet_{i}.mp4`` (the
    object's pixels) and ``{vid}_mask_{i}.mp4`` (its mask), sorted by usable length."""

    def __init__(self, metas: list[Path]):
        import json

        entries = []
        for meta in metas:
            info = json.loads(meta.read_text())
            usable = usable_frames([bool(v) for v in info["visible"]])
            entries.append((len(usable), str(meta), info, usable))
        entries.sort(key=lambda e: (e[0], e[1]))
        self.entries = entries

    def __len__(self) -> int:
        return len(self.entries)

    @staticmethod
    def media(meta: str, kind: str) -> Path:
        path = Path(meta)
        return path.with_name(path.name.replace("_meta_", f"_{kind}_").replace(".json", ".mp4"))

    def paste(self, video: torch.Tensor, rng: random.Random) -> torch.Tensor:
        """Paste a random masklet, scaled and placed at random, over a random run of frames."""
        from javisdit.datasets.read import read_video_frames

        C, T, H, W = video.shape
        length = rng.randint(min(T, max(12, T // 10)), T)
        candidates = [e for e in self.entries if e[0] > length] or [self.entries[-1]]
        count, meta, info, usable = rng.choice(candidates)
        begin = rng.randint(0, max(0, count - length))
        frames = usable[begin : begin + length]
        boxes = np.array([info["crop_bbox"][f] for f in frames], dtype=float)  # x, y, w, h
        left, top = boxes[:, 0].min(), boxes[:, 1].min()
        w_u, h_u = (boxes[:, 0] + boxes[:, 2]).max() - left, (boxes[:, 1] + boxes[:, 3]).max() - top
        if w_u <= 0 or h_u <= 0:
            low = high = 1.0
        else:
            high = min((W - 1) / w_u, (H - 1) / h_u)
            low = min((W - 1) / info["video_frame_width"], (H - 1) / info["video_frame_height"], high)
        r = rng.uniform(low, high)
        x0 = rng.randint(0, max(0, W - math.ceil(w_u * r) - 1))
        y0 = rng.randint(0, max(0, H - math.ceil(h_u * r) - 1))
        at = rng.randint(0, T - len(frames))
        content = read_video_frames(self.media(meta, "masklet"), np.array(frames))
        masks = read_video_frames(self.media(meta, "mask"), np.array(frames))
        out = video.clone()
        for j, (x, y, w, h) in enumerate(boxes):
            bx, by = int(x0 + (x - left) * r), int(y0 + (y - top) * r)
            bw, bh = min(int(w * r), W - bx), min(int(h * r), H - by)
            if bw < 1 or bh < 1:
                continue
            pixels = content[j].permute(2, 0, 1)[None].float() / 127.5 - 1  # [1, 3, h, w] in [-1, 1]
            mask = (masks[j][..., 0] > 127).float()[None, None]  # thresholded, unlike the original
            pixels = torch.nn.functional.interpolate(pixels, size=(bh, bw), mode="bilinear", align_corners=False)[0]
            mask = torch.nn.functional.interpolate(mask, size=(bh, bw), mode="nearest")[0, 0].bool()
            region = out[:, at + j, by : by + bh, bx : bx + bw]
            out[:, at + j, by : by + bh, bx : bx + bw] = torch.where(mask, pixels.to(out.dtype), region)
        return out


# ----- separated sources (AudioSep stems) -----------------------------------------------------------------------

def stem_for_window(audio_path: str, begin: int, end: int, rng: random.Random) -> Path | None:
    """A separated stem of ``audio_path`` active over the whole sample range [begin, end): stems are
    ``{audio}__sep__{iii}_{jjj}_{label}.wav`` with their active intervals in ``{audio}.json`` under
    ``{label}_{iii}_{jjj}``."""
    import json

    index = Path(f"{audio_path}.json")
    if not index.is_file():
        return None
    candidates = []
    for key, intervals in json.loads(index.read_text()).items():
        label, first, second = key.rsplit("_", 2)
        stem = Path(f"{audio_path}__sep__{first}_{second}_{label}.wav")
        if stem.is_file() and any(a <= begin and end <= b for a, b in intervals):
            candidates.append(stem)
    return rng.choice(sorted(candidates)) if candidates else None


class NegativeAugmentor:
    """Builds ``aug_num`` negatives of each kind for one sample (see the module docstring)."""

    def __init__(self, aug_num: int = 1, video_augmentation_pool: str | None = None,
                 audio_augmentation_pool: str | None = None):
        self.aug_num = int(aug_num)
        self.masklets = MaskletPool(self._pool(video_augmentation_pool, "*.json", "video (SA-V masklet)"))
        self.sounds = self._pool(audio_augmentation_pool, "*.wav", "audio")
        self._warned: set[str] = set()

    @staticmethod
    def _pool(root: str | None, pattern: str, kind: str) -> list[Path]:
        if root is None or not Path(root).is_dir():
            logger.warning("%s augmentation pool %s not found: its operations fall back (see augment.py)", kind, root)
            return []
        files = sorted(Path(root).glob(pattern))
        logger.info("%s augmentation pool %s: %d files", kind, root, len(files))
        return files

    def _fallback(self, op: str, fallback: str) -> None:
        if op not in self._warned:
            logger.warning("negative %s needs its augmentation pool, which is empty: using %s instead", op, fallback)
            self._warned.add(op)

    def video_spatial(self, video: torch.Tensor, rng: random.Random) -> torch.Tensor:
        op = rng.choice(VIDEO_SPATIAL)
        if op == "add_masklet":
            if len(self.masklets):
                try:
                    return self.masklets.paste(video, rng)
                except Exception as err:  # an unreadable masklet: fall back, loudly
                    logger.warning("add_masklet failed (%s: %s): random_mask instead", type(err).__name__, err)
            else:
                self._fallback(op, "random_mask")
        return random_mask(video, rng)

    def video_temporal(self, video: torch.Tensor, rng: random.Random) -> torch.Tensor:
        return video_temporal_shift(video, rng) if rng.choice(VIDEO_TEMPORAL) == "temporal_shift" else video_stall(video, rng)

    def audio_spatial(self, wave: torch.Tensor, rng: random.Random, audio_name: str = "",
                      full: torch.Tensor | None = None, offset: int = 0) -> torch.Tensor:
        op = rng.choice(AUDIO_SPATIAL)
        S = wave.shape[0]
        length = rng.randint(S // 3, max(S // 3, S - 10))
        start, silent = silence_aware_start(wave, length, rng)
        if silent:
            op = "add_sound_source"
        if op == "add_sound_source":
            others = [p for p in self.sounds if Path(audio_name).stem not in p.name]
            if not others:
                self._fallback(op, "scale_volume")
                return scale_volume(wave, start, length, rng)
            from javisdit.datasets.read import load_waveform

            extra = load_waveform(rng.choice(others))
            piece_start, _ = silence_aware_start(extra, length, rng)
            piece = extra[piece_start : piece_start + length]
            at = rng.randint(0, max(0, S - piece.shape[0]))
            out = wave.clone()
            out[at : at + piece.shape[0]] += piece[: S - at]
            return out
        if op == "del_sound_source":
            out = wave.clone()
            stem = stem_for_window(audio_name, offset + start, offset + start + length, rng) if audio_name else None
            if stem is None or full is None:
                self._fallback(op, "silencing the window")
                out[start : start + length] = 0
                return out
            from javisdit.datasets.read import load_waveform

            source = load_waveform(stem)
            a, b = offset + start, min(offset + start + length, source.shape[0], full.shape[0])
            out[start : start + (b - a)] = full[a:b] - source[a:b]  # the mix without that source
            return out
        return scale_volume(wave, start, length, rng)

    def audio_temporal(self, wave: torch.Tensor, full: torch.Tensor, window: tuple[int, int],
                       rng: random.Random) -> torch.Tensor:
        op = rng.choice(AUDIO_TEMPORAL)
        S = wave.shape[0]
        short = op in ("audio_stall", "audio_repeat")
        length = rng.randint(S // 5, max(S // 5, S // 2)) if short else rng.randint(S // 3, max(S // 3, S - 10))
        start, silent = silence_aware_start(wave, length, rng)
        if silent or op == "temporal_shift":
            shifted = audio_temporal_shift(full, window, rng)
            if shifted is not None:
                return shifted
            op = "audio_stall"  # the recording is no longer than the clip: nothing to shift to
        if op == "audio_stall":
            return audio_stall(wave, start, length)
        if op == "audio_repeat":
            return audio_repeat(wave, start, length)
        return scale_speed(wave, start, length, rng)

    def __call__(self, video: torch.Tensor, wave: torch.Tensor, full_wave: torch.Tensor, window: tuple[int, int],
                 rng: random.Random, unpaired_audio: Path | None = None, audio_name: str = ""):
        """video [C, T, H, W] in [-1, 1]; wave [S] the clip's audio; full_wave the whole recording with
        ``window`` the clip's samples in it. Returns ``({"spatial": [...], "temporal": [...]}`` video
        negatives, the same for audio waveforms)."""
        videos = {"spatial": [], "temporal": []}
        audios = {"spatial": [], "temporal": []}
        unpaired = None
        if unpaired_audio is not None:
            from javisdit.datasets.read import load_waveform

            u = load_waveform(unpaired_audio)[: wave.shape[0]]
            unpaired = torch.nn.functional.pad(u, (0, wave.shape[0] - u.shape[0]))
        for _ in range(self.aug_num):
            videos["spatial"].append(self.video_spatial(video, rng))
            videos["temporal"].append(self.video_temporal(video, rng))
            audios["spatial"].append(self.audio_spatial(wave, rng, audio_name, full_wave, window[0]))
            audios["temporal"].append(self.audio_temporal(wave, full_wave, window, rng))
            for mode in ("spatial", "temporal"):  # an unpaired recording replaces one negative at most
                if unpaired is not None and rng.random() > 0.5:
                    audios[mode][-1] = unpaired
                    unpaired = None
        return videos, audios
