"""AVHScore, JavisScore and the per-category means with embeddings whose answers are known."""

import math

import pytest
import torch

from javisdit.eval import scores

E = 8


def unit(i: int) -> torch.Tensor:
    v = torch.zeros(E)
    v[i] = 1.0
    return v


def test_cosine_matches_definition_and_eps():
    a, b = torch.tensor([[3.0, 4.0]]), torch.tensor([[4.0, 3.0]])
    assert scores.cosine(a, b).item() == pytest.approx(24 / 25)
    assert scores.cosine(torch.zeros(1, 2), b).item() == 0.0  # eps keeps it finite


def test_avh_is_the_mean_frame_cosine():
    audio = unit(0)
    frames = torch.stack([unit(0), unit(0), unit(1), (unit(0) + unit(1)) / math.sqrt(2)])
    assert scores.avh_score(frames, audio) == pytest.approx((1 + 1 + 0 + 1 / math.sqrt(2)) / 4)


def test_bottom_mean_takes_floor_of_forty_percent():
    values = torch.arange(48, dtype=torch.float32)  # 24 fps, 2 s window: k = 19
    assert scores.bottom_mean(values) == pytest.approx(sum(range(19)) / 19)
    assert scores.bottom_mean(torch.tensor([5.0, 1.0])) == pytest.approx(3.0)  # k = 0: mean of all


def test_javis_score_one_bad_frame_per_window():
    # 96 frames, windows of 48 frames every 12; all frames match their window's audio except one per window
    windows = [(0, 48), (12, 60), (24, 72), (36, 84), (48, 96)]
    frames = torch.stack([unit(0)] * 96)
    bad = [5, 30, 50, 70, 90]  # one mismatching frame inside each window (some in several)
    for i in bad:
        frames[i] = unit(1)
    audio = torch.stack([unit(0)] * 5)
    expected = []
    for start, end in windows:
        values = sorted(0.0 if i in bad else 1.0 for i in range(start, end))
        expected.append(sum(values[:19]) / 19)
    assert scores.javis_score(frames, audio, windows) == pytest.approx(sum(expected) / 5)
    # window 0 holds the bad frames 5 and 30: (0 + 0 + 17 * 1) / 19
    assert expected[0] == pytest.approx(17 / 19)


def test_javis_score_identical_and_orthogonal():
    windows = [(0, 10), (5, 15)]
    frames = torch.stack([unit(2)] * 15)
    assert scores.javis_score(frames, torch.stack([unit(2), unit(2)]), windows) == pytest.approx(1.0)
    assert scores.javis_score(frames, torch.stack([unit(3), unit(3)]), windows) == pytest.approx(0.0)
    with pytest.raises(ValueError, match="2 video windows for 1 audio windows"):
        scores.javis_score(frames, unit(2)[None], windows)


def test_category_means_and_subsets():
    values = [1.0, 2.0, 4.0]
    cats = [[[0], [1], [0, 2], [0], [0]], [[0, 1], [1], [2], [1], [0]], [[4], [0], [2], [2], [2]]]
    out = scores.category_means(values, cats)
    assert out["0"] == [1.5, 2.0, None, None, 4.0]
    assert out["1"] == [4.0, 1.5, None]
    assert out["2"] == [1.0, None, pytest.approx(7 / 3), None, None]
    subsets = scores.category_subsets(cats)
    assert subsets[(0, 0)] == [0, 1] and subsets[(2, 2)] == [0, 1, 2] and subsets[(3, 1)] == [1]
    assert len(subsets) == 5 + 3 + 5 + 3 + 3
