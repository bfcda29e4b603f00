"""The synchronisation benchmark's detectors on synthetic clips with known answers (a disc on a bouncing
parabola, tone bursts at known samples), and its event and AUROC maths against hand-computed cases."""

from __future__ import annotations

import json

import numpy as np
import pytest

from javisdit.eval.sync import (
    async_variants,
    auroc,
    event_scores,
    match_events,
    median_offset_ms,
    pool_matches,
    shift_audio,
    shift_samples,
    swap_audio,
    sync_scores,
)
from javisdit.eval.sync_detect import (
    audio_onsets,
    burst_features,
    classify_bursts,
    colour_presence,
    dominant_ball_colour,
    find_ball,
    impact_material,
    video_impacts,
)

FPS, SR, T, H, W = 24, 16000, 48, 64, 64
RED, BLUE, CRIMSON = (230, 40, 40), (40, 80, 230), (200, 20, 60)
BACKGROUND, FLOOR_RGB = (30, 60, 90), (90, 90, 90)
MATERIALS = {"rubber": (200.0, 0.08), "wood": (600.0, 0.05), "metal": (1200.0, 0.4), "glass": (2500.0, 0.03)}


def bounce(top: float, floor: float = 52.0, g: float = 600.0, e: float = 0.8, n: int = T,
           delay: float = 0.0) -> tuple[np.ndarray, list[float]]:
    """Centre rows (px) of a ball dropped from rest at row ``top`` at time ``delay`` onto the contact row
    ``floor`` (gravity ``g`` px/s², restitution ``e``), sampled at frame times, and its contact times."""
    t0 = delay + np.sqrt(2 * (floor - top) / g)
    contacts, speeds = [t0], [g * (t0 - delay)]
    while contacts[-1] < n / FPS and speeds[-1] > 1.0:  # (a ball at rest makes no more contacts)
        speeds.append(e * speeds[-1])
        contacts.append(contacts[-1] + 2 * speeds[-1] / g)

    def row(t: float) -> float:
        if t < t0:
            return top + 0.5 * g * max(t - delay, 0.0) ** 2
        k = max(i for i, c in enumerate(contacts) if c <= t)
        if k + 1 == len(speeds):
            return floor
        dt = t - contacts[k]
        return floor - speeds[k + 1] * dt + 0.5 * g * dt * dt

    return np.array([row(i / FPS) for i in range(n)]), [c for c in contacts if c < n / FPS]


def draw(frame: np.ndarray, cy: float, cx: float, rgb, radius: float = 5.0) -> None:
    yy, xx = np.mgrid[: frame.shape[0], : frame.shape[1]]
    frame[(yy - cy) ** 2 + (xx - cx) ** 2 <= radius**2] = rgb


def scene(n: int = T, background=BACKGROUND) -> np.ndarray:
    frames = np.empty((n, H, W, 3), np.uint8)
    frames[:] = background
    frames[:, 58:] = FLOOR_RGB
    return frames


def bursts(times: list[float], material: str, rng: np.random.Generator, length: int = T * SR // FPS,
           noise: float = 1e-3) -> np.ndarray:
    """Decaying tones of ``material`` (random phase, falling loudness) starting at the samples nearest
    ``times``, over white noise of RMS ``noise``."""
    pitch, decay = MATERIALS[material]
    wave = noise * rng.standard_normal(length)
    for k, t in enumerate(times):
        start = round(t * SR)
        tt = np.arange(length - start) / SR
        wave[start:] += 0.6 * 0.8**k * np.exp(-tt / decay) * np.sin(2 * np.pi * pitch * tt + rng.uniform(0, 2 * np.pi))
    return wave


@pytest.fixture(scope="module")
def clip():
    """A red ball bouncing across the frame, its contact times and a metal soundtrack at those times."""
    rows, contacts = bounce(top=12.0)
    frames = scene()
    for t, cy in enumerate(rows):
        draw(frames[t], cy, 10 + 0.9 * t, RED)
    return frames, contacts, bursts(contacts, "metal", np.random.default_rng(0))


