"""The JavisDiT-mini data: physics, pixels and sound against the ground truth, captions, the held-out split,
reproducibility, and the CSVs through the training dataset and the script."""

import math
import runpy
import sys

import numpy as np
import pandas as pd
import pytest
import soundfile
import torch

from javisdit.datasets import bouncing
from javisdit.datasets.bouncing import (
    BACKGROUNDS,
    COLOURS,
    HELDOUT_PAIRS,
    MATERIALS,
    ball_height,
    ball_impacts,
    caption,
    floor_row,
    impact_times,
    make_mini_dataset,
    parse_impacts,
    render_audio,
    render_frames,
    sample_attributes,
)
from javisdit.errors import ConfigError
from javisdit.registry import DATASETS, build_module

SR = 16000


@pytest.fixture(scope="module")
def four_clips(tmp_path_factory):
    return make_mini_dataset(tmp_path_factory.mktemp("mini"), num_clips=4, seed=0)


def _simulate(h, g, e, seconds, release_time=0.0, dt=1e-5):
    """Semi-implicit Euler with a reflecting floor: impact times (linearly interpolated) and the height
    every 1000 steps."""
    z, v, t, impacts, samples = h, 0.0, release_time, [], []
    for step in range(int((seconds - release_time) / dt) + 1):
        if step % 1000 == 0:
            samples.append((t, z))
        v_new = v - g * dt
        z_new = z + v_new * dt
        if z_new < 0:
            fraction = z / (z - z_new)
            impacts.append(t + fraction * dt)
            v_new, z_new = -e * (v + (v_new - v) * fraction), -e * z_new
        z, v, t = z_new, v_new, t + dt
    return np.array([i for i in impacts if 0 <= i < seconds]), np.array(samples)


def test_impacts_follow_the_closed_form():
    h, g, e = 0.6, 9.81, 0.8
    times = impact_times(h, g, e, seconds=3.0)
    fall = math.sqrt(2 * h / g)
    assert times[0] == pytest.approx(fall, abs=1e-12)
    np.testing.assert_allclose(np.diff(times), [2 * e ** (k + 1) * fall for k in range(len(times) - 1)], atol=1e-12)
    assert len(impact_times(h, g, 1.0, seconds=2.0)) == 3  # 0.35, 1.05, 1.75: one period 2 sqrt(2h/g) apart


@pytest.mark.parametrize("h, g, e, release", [(0.6, 9.81, 0.8, 0.0), (0.3, 14.0, 1.0, -0.4), (0.5, 20.0, 0.9, -0.1)])
def test_impacts_and_heights_match_a_simulation(h, g, e, release):
    simulated, samples = _simulate(h, g, e, 2.0, release)
    times = impact_times(h, g, e, seconds=2.0, release_time=release)
    assert len(times) == len(simulated) >= 2
    np.testing.assert_allclose(times, simulated, atol=1e-3)
    np.testing.assert_allclose(ball_height(samples[:, 0], h, g, e, release), samples[:, 1], atol=1e-3)


def test_restitution_below_one_comes_to_rest():
    times = impact_times(0.5, 10.0, 0.5, seconds=10.0)  # the bounces converge at 3 sqrt(2h/g) ~ 0.95 s
    assert times.max() < 0.95 and ball_height(np.array([5.0]), 0.5, 10.0, 0.5)[0] == 0


def _ball_bottom_rows(frames, colour, background):
    """The lowest pixel row of each frame that is more ball than background (-1: none)."""
    colour, background = np.array(colour, float), np.array(background, float)
    cover = (frames.astype(float) - background) @ (colour - background) / np.sum((colour - background) ** 2)
    rows = np.where((cover > 0.5).any(axis=2), np.arange(frames.shape[1])[None, :], -1)
    return rows.max(axis=1)


