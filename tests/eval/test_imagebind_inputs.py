"""ImageBind's input pipeline against the golden values of EVAL_MODELS.md §3.3 (input A of §2.4, video V of
§1.3): audio clip slices, the Kaldi fbank, the in-place centring quirk (faithful) and its corrected form,
JavisScore windows (errata 3) on one shared waveform, the 15 video views and frames as images."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from conftest import spec_audio_a, spec_video_v as video_v
from javisdit.eval.imagebind_inputs import (
    FBANK_FRAMES,
    _mel_banks,
    audio_clip_spans,
    audio_inputs,
    audio_inputs_,
    frame_images,
    javis_windows,
    kaldi_fbank,
    short_side_scale,
    spatial_crops,
    video_clip_indices,
    video_views,
    window_audio_inputs,
    window_audio_inputs_,
)

REL = 1e-5
LOG_ABS = 1e-4  # log (fbank) values, raw or normalised
FLOOR = (math.log(torch.finfo(torch.float32).eps) + 4.268) / 9.138  # -1.277565
PAD = 4.268 / 9.138  # 0.467061


def close(actual, expected, rel: float = REL, abs: float = 0.0) -> None:
    actual = torch.as_tensor(actual, dtype=torch.float64).flatten().tolist()
    assert actual == pytest.approx(list(np.atleast_1d(expected)), rel=rel, abs=abs)


@pytest.fixture(scope="module")
def wave_a() -> torch.Tensor:
    """Input A, [1, 64000]."""
    return torch.from_numpy(spec_audio_a())[None]


@pytest.fixture(scope="module")
def faithful(wave_a):
    buffer = wave_a.clone()
    inputs, means = audio_inputs_(buffer, "faithful")
    return inputs, means, buffer


def test_input_a(wave_a):
    close([wave_a.double().mean(), wave_a.min(), wave_a.max()], [0.1250792, -0.6999398, 0.9499398])
    close(wave_a[0, :4], [0, 0.0938209, 0.185078, 0.271276], abs=1e-7)


# ----------------------------------------------------------------------------------------------- audio


def test_audio_clip_spans_follow_the_pinned_sampler():
    assert audio_clip_spans(64000) == [(0, 32000), (16000, 48000), (32000, 64000)]
    assert audio_clip_spans(65000) == [(0, 32000), (16500, 48500), (33000, 65000)]  # 65 frames @ 16 fps
    assert audio_clip_spans(96000) == [(0, 32000), (32000, 64000), (64000, 96000)]
    assert audio_clip_spans(32000) == audio_clip_spans(24000) == [(0, 32000)] * 3  # sliced short when read


def test_kaldi_fbank(wave_a):
    clip = wave_a[0, :32000] - wave_a[0, :32000].mean()
    fbank = kaldi_fbank(clip)
    assert fbank.shape == (198, 128) and fbank.dtype == torch.float32
    close(fbank[0, :5], [-7.3421, -6.71417, -3.27077, -15.9424, -0.583298], rel=0, abs=LOG_ABS)
    assert fbank.min().item() == pytest.approx(math.log(torch.finfo(torch.float32).eps)) == pytest.approx(-15.942385)
    assert torch.all(fbank[:, 3] == fbank.min())  # mel channel 3 catches no FFT bin
    banks = _mel_banks(128, 512, 16000.0)
    assert banks.shape == (128, 257) and torch.all(banks[:, 256] == 0)
    assert [i for i in range(128) if banks[i].sum() == 0] == [3]
    assert kaldi_fbank(torch.zeros(399)).shape == (0, 128) and kaldi_fbank(torch.zeros(400)).shape == (1, 128)


def test_audio_transform_faithful(wave_a, faithful):
    inputs, means, buffer = faithful
    assert inputs.shape == (3, 1, 128, FBANK_FRAMES)
    close(means, [0.000155236601, 0.12492869, 0.187538758])
    close([inputs.mean(), inputs.std(), inputs.min(), inputs.max()], [-0.7947518, 0.653361, FLOOR, 1.323725])
    close(inputs.double().sum(), -62257.67)
    close(inputs.double().sum(dim=(1, 2, 3)), [-20721.58, -20424.29, -21111.80])
    close(inputs[0, 0, 0, 0:5], [-0.336409, -0.195313, -0.523909, -0.641150, -0.438063], rel=0, abs=LOG_ABS)
    close(inputs[1, 0, 64, 0:5], [0.498457, 0.338816, 0.127230, 0.0490411, -0.0695588], rel=0, abs=LOG_ABS)
    f = FLOOR
    close(inputs[1, 0, 127, 96:103], [f, f, 0.1057, 0.320563, f, f, f], rel=0, abs=LOG_ABS)  # the real step at 2 s
    close(inputs[2, 0, 127, 96:103], [f, f, -0.0462653, 0.168595, f, f, f], rel=0, abs=LOG_ABS)  # the artificial one
    close(inputs[2, 0, 127, 190:198], [-0.694893, -0.712187, -0.717923, -0.642154, -0.665310, -0.639224, -0.596265,
                                       -0.566540], rel=0, abs=LOG_ABS)
    assert PAD == pytest.approx(0.467061, abs=1e-6)
    close(inputs[..., 198:], [PAD] * (3 * 128 * 6))
    # the buffer was shifted in place, clip by clip; the public function leaves the caller's tensor alone
    assert not torch.equal(buffer, wave_a)
    close(buffer[0, [0, 20000, 40000, 60000]] - wave_a[0, [0, 20000, 40000, 60000]],
          [-means[0], -means[0] - means[1], -means[1] - means[2], -means[2]], rel=1e-4)
    before = wave_a.clone()
    assert torch.equal(audio_inputs(wave_a), inputs) and torch.equal(wave_a, before)
    assert torch.equal(audio_inputs(wave_a[0]), inputs)  # a 1-D waveform is one channel


def test_audio_transform_corrected(wave_a, faithful):
    buffer = wave_a.clone()
    inputs, means = audio_inputs_(buffer, "corrected")
    assert torch.equal(buffer, wave_a)  # centred on copies
    close(means, [0.000155236601, 0.125006318, 0.25000307])
    close(inputs.double().sum(dim=(1, 2, 3)), [-20721.58, -20424.32, -21332.75])
    close(inputs[2, 0, 127, 96:103], [FLOOR] * 7, rel=0, abs=LOG_ABS)  # no artificial step at 3 s
    assert torch.equal(inputs[0], faithful[0][0])  # the first clip sees no earlier shift
    assert torch.equal(audio_inputs(wave_a, "corrected"), inputs)
    with pytest.raises(ValueError, match="unknown mode 'clean'; valid: faithful, corrected"):
        audio_inputs(wave_a, "clean")


def test_all_channels_centred_fbank_of_channel_0(wave_a):
    stereo = torch.cat([wave_a, torch.full_like(wave_a, 0.5)])
    _, means = audio_inputs_(stereo.clone(), "corrected")
    close(means, [(m + 0.5) / 2 for m in (0.000155236601, 0.125006318, 0.25000307)])


# ----------------------------------------------------------------------------------------------- JavisScore


def test_javis_windows():
    video, audio = javis_windows(96, 24.0, 64000, 16000)
    assert video == [(0, 48), (12, 60), (24, 72), (36, 84), (48, 96)]
    assert audio == [(s, s + 32000) for s in (0, 8000, 16000, 24000, 32000)]
    # errata 3: stride 50 - 37 = 13 frames at 25 fps (not int(0.5 * 25) = 12); 100 frames, the last clamped
    video, _ = javis_windows(100, 25.0, 64000, 16000)
    assert [s for s, _ in video] == [0, 13, 26, 39, 50] and video[-1] == (50, 100)
    # 65 frames at 16 fps: six video windows, the last [33, 65); 4 s of audio keeps five, covering [0, 64)
    video, audio = javis_windows(65, 16.0, 64000, 16000)
    assert video == [(0, 32), (8, 40), (16, 48), (24, 56), (32, 64)] and len(audio) == 5
    video, audio = javis_windows(65, 16.0, 65000, 16000)  # 4.0625 s of audio has a sixth window too
    assert video[-1] == (33, 65) and audio[-1] == (33000, 65000) and len(video) == len(audio) == 6
    # a clip no longer than one window is one window of the whole clip, in both streams
    assert javis_windows(48, 24.0, 64000, 16000) == ([(0, 48)], [(0, 64000)])
    assert javis_windows(96, 24.0, 30000, 16000) == ([(0, 96)], [(0, 30000)])


def test_window_audio_inputs_shift_one_shared_waveform(wave_a):
    _, windows = javis_windows(96, 24.0, 64000, 16000)
    buffer = wave_a.clone()
    inputs, means = window_audio_inputs_(buffer, windows, "faithful")
    assert inputs.shape == (5, 3, 1, 128, 204)
    close(inputs.mean(), -0.7827014)
    close(inputs.double().sum(), -306568.5)
    close(inputs.mean(dim=(1, 2, 3, 4)), [-0.7935656, -0.7696987, -0.7750860, -0.7809560, -0.7942010])
    close(inputs[1, 0, 0, 0, 0:3], [-0.576240, -0.886092, -0.755124], rel=0, abs=LOG_ABS)
    assert (inputs[:, 1:] - inputs[:, :1]).abs().max() < 2e-3  # the three clips of a 2-s window agree
    assert all(abs(m[1]) < 1e-6 and abs(m[2]) < 1e-6 for m in means)  # already centred by the first
    close(buffer[0, [0, 8000, 63999]], [-0.000155243, -0.0625521, -0.0123438], rel=1e-4)
    close(buffer[0, [0, 8000, 63999]] - wave_a[0, [0, 8000, 63999]], [-0.000155243, -0.0625521, -0.1220869])
    before = wave_a.clone()
    assert torch.equal(window_audio_inputs(wave_a, windows), inputs) and torch.equal(wave_a, before)
    corrected = window_audio_inputs(wave_a, windows, "corrected")
    assert torch.equal(wave_a, before) and torch.equal(corrected[0, 0], inputs[0, 0])  # nothing shifted yet
    assert not torch.allclose(corrected[1:], inputs[1:], atol=1e-3)


# ----------------------------------------------------------------------------------------------- video


def test_video_clip_indices():
    def ranges(frames, fps):
        return [(r[0], r[-1], len(r)) for r in video_clip_indices(frames, fps)]

    assert ranges(96, 24.0) == [(0, 47, 48), (12, 59, 48), (24, 71, 48), (36, 83, 48), (48, 95, 48)]
    assert ranges(65, 16.0) == [(0, 31, 32), (9, 40, 32), (17, 48, 32), (25, 56, 32), (33, 64, 32)]
    assert ranges(100, 25.0) == [(0, 49, 50), (13, 62, 50), (25, 74, 50), (38, 87, 50), (50, 99, 50)]
    assert ranges(30, 24.0) == [(0, 29, 30)] * 5  # shorter than a clip: every clip is the whole video


def test_short_side_scale_and_crops():
    clip = torch.from_numpy(video_v(48)[[0, 47]]).permute(3, 0, 1, 2).float() / 255.0  # [3, 2, 240, 426]
    scaled = short_side_scale(clip)
    assert scaled.shape == (3, 2, 224, 397)
    close(scaled.mean(), 0.5000106)
    close(scaled.double().sum(), 266789.7)
    close(scaled[0, 0, 0, 0:6], [0.00282335, 0.0322796, 0.0617358, 0.0911920, 0.120648, 0.150104])
    crops = spatial_crops(scaled)
    assert [c.shape for c in crops] == [(3, 2, 224, 224)] * 3
    assert [torch.equal(c, scaled[..., x:x + 224]) for c, x in zip(crops, (0, 87, 173))] == [True] * 3
    assert short_side_scale(clip.transpose(2, 3)).shape == (3, 2, 397, 224)


def test_video_views():
    views = video_views(video_v(), 24.0)
    assert views.shape == (15, 3, 2, 224, 224) and views.dtype == torch.float32
    close([views.mean(), views.std(), views.min(), views.max()], [0.187757, 1.012222, -1.785358, 2.139168])
    close(views.double().sum(), 847880.7)
    table = {
        0: (0.1878378, [-1.78175, -1.67210, -1.56244, -1.45279], [0.230241, 0.337052, 0.443865, 0.550677]),
        1: (0.1876554, [0.283723, 0.393377, 0.503031, 0.612684], [-1.26812, -1.23091, -1.18453, -1.07772]),
        2: (0.1878422, [-1.49765, -1.38800, -1.27835, -1.16869], [0.506979, 0.613789, 0.720601, 0.827412]),
        7: (0.1877087, [-0.767364, -0.657710, -0.548056, -0.438403], [1.21834, 1.32515, 1.43196, 1.53877]),
        14: (0.1876816, [0.137372, 0.247025, 0.356678, 0.466332], [2.09963, -0.662823, -1.19705, -1.21553]),
    }
    for view, (mean, first, last) in table.items():
        close(views[view].mean(), mean)
        close(views[view, 0, 0, 0, 0:4], first)
        close(views[view, 2, 1, 223, 220:224], last)
    portrait = video_views(video_v(height=426, width=240), 24.0)
    close(portrait[1, 0, 0, 0, 0:4], [0.98643, 1.09592, 1.20541, 1.31489])


def test_frame_images():
    frames = video_v(2)
    images = frame_images(frames)
    assert images.shape == (2, 3, 224, 224) and images.dtype == torch.float32
    image = images[0]
    close([image.mean(), image.std(), image.min(), image.max()], [0.187599, 1.037522, -1.792263, 2.145897])
    close(image[0, 0, 0:4], [0.178525, 0.295313, 0.397501, 0.514289])
    close(image[2, 223, 220:224], [0.951412, 1.05095, 1.16471, 1.26425])
    assert not torch.equal(images[0], images[1])
