"""The maths of JavisBench's set and synchronisation metrics, as the upstream evaluator computes them.

* Fréchet distance (FVD on I3D logits, FAD on AudioCLIP embeddings): means, unbiased covariances, and
  the trace term ``tr(sqrt(sqrt(S1) S2 sqrt(S1)))`` with SVD square roots whose singular values below
  1e-10 stay un-rooted (the TF-GAN port upstream uses).
* Kernel distance (KVD): unbiased MMD² with the polynomial kernel ``(x·y / d + 1)³``. Upstream computes
  it after the Fréchet distance has centred both sets in place, so its KVD ignores the difference of the
  means: ``center_each=True`` (faithful) reproduces that, ``False`` is the textbook MMD².
* AV-Align from detected peaks: upstream's one-sided ratio (an audio peak matches a video peak strictly
  within one frame; ``matched / (|A| + |V| − matched + 1e-6)``) or the symmetric form its README states
  (each peak of either side matched within ±τ frames, over ``|A| + |V|``).

Features are ``[N, D]`` tensors or arrays; everything is computed in float64.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import torch

SQRT_EPS = 1e-10  # singular values below this are not rooted (TF-GAN's symmetric square root)


def _float64(x) -> torch.Tensor:
    x = torch.as_tensor(np.asarray(x) if not isinstance(x, torch.Tensor) else x).detach().to(torch.float64)
    if x.dim() != 2:
        raise ValueError(f"features must be [N, D], got shape {list(x.shape)}")
    return x


def _sqrtm_psd(matrix: torch.Tensor) -> torch.Tensor:
    u, s, vh = torch.linalg.svd(matrix)
    s = torch.where(s < SQRT_EPS, s, s.sqrt())
    return (u * s) @ vh


def _covariance(x: torch.Tensor) -> torch.Tensor:
    centred = x - x.mean(dim=0)
    return centred.T @ centred / (x.shape[0] - 1)


def frechet_distance(x, y) -> float:
    """Fréchet distance between the Gaussians fitted to two feature sets ``[N1, D]`` and ``[N2, D]``.

    Raises:
        ValueError: sets that are not 2-D, differ in width, or hold fewer than 2 rows.
    """
    x, y = _float64(x), _float64(y)
    if x.shape[1] != y.shape[1] or min(x.shape[0], y.shape[0]) < 2:
        raise ValueError(f"need two sets of >= 2 features of one width, got {list(x.shape)} and {list(y.shape)}")
    s1, s2 = _covariance(x), _covariance(y)
    root1 = _sqrtm_psd(s1)
    trace = torch.trace(_sqrtm_psd(root1 @ s2 @ root1))
    diff = x.mean(dim=0) - y.mean(dim=0)
    return float(diff @ diff + torch.trace(s1) + torch.trace(s2) - 2 * trace)


def polynomial_kernel(a: torch.Tensor, b: torch.Tensor, degree: int = 3, coef0: float = 1.0) -> torch.Tensor:
    """``(a·bᵀ / D + coef0) ** degree`` (scikit-learn's defaults: gamma = 1 / D)."""
    return (a @ b.T / a.shape[1] + coef0) ** degree


def kernel_distance(x, y, center_each: bool = True) -> float:
    """Unbiased MMD² of two feature sets with the cubic polynomial kernel (KVD on I3D logits).

    Args:
        center_each: subtract each set's own mean first, as upstream does (faithful): the result then
            ignores a difference of the means. False: the plain MMD².
    """
    x, y = _float64(x), _float64(y)
    m, n = x.shape[0], y.shape[0]
    if x.shape[1] != y.shape[1] or min(m, n) < 2:
        raise ValueError(f"need two sets of >= 2 features of one width, got {list(x.shape)} and {list(y.shape)}")
    if center_each:
        x, y = x - x.mean(dim=0), y - y.mean(dim=0)
    kxx, kyy, kxy = polynomial_kernel(x, x), polynomial_kernel(y, y), polynomial_kernel(x, y)
    within_x = (kxx.sum() - kxx.diagonal().sum()) / (m * (m - 1))
    within_y = (kyy.sum() - kyy.diagonal().sum()) / (n * (n - 1))
    return float(within_x + within_y - 2 * kxy.sum() / (m * n))


def local_maxima(values: Sequence[float]) -> list[int]:
    """Indices ``i`` with ``values[i-1] < values[i] > values[i+1]`` (strict; the ends never count)."""
    v = list(values)
    return [i for i in range(1, len(v) - 1) if v[i - 1] < v[i] > v[i + 1]]


def av_align_score(audio_peaks: Sequence[float], video_peaks: Sequence[float], fps: float,
                   symmetric: bool = False, tolerance_frames: float = 3.0) -> float:
    """AV-Align of peak times in seconds.

    Args:
        symmetric: False (upstream's code, faithful): an audio peak matches when some video peak lies
            strictly within ``1 / fps`` of it, each audio peak counted once, and the score is
            ``matched / (|A| + |V| − matched + 1e-6)``. True (upstream's README): every audio peak with a
            video peak within ``tolerance_frames / fps`` (inclusive) and every video peak with such an
            audio peak count, over ``|A| + |V|`` (0 when there are no peaks).
    """
    if fps <= 0:
        raise ValueError(f"fps must be positive, got {fps}")
    audio, video = np.asarray(audio_peaks, dtype=np.float64), np.asarray(video_peaks, dtype=np.float64)
    if not symmetric:
        matched = sum(1 for a in audio if video.size and np.any(np.abs(video - a) < 1.0 / fps))
        return matched / (audio.size + video.size - matched + 1e-6)
    if audio.size + video.size == 0:
        return 0.0
    tolerance = tolerance_frames / fps
    hits_a = sum(1 for a in audio if video.size and np.any(np.abs(video - a) <= tolerance))
    hits_v = sum(1 for v in video if audio.size and np.any(np.abs(audio - v) <= tolerance))
    return (hits_a + hits_v) / (audio.size + video.size)
