"""The metric maths against independent computations: scipy's sqrtm, brute-force kernel sums, hand counts."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from scipy import linalg

from javisdit.eval.metrics import av_align_score, frechet_distance, kernel_distance, local_maxima


def _sets(seed: int = 0, n: int = 200, d: int = 6):
    rng = np.random.default_rng(seed)
    x = rng.normal(size=(n, d)) @ rng.normal(size=(d, d))
    y = rng.normal(size=(n + 37, d)) @ rng.normal(size=(d, d)) + rng.normal(size=d)
    return x, y


def test_frechet_distance_against_scipy_sqrtm():
    x, y = _sets()
    mu1, mu2 = x.mean(0), y.mean(0)
    s1, s2 = np.cov(x, rowvar=False), np.cov(y, rowvar=False)
    expected = np.sum((mu1 - mu2) ** 2) + np.trace(s1) + np.trace(s2) - 2 * np.trace(linalg.sqrtm(s1 @ s2).real)
    assert frechet_distance(x, y) == pytest.approx(expected, rel=1e-9)


def test_frechet_distance_of_one_dimensional_gaussians():
    # closed form in 1-D: (m1 - m2)^2 + (s1 - s2)^2, with the sample statistics
    rng = np.random.default_rng(1)
    x, y = rng.normal(2.0, 3.0, size=(500, 1)), rng.normal(-1.0, 0.5, size=(400, 1))
    expected = (x.mean() - y.mean()) ** 2 + (x.std(ddof=1) - y.std(ddof=1)) ** 2
    assert frechet_distance(x, y) == pytest.approx(expected, rel=1e-9)


def test_frechet_distance_is_zero_on_one_set_and_rotation_invariant():
    x, y = _sets(2)
    assert abs(frechet_distance(x, x)) < 1e-8
    q, _ = np.linalg.qr(np.random.default_rng(3).normal(size=(6, 6)))
    assert frechet_distance(x @ q, y @ q) == pytest.approx(frechet_distance(x, y), rel=1e-9)
    assert frechet_distance(torch.tensor(x, dtype=torch.float32), y) == pytest.approx(frechet_distance(x, y), rel=1e-5)


def _mmd_brute_force(x, y):
    d = x.shape[1]

    def k(a, b):
        return (a @ b / d + 1.0) ** 3

    m, n = len(x), len(y)
    xx = sum(k(x[i], x[j]) for i in range(m) for j in range(m) if i != j) / (m * (m - 1))
    yy = sum(k(y[i], y[j]) for i in range(n) for j in range(n) if i != j) / (n * (n - 1))
    xy = sum(k(x[i], y[j]) for i in range(m) for j in range(n)) / (m * n)
    return xx + yy - 2 * xy


def test_kernel_distance_against_a_double_loop():
    x, y = _sets(4, n=12, d=3)
    assert kernel_distance(x, y, center_each=False) == pytest.approx(_mmd_brute_force(x, y), rel=1e-9)
    centred = _mmd_brute_force(x - x.mean(0), y - y.mean(0))
    assert kernel_distance(x, y) == pytest.approx(centred, rel=1e-9)


def test_faithful_kernel_distance_ignores_a_mean_shift():
    x, y = _sets(5, n=50, d=4)
    shifted = y + 10.0
    assert kernel_distance(x, shifted) == pytest.approx(kernel_distance(x, y), rel=1e-9)
    assert kernel_distance(x, shifted, center_each=False) > 10 * kernel_distance(x, y, center_each=False)


@pytest.mark.parametrize("bad", [np.zeros((1, 3)), np.zeros((5, 4)), np.zeros(5)])
def test_bad_feature_sets(bad):
    with pytest.raises(ValueError, match=r"features must be \[N, D\]|need two sets"):
        frechet_distance(np.zeros((5, 3)), bad)


def test_local_maxima_are_strict():
    assert local_maxima([0, 2, 1, 1, 3, 3, 1, 0, 5]) == [1]


def test_av_align_as_upstream_codes_it():
    fps = 24.0
    audio = [0.50, 1.00, 1.50, 2.00]
    video = [0.51, 1.05, 1.90, 3.00]  # within 1/24 s: 0.50 (0.01) and 1.00 (0.05 > 0.0417: no)
    matched = 1
    assert av_align_score(audio, video, fps) == pytest.approx(matched / (4 + 4 - matched + 1e-6))
    assert av_align_score([], video, fps) == 0.0
    assert av_align_score(audio, audio, fps) == pytest.approx(4 / (4 + 4 - 4 + 1e-6))


def test_av_align_as_upstream_documents_it():
    fps = 24.0
    audio = [0.50, 1.00, 1.50]
    video = [0.55, 1.20, 2.40, 2.45]  # ±3 frames = 0.125 s: audio 0.50 <-> video 0.55 only
    assert av_align_score(audio, video, fps, symmetric=True) == pytest.approx((1 + 1) / 7)
    assert av_align_score([], [], fps, symmetric=True) == 0.0
    with pytest.raises(ValueError, match="fps must be positive"):
        av_align_score(audio, video, 0)