# -- the ball detector -------------------------------------------------------------------------------


def test_centroid_within_half_a_pixel():
    rng = np.random.default_rng(1)
    for _ in range(10):
        cy, cx = rng.uniform(10, 50, size=2)
        frame = scene(1)[0]
        draw(frame, cy, cx, RED)
        found, y, x, area = find_ball(frame, RED)
        assert found and abs(y - cy) < 0.5 and abs(x - cx) < 0.5
        assert abs(area - np.pi * 25) < 12


def test_two_balls_of_different_colours_are_separated():
    frame = scene(1)[0]
    draw(frame, 20.3, 15.6, RED)
    draw(frame, 40.8, 44.1, BLUE, radius=4)
    red, blue = find_ball(frame, RED), find_ball(frame, BLUE)
    assert red.found and abs(red.cy - 20.3) < 0.5 and abs(red.cx - 15.6) < 0.5
    assert blue.found and abs(blue.cy - 40.8) < 0.5 and abs(blue.cx - 44.1) < 0.5 and blue.area < red.area
    frames = np.stack([frame] * 4)
    assert dominant_ball_colour(frames, {"blue": BLUE, "red": RED}) == "red"  # both always found: the larger


def test_background_of_a_similar_hue_and_large_regions_are_rejected():
    frame = scene(1, background=(150, 50, 50))[0]  # dull red: the ball's hue, 94 RGB units away
    draw(frame, 30.4, 31.7, RED)
    blob = find_ball(frame, RED)
    assert blob.found and abs(blob.cy - 30.4) < 0.5 and abs(blob.cx - 31.7) < 0.5 and blob.area < 100
    same = scene(1, background=(215, 45, 45))[0]  # within the tolerance, but a quarter of the frame or more
    assert not find_ball(same, RED).found
    with pytest.raises(ValueError, match=r"\[H, W, 3\]"):
        find_ball(frame[..., 0], RED)


def test_close_palette_colours_do_not_claim_each_other():
    frame = scene(1)[0]
    draw(frame, 30.0, 30.0, CRIMSON)  # 41 RGB units from RED: inside the tolerance
    assert find_ball(frame, RED).found
    assert not find_ball(frame, RED, others=[CRIMSON]).found
    frames = np.stack([frame] * 3)
    assert dominant_ball_colour(frames, {"red": RED, "crimson": CRIMSON}) == "crimson"
    assert dominant_ball_colour(scene(3), {"red": RED}) is None


def test_colour_presence_counts_frames():
    frames = scene(8)
    for t in range(6):
        draw(frames[t], 20 + t, 30, RED)
    assert colour_presence(frames, RED) == 0.75
    assert colour_presence(frames, BLUE) == 0.0


# -- floor contacts --------------------------------------------------------------------------------------


def test_video_impacts_of_a_rendered_bounce(clip):
    frames, contacts, _ = clip
    found = video_impacts(frames, FPS, RED)
    assert len(found) == len(contacts) == 4
    errors = np.abs(np.array(found) - contacts) * FPS
    assert errors.max() < 0.5  # the brief: half a frame
    assert errors.mean() < 0.1  # what the sub-frame refinement gives on a sampled parabola


def test_contacts_in_the_first_and_last_frame_intervals():
    # dropped before the clip starts: contacts at frames 0.3 (frame 0 is the lowest sample), 14.3, 25.5,
    # 34.5 and 41.7 (frame 42, the last, is the lowest sample)
    n = 43
    rows, contacts = bounce(top=12.0, delay=0.3 / FPS - np.sqrt(2 * 40 / 600), n=n)
    frames = scene(n)
    for t, cy in enumerate(rows):
        draw(frames[t], cy, 30, RED)
    assert rows[0] > rows[1] and rows[-1] > rows[-2]
    found = video_impacts(frames, FPS, RED)
    assert len(found) == len(contacts) == 5
    assert np.abs(np.array(found) - contacts).max() < 0.25 / FPS


