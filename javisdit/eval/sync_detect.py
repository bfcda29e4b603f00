"""The detectors of the JavisDiT-mini synchronisation benchmark (issue 14): where the ball of a given colour
is, when it hits the floor, when the soundtrack's impacts start, and which material they sound like.

They read the bouncing-ball clips of ``javisdit.datasets.bouncing`` without importing it: colours come as
``rgb`` triples or a palette ``{name: (r, g, b)}``, materials as ``{name: (pitch_hz, decay_s)}``.

Conventions: frame ``t`` is shown at ``t / fps`` seconds and audio sample ``n`` at ``n / sample_rate`` (as
AV-Align's detectors, ``av_align``); image rows grow downward, so a falling ball's centre row ``cy``
increases; pixel ``(y, x)`` is centred on integer coordinates. Shapes: ``T`` frames of ``H x W`` pixels,
``S`` audio samples (mono), ``N`` events.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Mapping, Sequence
from typing import NamedTuple

import numpy as np

RGB = Sequence[int]
TOLERANCE = 60.0  # RGB Euclidean distance (of 441) within which a pixel has the ball's colour
MIN_AREA = 4  # pixels: smaller blobs are noise
MAX_FRACTION = 0.25  # of the frame: a larger blob is background or floor, never a ball
MIN_RISE_PX = 1.5  # px: a contact must rise this far above the track on one side (blob jitter does not)
MIN_VISIBLE = 0.5  # of the ball's median area: a smaller blob is mostly hidden and its centroid is off
FLOOR_MARGIN = 0.25  # of the track's vertical span: how far above the lowest position a contact may lie
ENVELOPE_S = 0.005  # energy box width: two periods of a 400 Hz ripple (the square of a 200 Hz tone)
N_MELS = 40
MIN_FLUX = 0.45  # dB: mean rise per mel band over 8 ms that an onset must reach within 20 ms
FLUX_LAG_HOPS = 4  # the flux compares levels 4 hops (8 ms) apart
FLUX_LAG_S = 0.005  # how late the flux peak follows a sharp attack (measured on tone bursts)
RANGE_DB = 50.0  # spectrogram levels below the loudest minus this are floored
NOISE_MARGIN_DB = 6.0  # ... and so are levels within this of the clip's 20th percentile
SILENCE_DB = -70.0  # a clip whose peak (dBFS) is below this has no onsets
MIN_GAP_S = 0.05  # two onsets (or two impacts) closer than this are one event
DECAY_WEIGHT = 0.25  # octaves of pitch error worth one octave of decay error when naming a material
_TINY = 1e-20


class Blob(NamedTuple):
    """A detected ball: ``found`` and, when found, its centroid (pixels) and area (pixel count)."""

    found: bool
    cy: float
    cx: float
    area: int


_NOT_FOUND = Blob(False, float("nan"), float("nan"), 0)


def _check_frame(frame: np.ndarray) -> np.ndarray:
    frame = np.asarray(frame)
    if frame.ndim != 3 or frame.shape[-1] != 3:
        raise ValueError(f"a frame must be [H, W, 3] RGB, got shape {list(frame.shape)}")
    return frame


def colour_mask(frame: np.ndarray, rgb: RGB, tolerance: float = TOLERANCE,
                others: Sequence[RGB] | None = None) -> np.ndarray:
    """Pixels of ``frame`` [H, W, 3] within ``tolerance`` (RGB Euclidean distance) of ``rgb``, and no nearer
    to any colour of ``others`` (the rest of a palette): bool [H, W]."""
    pixels = _check_frame(frame).astype(np.float32)
    distance = np.sum((pixels - np.asarray(rgb, np.float32)) ** 2, axis=-1)
    mask = distance <= tolerance**2
    for other in others or ():
        mask &= distance <= np.sum((pixels - np.asarray(other, np.float32)) ** 2, axis=-1)
    return mask


def _largest_blob(mask: np.ndarray, min_area: int, max_fraction: float) -> Blob:
    import cv2

    _, _, stats, centroids = cv2.connectedComponentsWithStats(mask.astype(np.uint8), connectivity=8)
    areas = stats[1:, cv2.CC_STAT_AREA]  # label 0 is the unmasked rest
    usable = (areas >= min_area) & (areas <= max_fraction * mask.size)
    if not usable.any():
        return _NOT_FOUND
    best = int(np.argmax(np.where(usable, areas, -1))) + 1
    cx, cy = centroids[best]
    return Blob(True, float(cy), float(cx), int(stats[best, cv2.CC_STAT_AREA]))


def find_ball(frame: np.ndarray, rgb: RGB, tolerance: float = TOLERANCE, *, others: Sequence[RGB] | None = None,
              min_area: int = MIN_AREA, max_fraction: float = MAX_FRACTION) -> Blob:
    """The ball of colour ``rgb`` in one frame: the largest 8-connected blob of :func:`colour_mask` pixels
    of at least ``min_area`` and at most ``max_fraction`` of the frame; its centroid is the mean pixel
    coordinate (binary, so an anti-aliased rim counts only where it is within ``tolerance``).

    Args:
        frame: uint8 [H, W, 3] RGB.
        others: colours a pixel must not be nearer to (e.g. the other palette entries), so that close
            palette colours do not claim each other's balls.
    """
    return _largest_blob(colour_mask(frame, rgb, tolerance, others), min_area, max_fraction)


def ball_track(frames: np.ndarray, rgb: RGB, tolerance: float = TOLERANCE, **kwargs) -> np.ndarray:
    """float64 [T, 3]: ``(cy, cx, area)`` of :func:`find_ball` per frame of ``frames`` [T, H, W, 3]; NaN rows
    where the ball is not found."""
    track = np.full((len(frames), 3), np.nan)
    for t, frame in enumerate(frames):
        blob = find_ball(frame, rgb, tolerance, **kwargs)
        if blob.found:
            track[t] = blob.cy, blob.cx, blob.area
    return track


def colour_presence(frames: np.ndarray, rgb: RGB, tolerance: float = TOLERANCE, **kwargs) -> float:
    """Fraction of the frames [T, H, W, 3] (T >= 1) in which :func:`find_ball` finds a ball of ``rgb``."""
    if len(frames) == 0:
        raise ValueError("colour_presence needs at least one frame")
    return float(np.mean(~np.isnan(ball_track(frames, rgb, tolerance, **kwargs)[:, 0])))


def dominant_ball_colour(frames: np.ndarray, palette: Mapping[str, RGB], tolerance: float = TOLERANCE,
                         **kwargs) -> str | None:
    """The palette name whose ball is found in the most frames [T, H, W, 3] (ties: the larger mean area);
    each pixel belongs only to its nearest palette colour. None when no palette colour is ever found."""
    best, best_key = None, (0.0, 0.0)
    for name, rgb in palette.items():
        others = [c for other, c in palette.items() if other != name]
        areas = ball_track(frames, rgb, tolerance, others=others, **kwargs)[:, 2]
        found = ~np.isnan(areas)
        key = (float(found.mean()), float(areas[found].mean()) if found.any() else 0.0)
        if key > best_key:
            best, best_key = name, key
    return best


def _gravity_half(cy: np.ndarray, peaks: np.ndarray) -> float:
    """``c`` of ``cy = a + b t + c t^2`` (pixels, frames): half the median second difference over frame
    triples that lie on one arc (away from every contact); 0 when fewer than 3 such triples or not > 0."""
    second = cy[:-2] - 2 * cy[1:-1] + cy[2:]
    centre = np.arange(1, len(cy) - 1)
    near = np.zeros(len(centre), bool)
    for p in peaks:
        near |= np.abs(centre - p) <= 1
    values = second[~near & np.isfinite(second)]
    if values.size < 3 or not np.median(values) > 0:
        return 0.0
    return float(np.median(values)) / 2


def _line(t: np.ndarray, z: np.ndarray) -> tuple[float, float, float]:
    slope, intercept = np.polyfit(t, z, 1)
    return float(slope), float(intercept), float(np.sum((slope * t + intercept - z) ** 2))


def _contact_time(cy: np.ndarray, i: int, lo: int, hi: int, c: float) -> tuple[float, float]:
    """Sub-frame time (frames) and row of the contact sampled at the local maximum ``i`` of ``cy``: with
    gravity removed (``z = cy - c t^2``) both branches of the bounce are straight lines, and the contact is
    where they meet. The peak sample belongs to one branch; both choices are fitted (the two nearest
    tracked frames a side within 3 frames, strictly between the previous and next contacts ``lo`` and
    ``hi``) and the one whose crossing falls on its own side of ``i`` with the smaller residual wins.
    Falls back to ``(i, cy[i])``."""
    seen = [t for t in range(max(lo + 1, i - 3), min(hi, i + 4)) if t != i and np.isfinite(cy[t])]
    before, after = [t for t in seen if t < i][-2:], [t for t in seen if t > i][:2]
    best, best_residual = (float(i), float(cy[i])), np.inf
    for left, right, window in ((np.array([*before, i]), np.array(after), (i, i + 1)),
                                (np.array(before), np.array([i, *after]), (i - 1, i))):
        if len(before) < 2 or len(after) < 2:
            break
        (b1, a1, r1), (b2, a2, r2) = _line(left, cy[left] - c * left**2), _line(right, cy[right] - c * right**2)
        if not b1 > b2:  # the ball must come down, then go up
            continue
        crossing = (a2 - a1) / (b1 - b2)
        if window[0] - 1e-6 <= crossing <= window[1] + 1e-6 and r1 + r2 < best_residual:
            best, best_residual = (crossing, a1 + b1 * crossing + c * crossing**2), r1 + r2
    return best


def _edge_contact(cy: np.ndarray, c: float, floor: float, at_start: bool) -> float | None:
    """A contact (frames) that the clip's first (or last) frame is the lowest sample of: the ball rises
    from frame 0 through frames 1, 2 (falls through frames T-3, T-2 to T-1). The branch through those two
    frames, gravity restored, meets the contact row ``floor`` at the contact; it counts when that lies
    within the clip's time span [0, T) frames, between the edge frame and its neighbour."""
    n = len(cy)
    if n < 3:
        return None
    edge, near = (0, [1, 2]) if at_start else (n - 1, [n - 3, n - 2])
    ordered = cy[[near[1], near[0], edge]] if at_start else cy[[near[0], near[1], edge]]
    if not (np.isfinite(ordered).all() and ordered[0] < ordered[1] < ordered[2]):
        return None
    t = np.array(near, dtype=float)
    slope, intercept, _ = _line(t, cy[near] - c * t**2)
    roots = np.roots([c, slope, intercept - floor]) if c > 0 else np.array([(floor - intercept) / slope])
    lo, hi = (0.0, 1.0) if at_start else (n - 2.0, float(n))
    inside = [float(r.real) for r in np.atleast_1d(roots) if abs(r.imag) < 1e-9 and lo <= r.real < hi]
    return min(inside, key=lambda r: abs(r - edge)) if inside else None


