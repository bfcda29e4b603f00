"""The synchronisation picture of one clip: its bands, the ball's track and the ticks at the events."""

import numpy as np
import pytest

from javisdit.datasets import bouncing
from javisdit.eval.sync_figure import BACKGROUND, GAP, WHITE, sync_figure
from javisdit.inference.media import write_mp4

SECONDS, FPS, SR = 2.0, 24, 16000


@pytest.fixture(scope="module")
def clip():
    for i in range(100):  # the first clip whose first impact leaves some silence before it
        attributes = bouncing.sample_attributes(np.random.default_rng([0, i]), SECONDS)
        if min(t for times in bouncing.ball_impacts(attributes, SECONDS) for t in times) > 0.2:
            break
    frames = bouncing.render_frames(attributes, SECONDS, FPS)
    impacts = bouncing.ball_impacts(attributes, SECONDS)
    wave = bouncing.render_audio(impacts, attributes["materials"], SECONDS, SR)
    return attributes, frames, wave, sorted(t for times in impacts for t in times)


def _ticks(row: np.ndarray) -> list[int]:
    """Columns where a row of the figure is white, runs of neighbours merged to their first column."""
    columns = np.flatnonzero((row == WHITE).all(-1))
    return [int(c) for k, c in enumerate(columns) if k == 0 or c > columns[k - 1] + 1]


def test_bands_and_ticks_at_the_true_impacts(clip):
    attributes, frames, wave, impacts = clip
    rgbs = [bouncing.COLOURS[c] for c in attributes["colours"]]
    figure = sync_figure(frames, FPS, wave, SR, rgbs, num_frames=4, scale=2)
    width = 4 * 64 * 2 + 3 * GAP
    assert figure.dtype == np.uint8 and figure.shape == (128 + GAP + 96 + GAP + 96, width, 3)
    # the strip: frame 0 scaled by 2 in the first tile, the background between tiles
    assert np.array_equal(figure[:128:2, :128:2], frames[0]) and (figure[:128, 128:128 + GAP] == BACKGROUND).all()
    height = figure[128 + GAP : 128 + GAP + 96]
    for rgb in rgbs:  # every ball's track is drawn across the whole clip
        assert (height == rgb).all(-1).any(0).mean() > 0.95
    expected = [round(t / SECONDS * (width - 1)) for t in impacts]
    sound = figure[-96:]
    for ticks in (_ticks(sound[0]), _ticks(height[-1])):  # audio onsets above the sound, bounces below the track
        assert len(ticks) == len(expected), (ticks, expected)
        assert np.abs(np.array(ticks) - expected).max() <= 0.03 * width  # within 1.5 frames
    # the envelope: silent before the first impact, loud right after it
    first = expected[0]
    assert (sound[40, : first - 5] == BACKGROUND).all() and (sound[20, first + 2 : first + 6] != BACKGROUND).all()


def test_bad_frames_are_refused(clip):
    _, frames, wave, _ = clip
    with pytest.raises(ValueError, match="frames"):
        sync_figure(frames[:1], FPS, wave, SR, [bouncing.COLOURS["red"]])
    with pytest.raises(ValueError, match="num_frames"):
        sync_figure(frames, FPS, wave, SR, [bouncing.COLOURS["red"]], num_frames=0)


def test_script_writes_the_png(clip, tmp_path, run_script):
    attributes, frames, wave, _ = clip
    write_mp4(tmp_path / "clip.mp4", frames, FPS, wave, SR)
    result = run_script("eval/sync_figure.py", str(tmp_path / "clip.mp4"), "--colour", *attributes["colours"],
                        "--output-file", str(tmp_path / "fig.png"), "--num-frames", "3")
    assert result.returncode == 0, result.stderr
    from PIL import Image

    assert Image.open(tmp_path / "fig.png").size == (3 * 128 + 2 * GAP, 128 + GAP + 96 + GAP + 96)
    result = run_script("eval/sync_figure.py", str(tmp_path / "missing.mp4"), "--colour", "red",
                        "--output-file", str(tmp_path / "x.png"))
    assert result.returncode == 2 and result.stderr.strip().count("\n") == 0 and "no such file" in result.stderr
    assert not (tmp_path / "x.png").exists()
    write_mp4(tmp_path / "still.mp4", frames[:1], FPS, wave[: SR // FPS], SR)
    result = run_script("eval/sync_figure.py", str(tmp_path / "still.mp4"), "--colour", "red",
                        "--output-file", str(tmp_path / "x.png"))
    assert result.returncode == 2 and "1 frame; the picture needs at least 2" in result.stderr
    assert "Traceback" not in result.stderr and not (tmp_path / "x.png").exists()