def test_ball_touches_the_floor_exactly_at_the_impact_frames():
    # impacts at 0.25, 0.75, 1.25, 1.75 s: frames 6, 18, 30, 42 at 24 fps
    ball = dict(radius=0.1, drop_height=0.5, gravity=2 * 0.5 / 0.25**2, restitution=1.0, release_time=0.0, x0=0.3,
                vx=0.2)
    attributes = dict(count=1, colours=["red"], materials=["rubber"], background="black", balls=[ball])
    assert np.allclose(ball_impacts(attributes, 2.0)[0], [0.25, 0.75, 1.25, 1.75])
    frames = render_frames(attributes, 2.0, 24, 64, 64)
    assert frames.shape == (48, 64, 64, 3) and frames.dtype == np.uint8
    bottom = _ball_bottom_rows(frames, COLOURS["red"], BACKGROUNDS["black"])
    touching = [k for k in range(48) if bottom[k] == floor_row(64) - 1]
    assert touching == [6, 18, 30, 42]
    assert bottom.max() == floor_row(64) - 1 and bottom.min() >= 0  # never into the floor, always in view


@pytest.mark.parametrize("index", range(4))
def test_rendered_ball_follows_the_physics(index):
    attributes = sample_attributes(np.random.default_rng([7, index]))
    attributes["count"], attributes["colours"], attributes["balls"] = 1, ["white"], attributes["balls"][:1]
    attributes["background"] = "black"
    frames = render_frames(attributes, 2.0, 24, 64, 64)
    bottom = _ball_bottom_rows(frames, COLOURS["white"], BACKGROUNDS["black"])
    ball, times = attributes["balls"][0], np.arange(48) / 24
    z = ball_height(times, ball["drop_height"], ball["gravity"], ball["restitution"], ball["release_time"])
    expected = floor_row(64) - z * 64 - 1  # the row holding the ball's lowest point
    assert np.abs(bottom - expected).max() <= 1
    for t in ball_impacts(attributes, 2.0)[0]:  # the frame nearest an impact shows the ball lowest
        k = int(round(t * 24))
        if 0 < k < 47:
            assert bottom[k] >= max(bottom[k - 1], bottom[k + 1]), (t, bottom[k - 1 : k + 2])


@pytest.mark.parametrize("material", ["rubber", "glass"])
def test_each_tone_starts_at_its_impact_sample(material):
    impacts = [np.array([0.1234567, 0.6, 1.3333333, 1.9999])]
    wave = render_audio(impacts, [material], 2.0)
    assert wave.shape == (32000,) and wave.dtype == np.float32
    for t in impacts[0]:
        start = math.ceil(t * SR)
        window = np.abs(wave[start - 100 : start + 100]) > 0.05
        assert start - 100 + int(np.argmax(window)) in (start, start + 1), t


def test_metal_rings_on_and_two_balls_add_up():
    first, second = [np.array([0.5])], [np.array([0.7])]
    wave = render_audio(first + second, ["metal", "glass"], 2.0)
    start = math.ceil(0.5 * SR)
    assert np.abs(wave[:start]).max() == 0 and abs(wave[start]) > 0.4
    assert np.abs(wave[start + int(0.6 * SR):][:800]).max() > 0.04  # a metal ring still sounds 0.6 s on
    np.testing.assert_allclose(wave, render_audio(first, ["metal"], 2.0) + render_audio(second, ["glass"], 2.0),
                               atol=1e-6)


@pytest.mark.parametrize("material", list(MATERIALS))
def test_pitch_of_each_material(material):
    wave = render_audio([np.array([0.1])], [material], 2.0)
    spectrum = np.abs(np.fft.rfft(wave, n=1 << 16))
    peak = np.fft.rfftfreq(1 << 16, 1 / SR)[spectrum.argmax()]
    assert peak == pytest.approx(MATERIALS[material][0], rel=0.03)