def video_impacts(frames: np.ndarray, fps: float, rgb: RGB, tolerance: float = TOLERANCE, *,
                  min_rise_px: float = MIN_RISE_PX, floor_margin: float = FLOOR_MARGIN, **kwargs) -> list[float]:
    """Times (s) at which the ball of ``rgb`` hits the floor in ``frames`` [T, H, W, 3] at ``fps``.

    The ball's centre row ``cy`` is tracked (:func:`ball_track`); frames where its blob is under
    ``MIN_VISIBLE`` of its median area (another ball in front of it) count as not seen, and gaps are
    interpolated to find peaks. A contact is a local maximum of ``cy`` (down turns to up; scipy's
    ``find_peaks``) in a frame where the ball is seen, standing ``min_rise_px`` above the track's lowest
    point on one side or the other (before the previous or after the next higher maximum: a contact next
    to the clip's end has only a short rise after it), within ``floor_margin`` of the track's vertical
    span of its lowest position. Its time is refined below one frame by :func:`_contact_time`
    (gravity-corrected straight branches, exact for a sampled parabola bounce). A first or last frame that
    is the lowest sample of its arc is a contact when the branch beside it meets the contact row (the
    median of the refined contacts' rows; else the lowest row seen) within the clip's span
    (:func:`_edge_contact`).
    """

    from scipy.signal import find_peaks

    if fps <= 0:
        raise ValueError(f"fps must be positive, got {fps}")
    track = ball_track(frames, rgb, tolerance, **kwargs)
    if np.isfinite(track[:, 2]).sum() < 3:
        return []
    cy = np.where(track[:, 2] >= MIN_VISIBLE * np.nanmedian(track[:, 2]), track[:, 0], np.nan)
    found = np.flatnonzero(np.isfinite(cy))
    if found.size < 3:
        return []
    lowest, span = cy[found].max(), np.ptp(cy[found])
    if span < min_rise_px:
        return []
    near_floor = lowest - floor_margin * span
    filled = np.interp(np.arange(len(cy)), found, cy[found])
    peaks, bases = find_peaks(filled, prominence=0)
    rise = np.maximum(filled[peaks] - filled[bases["left_bases"]], filled[peaks] - filled[bases["right_bases"]])
    peaks = np.array([p for p, r in zip(peaks, rise) if r >= min_rise_px and cy[p] >= near_floor], dtype=int)
    c = _gravity_half(cy, peaks)
    bounds = [-1, *peaks.tolist(), len(cy)]
    contacts = [_contact_time(cy, int(p), bounds[k], bounds[k + 2], c) for k, p in enumerate(peaks)]
    floor = float(np.median([row for _, row in contacts])) if contacts else lowest
    times = [t for t, _ in contacts]
    for at_start in (True, False):
        edge = 0 if at_start else len(cy) - 1
        if np.isfinite(cy[edge]) and cy[edge] >= near_floor:
            t = _edge_contact(cy, c, floor, at_start)
            if t is not None and all(abs(t - other) >= 1 for other in times):
                times.append(t)
    return sorted(t / fps for t in times)


