"""Stage-3 mask generator: validation, each strategy's masks, draw frequencies and per-sample determinism."""

from __future__ import annotations

import random

import pytest
import torch

from javisdit.errors import ConfigError
from javisdit.training.masks import VALID_STRATEGIES, VAMaskGenerator

# configs/javisdit-v0-1 stage 3; the dict order decides the cumulative draw
V01_RATIOS = {
    "random": 0.01, "video_to_audio": 0.05, "audio_to_video": 0.05, "sound_image_animate": 0.03,
    "intepolate": 0.03, "quarter_random": 0.005, "quarter_head": 0.05, "quarter_tail": 0.005,
    "quarter_head_tail": 0.005, "image_random": 0.005, "image_head": 0.05, "image_tail": 0.005,
    "image_head_tail": 0.005,
}
TV, TA = 15, 64
SEEDS = range(60)


def _gen(seed: int) -> torch.Generator:
    return torch.Generator().manual_seed(seed)


def _masks(name: str, seed: int = 0, tv: int = TV, ta: int = TA):
    return VAMaskGenerator({name: 1.0}).sample_masks(tv, ta, _gen(seed))


def _cond(mask: torch.Tensor) -> list[int]:
    """Indices of the conditioned (False) frames."""
    return (~mask).nonzero().flatten().tolist()