def test_captions_name_colour_material_and_count():
    rng = np.random.default_rng(3)
    counts = set()
    for _ in range(300):
        attributes = sample_attributes(rng)
        text, audio_text = caption(attributes)
        words = text.replace(",", "").split()
        counts.add(attributes["count"])
        assert sorted(w for w in words if w in COLOURS) == sorted(attributes["colours"]), text
        assert sorted(w for w in words if w in MATERIALS) == sorted(attributes["materials"]), text
        if attributes["count"] == 1:
            assert words.count("ball") == 1 and "two" not in words and "balls" not in words, text
        else:
            assert "two" in words or words.count("ball") == 2, text
        assert attributes["size"] in words and attributes["background"] in text
        assert ("quickly" in words) == (attributes["speed"] == "fast") != ("slowly" in words)
        assert not any(c in audio_text.split() for c in COLOURS)  # the sound's caption: materials only
        assert set(attributes["materials"]) <= set(audio_text.split())
    assert counts == {1, 2}


def test_the_heldout_draw_is_exclusive():
    rng = np.random.default_rng(5)
    for heldout in (True, False):
        for _ in range(100):
            a = sample_attributes(rng, heldout=heldout)
            assert any(pair in HELDOUT_PAIRS for pair in zip(a["colours"], a["materials"])) == heldout


def test_impacts_stay_apart_and_two_balls_alternate():
    rng = np.random.default_rng(11)
    for _ in range(200):
        impacts = ball_impacts(sample_attributes(rng), 2.0)
        merged = np.concatenate(impacts)
        order = np.argsort(merged)
        assert len(merged) >= 2 and np.diff(merged[order]).min() >= bouncing.MIN_GAP_S
        ball = np.repeat(np.arange(len(impacts)), [len(t) for t in impacts])[order]
        assert len(impacts) == 1 or (ball[1:] != ball[:-1]).all()


def test_written_sound_and_csv_agree(four_clips):
    root = four_clips["stage3_jav"].parent
    table = pd.read_csv(four_clips["stage3_jav"], keep_default_na=False)
    assert len(table) == 4 and (root / "videos" / "clip_00003.mp4").is_file()
    for row in table.itertuples():
        by_ball = parse_impacts(row.impacts_by_ball)
        assert len(by_ball) == row.count == len(row.colours.split()) == len(row.materials.split())
        np.testing.assert_array_equal(np.sort(np.concatenate(by_ball)), parse_impacts(row.impacts)[0])
        wave, rate = soundfile.read(root / row.audio_path, dtype="float32")
        assert rate == SR and len(wave) == row.num_frames * SR // row.fps
        # the CSV's times are rounded to 1 us: a phase error of at most 2 pi 2500 Hz 0.5 us
        np.testing.assert_allclose(wave, render_audio(by_ball, row.materials.split(), 2.0), atol=5e-3)


def test_same_seed_same_bytes_other_seed_other_clips(four_clips, tmp_path):
    again = make_mini_dataset(tmp_path / "again", num_clips=4, seed=0)
    root, other_root = four_clips["stage3_jav"].parent, tmp_path / "again"
    for name, path in four_clips.items():
        assert again[name].read_bytes() == path.read_bytes(), name
    for name in ("videos/clip_00002.mp4", "audios/clip_00002.wav", "audios/clip_00002_unpaired.wav"):
        assert (other_root / name).read_bytes() == (root / name).read_bytes(), name
    other = make_mini_dataset(tmp_path / "other", num_clips=2, seed=1)
    first = pd.read_csv(other["stage3_jav"])
    assert not first["impacts"].equals(pd.read_csv(four_clips["stage3_jav"])["impacts"][:2])


def _dataset(path, **kwargs):
    return build_module(dict(type="VariableVideoAudioTextDataset", data_path=str(path), **kwargs), DATASETS)


