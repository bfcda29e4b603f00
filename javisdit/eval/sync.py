"""The synchronisation measures of the JavisDiT-mini benchmark (issue 14): impacts seen in the picture
(``sync_detect.video_impacts``) against impacts heard (``sync_detect.audio_onsets``), scored as events.

* ``match_events``: a one-to-one matching within a tolerance (Hungarian: most pairs, then the smallest
  total offset), precision / recall / F1 and the signed offsets; ``pool_matches`` sums clips (micro F1);
* ``sync_scores`` (detectors + ``event_scores``): one clip's F1 within +-1 and +-2 video frames and its
  median signed offset;
* ``auroc``: how well a score separates sync from async pairs (Mann-Whitney, ties count 0.5);
* ``async_variants`` / ``swap_audio``: the labelled async pairs made from a synchronised clip.

Offsets are ``detected - reference``; with the video impacts as the reference they are audio minus video,
positive when the sound comes late. Shapes: ``T H W`` video, ``S`` audio samples.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from typing import NamedTuple

import numpy as np

from javisdit.eval.sync_detect import MIN_GAP_S, RGB, TOLERANCE, audio_onsets, video_impacts

TOLERANCES_FRAMES = (1, 2)
OFFSET_WINDOW_FRAMES = 6  # the median offset is read from a wider matching, so a lag past +-2 frames shows
SHIFT_FRAMES = (2, 12)


def prf(tp: int, fp: int, fn: int) -> tuple[float, float, float]:
    """Precision, recall, F1 of event counts; a ratio with a zero denominator is 0.0 (mir_eval's convention:
    two empty sets score 0, there being no evidence of sync)."""
    precision = tp / (tp + fp) if tp + fp else 0.0
    recall = tp / (tp + fn) if tp + fn else 0.0
    f1 = 2 * precision * recall / (precision + recall) if precision + recall else 0.0
    return precision, recall, f1


def match_events(reference: Sequence[float], detected: Sequence[float], tolerance_s: float) -> dict:
    """Match events one to one, a pair only when ``|detected - reference| <= tolerance_s``.

    The matching has the most pairs and, among those, the smallest total ``|offset|`` (scipy's
    ``linear_sum_assignment`` with out-of-tolerance pairs priced above any set of in-tolerance ones).

    Returns:
        ``tp``, ``fp`` (unmatched detected), ``fn`` (unmatched reference), ``precision``, ``recall``,
        ``f1`` (:func:`prf`), ``pairs`` [(reference index, detected index)] by reference index, and
        ``offsets``: ``detected - reference`` (s) of each pair, in that order.
    """
    from scipy.optimize import linear_sum_assignment

    if tolerance_s < 0:
        raise ValueError(f"tolerance_s must be >= 0, got {tolerance_s}")
    ref, det = np.asarray(reference, np.float64).ravel(), np.asarray(detected, np.float64).ravel()
    pairs: list[tuple[int, int]] = []
    if ref.size and det.size:
        cost = np.abs(det[None, :] - ref[:, None])
        allowed = cost <= tolerance_s + 1e-9  # the float error of times computed from frame indices
        priced = np.where(allowed, cost, tolerance_s * (min(ref.size, det.size) + 1) + 1.0)
        rows, cols = linear_sum_assignment(priced)
        pairs = sorted((int(r), int(c)) for r, c in zip(rows, cols) if allowed[r, c])
    tp = len(pairs)
    fp, fn = det.size - tp, ref.size - tp
    precision, recall, f1 = prf(tp, fp, fn)
    return dict(tp=tp, fp=fp, fn=fn, precision=precision, recall=recall, f1=f1, pairs=pairs,
                offsets=[float(det[c] - ref[r]) for r, c in pairs])


def pool_matches(matches: Iterable[dict]) -> dict:
    """Sum the counts of several :func:`match_events` results (a micro-averaged F1 over clips) and
    concatenate their offsets."""
    tp = fp = fn = 0
    offsets: list[float] = []
    for m in matches:
        tp, fp, fn = tp + m["tp"], fp + m["fp"], fn + m["fn"]
        offsets += m["offsets"]
    precision, recall, f1 = prf(tp, fp, fn)
    return dict(tp=tp, fp=fp, fn=fn, precision=precision, recall=recall, f1=f1, offsets=offsets)


def median_offset_ms(offsets: Sequence[float]) -> float | None:
    """The median of signed offsets given in seconds, in milliseconds; None when there are none."""
    return float(np.median(offsets)) * 1000.0 if len(offsets) else None


def merge_close(times: Sequence[float], gap: float) -> list[float]:
    """Sorted ``times`` with runs closer than ``gap`` replaced by their mean."""
    groups: list[list[float]] = []
    for t in sorted(times):
        if groups and t - groups[-1][-1] < gap:
            groups[-1].append(t)
        else:
            groups.append([t])
    return [float(np.mean(g)) for g in groups]


def impact_times(frames: np.ndarray, fps: float, rgb: RGB | Sequence[RGB], tolerance: float = TOLERANCE) -> list[float]:
    """Floor contacts (s) of the ball of ``rgb``, or of every ball when ``rgb`` is a list of colours, in
    ``frames`` [T, H, W, 3]; contacts of different balls within ``MIN_GAP_S`` merge into one, as their
    sounds do in :func:`audio_onsets`."""
    colours = np.asarray(rgb)
    colours = colours[None] if colours.ndim == 1 else colours
    return merge_close([t for c in colours for t in video_impacts(frames, fps, c.tolist(), tolerance)], MIN_GAP_S)


def event_scores(video_times: Sequence[float], audio_times: Sequence[float], fps: float, *,
                 tolerances_frames: Sequence[float] = TOLERANCES_FRAMES,
                 offset_window_frames: float = OFFSET_WINDOW_FRAMES) -> dict:
    """Score audio onsets against video contacts (both in s) of one clip at ``fps``.

    Returns:
        ``video_times``, ``audio_times``, ``n_video``, ``n_audio``; for each ``k`` in ``tolerances_frames``
        the :func:`match_events` counts and ratios within ``k / fps`` under ``tp_{k}f``, ``fp_{k}f``,
        ``fn_{k}f``, ``precision_{k}f``, ``recall_{k}f``, ``f1_{k}f``; and, from a matching within
        ``offset_window_frames`` (wider, so that a lag beyond the F1 tolerances still shows), ``offsets_ms``
        (audio minus video), ``median_offset_ms`` and ``median_offset_frames`` (None without pairs).
    """
    if fps <= 0:
        raise ValueError(f"fps must be positive, got {fps}")
    video, audio = [float(t) for t in video_times], [float(t) for t in audio_times]
    out: dict = dict(video_times=video, audio_times=audio, n_video=len(video), n_audio=len(audio))
    for k in tolerances_frames:
        m = match_events(video, audio, k / fps)
        out.update({f"{key}_{k:g}f": m[key] for key in ("tp", "fp", "fn", "precision", "recall", "f1")})
    offsets = match_events(video, audio, offset_window_frames / fps)["offsets"]
    median = median_offset_ms(offsets)
    out.update(offsets_ms=[o * 1000.0 for o in offsets], median_offset_ms=median,
               median_offset_frames=None if median is None else median * fps / 1000.0)
    return out


def sync_scores(frames: np.ndarray, fps: float, wave: np.ndarray, sample_rate: int, rgb: RGB | Sequence[RGB],
                tolerance: float = TOLERANCE, **kwargs) -> dict:
    """:func:`event_scores` of one clip: the contacts of the ball(s) of ``rgb`` in ``frames`` [T, H, W, 3]
    (:func:`impact_times`) against the onsets of its mono soundtrack ``wave`` [S] (``audio_onsets``);
    ``kwargs`` go to :func:`event_scores`."""
    return event_scores(impact_times(frames, fps, rgb, tolerance), audio_onsets(wave, sample_rate), fps, **kwargs)


def auroc(scores_positive: Sequence[float], scores_negative: Sequence[float]) -> float:
    """Area under the ROC curve of a score meant to be higher for positives: the Mann-Whitney estimate
    ``P(pos > neg) + 0.5 P(pos == neg)`` over all pairs, from average ranks.

    Raises:
        ValueError: an empty side or a non-finite score.
    """
    from scipy.stats import rankdata

    pos, neg = np.asarray(scores_positive, np.float64).ravel(), np.asarray(scores_negative, np.float64).ravel()
    if not pos.size or not neg.size:
        raise ValueError(f"auroc needs both classes, got {pos.size} positive and {neg.size} negative scores")
    if not (np.isfinite(pos).all() and np.isfinite(neg).all()):
        raise ValueError("auroc needs finite scores")
    ranks = rankdata(np.concatenate([pos, neg]))  # ties share their average rank: half a win each
    u = ranks[: pos.size].sum() - pos.size * (pos.size + 1) / 2
    return float(u / (pos.size * neg.size))


class Variant(NamedTuple):
    """One soundtrack of the sync/async pair set: ``sync`` is 1 for the original, 0 otherwise."""

    name: str
    sync: int
    wave: np.ndarray


def shift_samples(frames: float, sample_rate: int, fps: float) -> int:
    """A shift of ``frames`` video frames in audio samples (rounded to the nearest sample)."""
    return int(round(frames * sample_rate / fps))


def shift_audio(wave: np.ndarray, samples: int) -> np.ndarray:
    """``wave`` [S] delayed by ``samples`` (advanced when negative), silence filling in, length kept."""
    wave = np.asarray(wave)
    out = np.zeros_like(wave)
    if abs(samples) < wave.size:
        if samples >= 0:
            out[samples:] = wave[: wave.size - samples]
        else:
            out[:samples] = wave[-samples:]
    return out


def fit_length(wave: np.ndarray, length: int) -> np.ndarray:
    """``wave`` [S] cut or padded with silence at the end to ``length`` samples."""
    wave = np.asarray(wave)
    out = np.zeros(length, dtype=wave.dtype)
    out[: min(length, wave.size)] = wave[:length]
    return out


def async_variants(wave: np.ndarray, sample_rate: int, fps: float, rng: np.random.Generator, *,
                   n_shifts: int = 2, shift_frames: tuple[int, int] = SHIFT_FRAMES) -> list[Variant]:
    """The original soundtrack ``wave`` [S] (sync 1) and its async variants (sync 0), all of length S:
    ``n_shifts`` copies shifted by a whole number of frames drawn from ``shift_frames`` (inclusive), signs
    alternating from a random first one (``shift+5f`` is the sound 5 frames late), ``muted`` and
    ``reversed`` (time-reversed). Audio from another clip comes from :func:`swap_audio`."""
    wave = np.asarray(wave)
    sign = int(rng.choice([-1, 1]))
    out = [Variant("original", 1, wave.copy())]
    for k in rng.integers(shift_frames[0], shift_frames[1] + 1, size=n_shifts):
        frames = sign * int(k)
        out.append(Variant(f"shift{frames:+d}f", 0, shift_audio(wave, shift_samples(frames, sample_rate, fps))))
        sign = -sign
    out.append(Variant("muted", 0, np.zeros_like(wave)))
    out.append(Variant("reversed", 0, wave[::-1].copy()))
    return out


def swap_audio(waves: Sequence[np.ndarray], rng: np.random.Generator) -> list[tuple[int, np.ndarray]]:
    """For each clip ``i`` of ``waves`` (each [S_i], at least two clips) the audio of another clip ``j != i``
    cut or padded to ``S_i``: ``[(j, wave)]``. The donors form a derangement: a random order in which
    every clip takes the soundtrack of the clip a random ``1..n-1`` places further on."""
    n = len(waves)
    if n < 2:
        raise ValueError("swapping audio needs at least two clips")
    order, step = rng.permutation(n), int(rng.integers(1, n))
    donor = np.empty(n, dtype=int)
    donor[order] = order[(np.arange(n) + step) % n]
    return [(int(donor[i]), fit_length(waves[donor[i]], len(waves[i]))) for i in range(n)]