def _nearest(video: torch.Tensor, ta: int) -> torch.Tensor:
    """Nearest-neighbour resize in exact integer arithmetic (no ties at Tv=15, Ta=64)."""
    return video[[i * len(video) // ta for i in range(ta)]]


# --- validation ---------------------------------------------------------------------------------------


def test_identity_filled_in_and_last():
    ratios = VAMaskGenerator(V01_RATIOS).ratios
    assert list(ratios) == [*V01_RATIOS, "identity"]
    assert ratios["identity"] == pytest.approx(0.70, abs=1e-9)
    explicit = VAMaskGenerator({"identity": 0.5, "random": 0.5}).ratios
    assert list(explicit) == ["random", "identity"]


def test_pinned_strategy_leaves_identity_zero():
    assert VAMaskGenerator({"quarter_head": 1.0}).ratios == {"quarter_head": 1.0, "identity": 0.0}


def test_unknown_name_lists_valid_ones():
    with pytest.raises(ConfigError, match="unknown mask strategy 'interpolate'") as info:
        VAMaskGenerator({"interpolate": 0.1})
    for name in VALID_STRATEGIES:
        assert name in str(info.value)


@pytest.mark.parametrize(
    "ratios", [{"random": -0.1}, {"random": 1.5, "identity": -0.5}, {"random": 0.6, "image_head": 0.6}]
)
def test_ratio_out_of_range(ratios):
    with pytest.raises(ConfigError, match=r"must be in \[0, 1\]"):
        VAMaskGenerator(ratios)


def test_bad_sum():
    with pytest.raises(ConfigError, match="must sum to 1"):
        VAMaskGenerator({"random": 0.5, "identity": 0.4})


def test_non_numeric_ratio():
    with pytest.raises(ConfigError, match="not a number"):
        VAMaskGenerator({"random": "lots"})


# --- each strategy ------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("name", "video_cond", "audio_cond"),
    [
        ("identity", [], []),
        ("quarter_random", [8], [35, 36, 37, 38]),
        ("quarter_head", [0], [0, 1, 2, 3, 4]),
        ("quarter_tail", [14], [60, 61, 62, 63]),
        ("quarter_head_tail", [0, 14], [0, 1, 2, 3, 4, 60, 61, 62, 63]),
        ("image_random", [9], []),
        ("image_head", [0], []),
        ("image_tail", [14], []),
        ("image_head_tail", [0, 14], []),
        ("intepolate", [1, 3, 5, 7, 9, 11, 13], [5, 6, 7, 8, 13, 14, 15, 16, 17, 22, 23, 24, 25, 30, 31, 32,
                                                 33, 34, 39, 40, 41, 42, 47, 48, 49, 50, 51, 56, 57, 58, 59]),
        ("video_to_audio", list(range(TV)), []),
        ("audio_to_video", [], list(range(TA))),
        ("sound_image_animate", [0], list(range(TA))),
    ],
)
def test_golden_masks_seed0(name, video_cond, audio_cond):
    video, audio, picked = _masks(name)
    assert picked == name
    assert video.shape == (TV,) and video.dtype == torch.bool
    assert audio.shape == (TA,) and audio.dtype == torch.bool
    assert _cond(video) == video_cond
    assert _cond(audio) == audio_cond


@pytest.mark.parametrize("name", ["quarter_random", "quarter_head", "quarter_tail", "quarter_head_tail"])
def test_quarter_structure(name):
    sizes = set()
    for seed in SEEDS:
        video, audio, _ = _masks(name, seed)
        cond = _cond(video)
        n = len(cond) // 2 if name == "quarter_head_tail" else len(cond)
        sizes.add(n)
        if name == "quarter_head":
            assert cond == list(range(n))
        elif name == "quarter_tail":
            assert cond == list(range(TV - n, TV))
        elif name == "quarter_head_tail":
            assert cond == [*range(n), *range(TV - n, TV)]
        else:
            assert cond == list(range(cond[0], cond[0] + n))
        assert torch.equal(audio, _nearest(video, TA))  # the conditioned span carries over to audio
    assert sizes == {1, 2, 3}  # randint(1, Tv // 4), both ends reached


def test_intepolate_alternates_from_both_offsets():
    offsets = set()
    for seed in SEEDS:
        video, audio, _ = _masks("intepolate", seed)
        cond = _cond(video)
        offsets.add(cond[0])
        assert cond == list(range(cond[0], TV, 2))
        assert torch.equal(audio, _nearest(video, TA))
    assert offsets == {0, 1}


@pytest.mark.parametrize("name", ["image_random", "image_head", "image_tail", "image_head_tail"])
def test_image_tasks_generate_all_audio(name):
    for seed in SEEDS:
        video, audio, _ = _masks(name, seed)
        assert len(_cond(video)) == (2 if name == "image_head_tail" else 1)
        assert audio.all()


def test_random_keeps_one_frame_to_generate():
    counts = set()
    for seed in SEEDS:
        video, audio, _ = _masks("random", seed)
        assert video.any()
        counts.add(int(video.sum()))
        assert torch.equal(audio, _nearest(video, TA))
    assert len(counts) > 3  # the ratio really is random
    # With two frames and ratio >= 0.1 both frames are sometimes conditioned: the last one is then forced on.
    forced = [_masks("random", seed, tv=2, ta=4)[0].tolist() for seed in range(200)]
    assert [True, True] in forced and [False, True] in forced and [True, False] in forced
    assert [False, False] not in forced


def test_small_video_quarter_conditions_one_frame():
    for tv in (2, 3):
        video, _, _ = _masks("quarter_head_tail", 0, tv=tv, ta=8)
        assert _cond(video) == [0, tv - 1]


@pytest.mark.parametrize("name", VALID_STRATEGIES)
def test_single_frame_video_is_all_generated(name):
    video, audio, picked = _masks(name, tv=1, ta=8)
    assert picked == name and video.tolist() == [True]
    assert audio.tolist() == [name not in ("audio_to_video", "sound_image_animate")] * 8
    empty, _, _ = _masks(name, tv=0, ta=8)
    assert empty.shape == (0,)


# --- draws and determinism ----------------------------------------------------------------------------


def test_pick_frequencies_match_v01_ratios():
    masks = VAMaskGenerator(V01_RATIOS)
    g = _gen(1234)
    draws = [masks.pick(g) for _ in range(20000)]
    for name, ratio in masks.ratios.items():
        assert draws.count(name) / len(draws) == pytest.approx(ratio, abs=0.01), name


def test_pinned_strategy_is_always_picked():
    masks = VAMaskGenerator({"video_to_audio": 1.0})
    g = _gen(0)
    assert {masks.pick(g) for _ in range(500)} == {"video_to_audio"}


def test_same_seed_same_masks():
    masks = VAMaskGenerator({"random": 0.5, "quarter_random": 0.5})
    for seed in range(10):
        a, b = masks.sample_masks(TV, TA, _gen(seed)), masks.sample_masks(TV, TA, _gen(seed))
        assert torch.equal(a[0], b[0]) and torch.equal(a[1], b[1]) and a[2] == b[2]


def test_batch_equals_stacked_samples_and_ignores_neighbours():
    masks = VAMaskGenerator(V01_RATIOS | {"identity": 0.0, "random": 0.71})
    seeds = list(range(16))
    video, audio, names = masks.get_masks(TV, TA, [_gen(s) for s in seeds], device="cpu")
    assert video.shape == (16, TV) and audio.shape == (16, TA) and video.device.type == "cpu"
    singles = [masks.sample_masks(TV, TA, _gen(s)) for s in seeds]
    assert torch.equal(video, torch.stack([s[0] for s in singles]))
    assert torch.equal(audio, torch.stack([s[1] for s in singles]))
    assert names == [s[2] for s in singles]
    assert len(set(names)) > 2
    # Sample 5 in another batch, at another position, gets the same masks.
    other_v, other_a, other_n = masks.get_masks(TV, TA, [_gen(99), _gen(5), _gen(7)])
    assert torch.equal(other_v[1], video[5]) and torch.equal(other_a[1], audio[5]) and other_n[1] == names[5]


def test_empty_batch():
    video, audio, names = VAMaskGenerator(V01_RATIOS).get_masks(TV, TA, [])
    assert video.shape == (0, TV) and audio.shape == (0, TA) and names == []


def test_global_rngs_untouched():
    torch.manual_seed(0)
    random.seed(0)
    torch_state, py_state = torch.get_rng_state(), random.getstate()
    masks = VAMaskGenerator({name: 1 / 13 for name in VALID_STRATEGIES if name != "identity"})
    masks.get_masks(TV, TA, [_gen(s) for s in range(50)])
    assert torch.equal(torch.get_rng_state(), torch_state)
    assert random.getstate() == py_state