def test_a_ball_passing_in_front_adds_no_contact():
    rows, contacts = bounce(top=12.0)
    frames = scene()
    for t in range(T):
        draw(frames[t], rows[t], 32, BLUE)
        draw(frames[t], 30 + 0.3 * t, 2 + 1.3 * t, RED, radius=6)  # hides up to 2/3 of the blue ball
    found = video_impacts(frames, FPS, BLUE)
    assert len(found) == len(contacts) and np.abs(np.array(found) - contacts).max() < 0.5 / FPS


def two_balls() -> tuple[np.ndarray, list[float], list[float]]:
    """A red and a blue ball bouncing side by side, their contacts at least 0.17 s apart."""
    rows_red, red_contacts = bounce(top=12.0)
    rows_blue, blue_contacts = bounce(top=26.0, delay=0.3, e=0.9)
    frames = scene()
    for t in range(T):
        draw(frames[t], rows_red[t], 15, RED)
        draw(frames[t], rows_blue[t], 45, BLUE)
    return frames, red_contacts, blue_contacts


def test_video_impacts_of_two_balls_and_of_no_bounce():
    frames, red_contacts, blue_contacts = two_balls()
    assert np.allclose(video_impacts(frames, FPS, RED), red_contacts, atol=0.25 / FPS)
    assert np.allclose(video_impacts(frames, FPS, BLUE), blue_contacts, atol=0.25 / FPS)
    still = scene()
    for t in range(T):
        draw(still[t], 40.0, 10 + t, RED)
    assert video_impacts(still, FPS, RED) == []
    assert video_impacts(scene(), FPS, RED) == []


# -- audio onsets and materials ------------------------------------------------------------------------


@pytest.mark.parametrize("material", sorted(MATERIALS))
def test_onsets_and_material_of_tone_bursts(material):
    rng = np.random.default_rng(2)
    times = [0.31, 0.74, 1.12, 1.55, 1.83]
    wave = bursts(times, material, rng)  # over a -60 dBFS noise floor
    onsets = audio_onsets(wave, SR)
    assert len(onsets) == len(times)
    assert np.abs(np.array(onsets) - times).max() < 0.005
    pitch, decay = MATERIALS[material]
    features = burst_features(wave, SR, onsets)
    assert np.allclose(features[:, 0], pitch, rtol=0.01)
    assert np.allclose(features[:, 1], decay, rtol=0.15)
    assert impact_material(wave, SR, onsets, MATERIALS) == material