def test_csvs_load_through_the_training_dataset(four_clips):
    stage3 = _dataset(four_clips["stage3_jav"])
    assert stage3.clip_sizes() == [(48, 64, 64)] * 4
    sample = stage3[(1, 48, 64, 64, 3)]
    assert sample["video"].shape == (3, 48, 64, 64) and sample["audio"].shape == (1, 224, 64)
    row = pd.read_csv(four_clips["stage3_jav"]).iloc[1]
    assert sample["text"] == row["text"] and sample["audio_text"] == row["audio_text"]
    colour = np.array(COLOURS[row["colours"].split()[0]]) / 127.5 - 1
    distance = (sample["video"] - torch.tensor(colour, dtype=torch.float32)[:, None, None, None]).norm(dim=0)
    assert bool((distance.flatten(1).min(dim=1).values < 0.3).all())  # the first ball is in every frame
    audio = _dataset(four_clips["stage1_audio"], audio_only=True)[(0, 48, 64, 64, 1)]
    assert audio["audio"].shape == (1, 224, 64)
    assert audio["text"] == pd.read_csv(four_clips["stage1_audio"])["audio_text"][0]
    prior = pd.read_csv(four_clips["stage2_prior"])
    assert all((four_clips["stage2_prior"].parent / p).is_file() for p in prior["unpaired_audio_path"])
    for name in ("video_text", "vae"):
        assert four_clips[name].read_bytes() == four_clips["stage3_jav"].read_bytes()


def test_bad_settings_are_one_line_errors(tmp_path):
    for kwargs, message in ((dict(height=60), "multiples of 8"), (dict(num_clips=0), "--num-clips"),
                            (dict(fps=0), "--fps"), (dict(workers=0), "--workers")):
        with pytest.raises(ConfigError, match=message):
            make_mini_dataset(tmp_path, **{"num_clips": 1, **kwargs})
    with pytest.raises(ConfigError, match="--unseen must be at least 1, got -2"):
        bouncing.make_unseen_clips(tmp_path, 10, -2)
    assert not (tmp_path / "videos").exists()


def test_script_writes_n_clips_with_a_heldout_split(run_script, four_clips, tmp_path):
    result = run_script("data/make_mini_data.py", str(tmp_path), "--num-clips", "10", "--workers", "2",
                        "--unseen", "10")
    assert result.returncode == 0, result.stderr
    assert len(list((tmp_path / "videos").glob("*.mp4"))) == 20
    train = pd.read_csv(tmp_path / "stage3_jav.csv", keep_default_na=False)
    heldout = pd.read_csv(tmp_path / "heldout.csv", keep_default_na=False)
    assert list(heldout["id"]) == ["clip_00009"] and len(train) == 9

    def pairs(table):
        return {p for c, m in zip(table["colours"], table["materials"]) for p in zip(c.split(), m.split())}

    assert pairs(heldout) & HELDOUT_PAIRS
    # the unseen test clips come after the data set, all of seen pairs (clip 19 too, a held-out slot)
    unseen = pd.read_csv(tmp_path / "unseen.csv", keep_default_na=False)
    assert list(unseen["id"]) == [f"clip_{i:05d}" for i in range(10, 20)] and "unseen:" in result.stdout
    assert not pairs(unseen) & HELDOUT_PAIRS and list(unseen.columns) == list(heldout.columns)
    for name in bouncing.TRAINING_CSVS:
        assert not pairs(pd.read_csv(tmp_path / f"{name}.csv", keep_default_na=False)) & HELDOUT_PAIRS, name
    # clip i depends on (seed, i) only: two workers write the first four clips as one worker did
    pd.testing.assert_frame_equal(train.iloc[:4], pd.read_csv(four_clips["stage3_jav"], keep_default_na=False))
    root = four_clips["stage3_jav"].parent
    assert (tmp_path / "videos/clip_00003.mp4").read_bytes() == (root / "videos/clip_00003.mp4").read_bytes()


def test_script_reports_a_bad_size_in_one_line(repo, tmp_path, monkeypatch, capsys):
    monkeypatch.setattr(sys, "argv", ["make_mini_data.py", str(tmp_path), "--size", "64", "60"])
    with pytest.raises(SystemExit) as exit_code:
        runpy.run_path(str(repo / "scripts" / "data" / "make_mini_data.py"), run_name="__main__")
    assert exit_code.value.code == 2 and capsys.readouterr().err.strip().splitlines() == [
        "error: --size 64 60: height and width must be multiples of 8 (the video VAE's stride) and at least 32"]
    assert not (tmp_path / "videos").exists()