def _box_energy(wave: np.ndarray, width: int) -> np.ndarray:
    """float64 [S]: mean square of ``wave`` over a centred box of ``width`` samples (clipped at the ends)."""
    cumulative = np.concatenate([[0.0], np.cumsum(wave.astype(np.float64) ** 2)])
    n = np.arange(wave.size)
    lo, hi = np.clip(n - width // 2, 0, wave.size), np.clip(n - width // 2 + width, 0, wave.size)
    return (cumulative[hi] - cumulative[lo]) / np.maximum(hi - lo, 1)


def _mono(wave: np.ndarray) -> np.ndarray:
    wave = np.asarray(wave, dtype=np.float64)
    if wave.ndim != 1:
        raise ValueError(f"the waveform must be mono [S], got shape {list(wave.shape)}")
    return wave


def audio_onsets(wave: np.ndarray, sample_rate: int, *, min_gap_s: float = MIN_GAP_S) -> list[float]:
    """Onset times (s) of the impact sounds in ``wave`` [S], sorted.

    Detection: librosa's spectral flux (levels ``FLUX_LAG_HOPS`` apart) on a log-mel spectrogram (40
    bands, ~32 ms Hann window, 2 ms hop) floored at the loudest level - 50 dB and at the clip's
    20th-percentile level + 6 dB, so that noise and decaying tails do not flicker; ``onset_detect``'s peak
    picking (above the local mean by 7 % of the largest flux) with ``wait = min_gap_s``. A peak counts
    when the flux reaches ``MIN_FLUX`` within 20 ms (white noise alone peaks at 0.2-0.35, clean or
    mel-inverted bursts at 0.6-10) and the sound does not fall silent after it (a cut: the 5 ms-box
    energy 5-25 ms later stays 10 dB under its peak 10-40 ms before). A window's spectral splatter shows
    a new impact even over a still-ringing tone of its own pitch, where the energy need not rise; and
    mel-inverted (Griffin-Lim) audio does not set it off, where a linear-prediction innovation does (both
    of those detectors were tried and dropped).

    Timing: where the attack is sharp (the 5 ms-box energy rises >= 10 dB within +-15 ms of the flux
    peak, its 25-75 % rise taking <= 5 ms) the onset is the halfway crossing of that rise, which the box
    centres on a step attack (within ~0.5 ms); elsewhere it is the flux peak less ``FLUX_LAG_S``. On tone
    bursts this is within ~5 ms (95 % within 3 ms); on mel-inverted bursts 95 % within 8 ms.
    """
    import librosa

    wave = _mono(wave)
    if wave.size == 0 or np.abs(wave).max() < 10 ** (SILENCE_DB / 20):
        return []
    hop, n_fft = max(1, round(0.002 * sample_rate)), 1 << int(np.ceil(np.log2(0.032 * sample_rate)))
    mel = librosa.feature.melspectrogram(y=wave.astype(np.float32), sr=sample_rate, n_fft=n_fft, hop_length=hop,
                                         n_mels=N_MELS)
    level = 10 * np.log10(mel + _TINY)
    level = np.maximum(level, max(level.max() - RANGE_DB, np.percentile(level, 20) + NOISE_MARGIN_DB))
    flux = librosa.onset.onset_strength(S=level, sr=sample_rate, n_fft=n_fft, hop_length=hop, lag=FLUX_LAG_HOPS)
    if not flux.max() > 0:
        return []
    peaks = librosa.onset.onset_detect(onset_envelope=flux, sr=sample_rate, hop_length=hop,
                                       wait=max(1, round(min_gap_s * sample_rate / hop)))
    energy = _box_energy(wave, max(1, round(ENVELOPE_S * sample_rate)))
    ms = sample_rate / 1000
    onsets = []
    for p in peaks:
        c = int(p) * hop
        before = energy[max(0, c - round(40 * ms)) : max(1, c - round(10 * ms))].max()
        after = energy[min(c + round(5 * ms), wave.size - 1) : c + round(25 * ms)].max()
        if flux[p : p + round(20 * ms / hop) + 1].max() >= MIN_FLUX and after >= 0.1 * before:
            onsets.append(float(_attack_time(energy, c, sample_rate)))
    return sorted(onsets)


def _attack_time(energy: np.ndarray, centre: int, sample_rate: int) -> float:
    """The onset (s) near the flux peak at sample ``centre`` of a clip with box energy ``energy`` [S]
    (see :func:`audio_onsets`)."""
    reach = round(0.015 * sample_rate)
    centre = min(centre, energy.size - 1)
    lo, hi = max(0, centre - reach), min(energy.size, centre + reach + 1)
    base_at = lo + int(np.argmin(energy[lo : centre + 1]))
    peak_at = centre + int(np.argmax(energy[centre:hi]))
    base, peak = energy[base_at], energy[peak_at]
    if not peak >= 10 * base or peak <= 0:
        return max(0.0, centre / sample_rate - FLUX_LAG_S)
    rise = energy[base_at : peak_at + 1]

    def crossing(fraction: float) -> float:
        target = base + fraction * (peak - base)
        j = int(np.flatnonzero(rise < target)[-1])
        return base_at + j + (target - rise[j]) / (rise[j + 1] - rise[j])

    if crossing(0.75) - crossing(0.25) > 0.005 * sample_rate:
        return max(0.0, centre / sample_rate - FLUX_LAG_S)
    return crossing(0.5) / sample_rate


def burst_features(wave: np.ndarray, sample_rate: int, onsets: Sequence[float],
                   max_len_s: float = 0.5) -> np.ndarray:
    """float64 [N, 2]: ``(pitch_hz, decay_s)`` of the burst after each (sorted) onset, up to the next or
    ``max_len_s``. Pitch: the strongest bin (not DC) of the Hann-windowed first 100 ms, zero-padded x4,
    refined by a parabola through the log magnitudes. Decay: the time constant ``tau`` of an
    ``exp(-t / tau)`` amplitude envelope, from a line through the 10 ms frame levels (dB) from the loudest
    frame until they drop 40 dB or to 10 dB above the clip's 10th-percentile frame level (inf when the
    level does not fall). NaN where a burst is shorter than 10 ms or has fewer than 3 frames to fit.
    """
    wave = _mono(wave)
    frame = max(1, round(0.01 * sample_rate))
    usable = wave[: wave.size // frame * frame].reshape(-1, frame)
    noise_db = float(np.percentile(10 * np.log10((usable**2).mean(axis=1) + _TINY), 10)) if usable.size else 0.0
    starts = [max(0, round(t * sample_rate)) for t in onsets]
    out = np.full((len(starts), 2), np.nan)
    for k, start in enumerate(starts):
        following = starts[k + 1] if k + 1 < len(starts) else wave.size
        end = min(wave.size, start + round(max_len_s * sample_rate), following)
        segment = wave[start:end]
        if segment.size < frame:
            continue
        head = segment[: round(0.1 * sample_rate)]
        n_fft = 1 << int(np.ceil(np.log2(4 * head.size)))
        magnitude = np.log(np.abs(np.fft.rfft(head * np.hanning(head.size), n_fft)) + 1e-12)
        b = 1 + int(np.argmax(magnitude[1:-1]))
        left, mid, right = magnitude[b - 1 : b + 2]
        curvature = left - 2 * mid + right
        out[k, 0] = (b + (0.5 * (left - right) / curvature if curvature < 0 else 0.0)) * sample_rate / n_fft
        levels = 10 * np.log10((segment[: segment.size // frame * frame].reshape(-1, frame) ** 2).mean(axis=1)
                               + _TINY)
        top = int(np.argmax(levels))
        floor = max(levels[top] - 40.0, noise_db + 10.0)
        stop = top + 1
        while stop < levels.size and levels[stop] >= floor:
            stop += 1
        if stop - top >= 3:
            slope = np.polyfit(np.arange(top, stop) * frame / sample_rate, levels[top:stop], 1)[0]
            out[k, 1] = 20 * np.log10(np.e) / -slope if slope < 0 else np.inf
    return out


def _material_distance(pitch: float, decay: float, table: tuple[float, float], decay_weight: float) -> float:
    distance = abs(np.log2(pitch / table[0]))
    if np.isfinite(decay) and decay > 0:
        distance += decay_weight * abs(np.log2(decay / table[1]))
    return float(distance)


def classify_bursts(features: np.ndarray, materials: Mapping[str, tuple[float, float]],
                    decay_weight: float = DECAY_WEIGHT) -> list[str | None]:
    """The nearest material of each row ``(pitch_hz, decay_s)`` of ``features`` [N, 2]: distance
    ``|log2(pitch / pitch_m)| + decay_weight * |log2(decay / decay_m)|`` (the decay term only where the
    decay is finite and measured). None for a row without a pitch."""
    labels: list[str | None] = []
    for pitch, decay in np.asarray(features, dtype=np.float64).reshape(-1, 2):
        if np.isfinite(pitch) and pitch > 0:
            labels.append(min(materials, key=lambda m: _material_distance(pitch, decay, materials[m], decay_weight)))
        else:
            labels.append(None)
    return labels


def impact_material(wave: np.ndarray, sample_rate: int, onsets: Sequence[float],
                    materials: Mapping[str, tuple[float, float]], decay_weight: float = DECAY_WEIGHT) -> str | None:
    """The material the impacts of ``wave`` [S] at ``onsets`` (s) sound like: the majority of
    :func:`classify_bursts` over the bursts (a tie goes to the material met first). None without bursts."""
    labels = [x for x in classify_bursts(burst_features(wave, sample_rate, onsets), materials, decay_weight) if x]
    return Counter(labels).most_common(1)[0][0] if labels else None