def test_each_burst_classified_and_decay_separates_equal_pitches():
    rng = np.random.default_rng(9)
    times, names = [0.2, 0.6, 1.0, 1.4], ["rubber", "glass", "rubber", "glass"]
    wave = sum(bursts([t], name, rng, noise=0.0) for t, name in zip(times, names)) + 1e-3 * rng.standard_normal(
        T * SR // FPS)
    onsets = audio_onsets(wave, SR)
    assert classify_bursts(burst_features(wave, SR, onsets), MATERIALS) == names
    same_pitch = {"dull": (1200.0, 0.03), "ringing": (1200.0, 0.4)}
    assert classify_bursts(np.array([[1190.0, 0.035], [1210.0, 0.3], [np.nan, 0.1]]), same_pitch) == [
        "dull", "ringing", None]


def test_no_onsets_in_silence_or_noise():
    rng = np.random.default_rng(3)
    assert audio_onsets(np.zeros(SR), SR) == []
    assert audio_onsets(1e-2 * rng.standard_normal(2 * SR), SR) == []
    assert impact_material(np.zeros(SR), SR, [], MATERIALS) is None
    with pytest.raises(ValueError, match="mono"):
        audio_onsets(np.zeros((2, SR)), SR)


# -- clip scores -------------------------------------------------------------------------------------------


@pytest.mark.parametrize("shift", [0, 3, -4])
def test_a_shifted_copy_gives_the_shift_back(clip, shift):
    frames, contacts, wave = clip
    scores = sync_scores(frames, FPS, shift_audio(wave, shift_samples(shift, SR, FPS)), SR, RED)
    assert scores["n_video"] == 4
    assert abs(scores["median_offset_frames"] - shift) < 0.25
    assert scores["median_offset_ms"] == pytest.approx(scores["median_offset_frames"] * 1000 / FPS)
    expected = 1.0 if shift == 0 else 0.0
    assert scores["f1_1f"] == scores["f1_2f"] == expected


def test_scores_of_two_balls_and_of_a_muted_clip():
    frames, red_contacts, blue_contacts = two_balls()
    contacts = sorted(red_contacts + blue_contacts)
    wave = bursts(contacts, "wood", np.random.default_rng(4))
    scores = sync_scores(frames, FPS, wave, SR, [RED, BLUE])
    assert scores["n_video"] == len(contacts) and scores["f1_1f"] == 1.0
    muted = sync_scores(frames, FPS, np.zeros_like(wave), SR, [RED, BLUE])
    assert muted["n_audio"] == 0 and muted["f1_2f"] == 0.0 and muted["median_offset_ms"] is None


def test_event_scores_hand_case():
    # at 24 fps one frame is 41.7 ms: the 30 ms lag is within +-1 frame, the 70 ms one only within +-2
    scores = event_scores([1.0, 2.0], [1.03, 2.07, 3.0], FPS)
    assert (scores["tp_1f"], scores["fp_1f"], scores["fn_1f"]) == (1, 2, 1)
    assert (scores["tp_2f"], scores["fp_2f"], scores["fn_2f"]) == (2, 1, 0)
    assert scores["f1_1f"] == pytest.approx(0.4) and scores["f1_2f"] == pytest.approx(0.8)
    assert np.allclose(scores["offsets_ms"], [30.0, 70.0]) and scores["median_offset_ms"] == pytest.approx(50.0)
    assert scores["median_offset_frames"] == pytest.approx(1.2)
    json.dumps(scores)  # plain Python values, ready for the results file


# -- event matching ----------------------------------------------------------------------------------------


def test_match_events_hand_case():
    m = match_events([1.0, 2.0, 3.0], [1.03, 2.5, 2.98, 4.0], tolerance_s=0.05)
    assert (m["tp"], m["fp"], m["fn"]) == (2, 2, 1)
    assert m["precision"] == 0.5 and m["recall"] == pytest.approx(2 / 3) and m["f1"] == pytest.approx(4 / 7)
    assert m["pairs"] == [(0, 0), (2, 2)] and np.allclose(m["offsets"], [0.03, -0.02])


def test_match_events_is_one_to_one_and_maximal():
    dup = match_events([1.0], [1.01, 1.0], tolerance_s=0.05)
    assert (dup["tp"], dup["fp"], dup["fn"]) == (1, 1, 0) and dup["offsets"] == [0.0]
    # a greedy nearest-first matching pairs 1.1 with 1.06 and leaves 1.0 and 1.16 apart: one pair, not two
    m = match_events([1.0, 1.1], [1.06, 1.16], tolerance_s=0.07)
    assert m["tp"] == 2 and np.allclose(m["offsets"], [0.06, 0.06])
    assert match_events([0.0], [1 / 24], tolerance_s=1 / 24)["tp"] == 1  # the tolerance is inclusive
    with pytest.raises(ValueError, match="tolerance"):
        match_events([1.0], [1.0], -0.1)


def test_empty_sets_have_defined_scores():
    for reference, detected, counts in (([], [], (0, 0, 0)), ([1.0], [], (0, 0, 1)), ([], [1.0, 2.0], (0, 2, 0))):
        m = match_events(reference, detected, 0.05)
        assert (m["tp"], m["fp"], m["fn"]) == counts
        assert m["precision"] == m["recall"] == m["f1"] == 0.0 and m["offsets"] == []


def test_pooled_counts_and_median_offset():
    a = match_events([1.0, 2.0], [1.01, 2.02], 0.05)
    b = match_events([1.0], [1.5, 0.97], 0.05)
    pooled = pool_matches([a, b])
    assert (pooled["tp"], pooled["fp"], pooled["fn"]) == (3, 1, 0)
    assert pooled["f1"] == pytest.approx(2 * 0.75 / 1.75)
    assert median_offset_ms(pooled["offsets"]) == pytest.approx(10.0)
    assert median_offset_ms([]) is None


# -- AUROC -------------------------------------------------------------------------------------------------


def test_auroc_hand_cases():
    assert auroc([2.0, 3.0], [0.0, 1.0]) == 1.0
    assert auroc([0.0, 1.0], [2.0, 3.0]) == 0.0
    assert auroc([1.0, 1.0], [1.0, 1.0, 1.0]) == 0.5
    # 0.9 beats all three (3); 0.5 beats 0.2 and 0.4 and ties 0.5 (2.5); 0.3 beats 0.2 (1): 6.5 of 9
    assert auroc([0.9, 0.5, 0.3], [0.5, 0.2, 0.4]) == pytest.approx(6.5 / 9)


def test_auroc_equals_the_pair_count():
    rng = np.random.default_rng(5)
    pos, neg = rng.integers(0, 5, 13).astype(float), rng.integers(0, 5, 17).astype(float)
    wins = sum((p > n) + 0.5 * (p == n) for p in pos for n in neg)
    assert auroc(pos, neg) == pytest.approx(wins / (13 * 17))
    with pytest.raises(ValueError, match="both classes"):
        auroc([], [1.0])
    with pytest.raises(ValueError, match="finite"):
        auroc([np.nan], [1.0])


# -- the sync/async pair set ---------------------------------------------------------------------------------


def test_async_variants_are_exact():
    wave = np.random.default_rng(6).standard_normal(SR).astype(np.float32)
    variants = async_variants(wave, SR, FPS, np.random.default_rng(7), n_shifts=4)
    names = [v.name for v in variants]
    assert names[0] == "original" and names[-2:] == ["muted", "reversed"]
    assert [v.sync for v in variants] == [1] + [0] * (len(variants) - 1)
    assert all(v.wave.shape == wave.shape and v.wave.dtype == wave.dtype for v in variants)
    assert np.array_equal(variants[0].wave, wave)
    signs = []
    for name, _, shifted in variants[1:-2]:
        frames = int(name[len("shift") : -1])
        assert 2 <= abs(frames) <= 12
        signs.append(np.sign(frames))
        s = shift_samples(frames, SR, FPS)
        if s > 0:
            assert np.array_equal(shifted[s:], wave[:-s]) and not shifted[:s].any()
        else:
            assert np.array_equal(shifted[:s], wave[-s:]) and not shifted[s:].any()
    assert signs == [signs[0], -signs[0]] * 2  # both directions
    assert not variants[-2].wave.any() and np.array_equal(variants[-1].wave, wave[::-1])
    again = async_variants(wave, SR, FPS, np.random.default_rng(7), n_shifts=4)
    assert [v.name for v in again] == names


def test_swap_audio_takes_another_clip():
    waves = [np.full(n, float(i)) for i, n in enumerate([100, 80, 120, 90])]
    swapped = swap_audio(waves, np.random.default_rng(8))
    donors = [j for j, _ in swapped]
    assert sorted(donors) == [0, 1, 2, 3] and all(j != i for i, j in enumerate(donors))
    for i, (j, wave) in enumerate(swapped):
        n = min(len(waves[i]), len(waves[j]))
        assert wave.shape == waves[i].shape and np.all(wave[:n] == j) and not wave[n:].any()
    with pytest.raises(ValueError, match="two clips"):
        swap_audio(waves[:1], np.random.default_rng(0))
