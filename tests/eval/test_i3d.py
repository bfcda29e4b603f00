"""I3D for FVD/KVD: the published key layout, the input pipeline against the golden values of
EVAL_MODELS.md §1.3 (synthetic video V), SAME padding by hand, and the random-checkpoint round trip."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from conftest import read_manifest, spec_video_v as video_v

from javisdit.errors import MissingWeightsError, WeightsMismatchError
from javisdit.eval.checkpoints import SOURCES
from javisdit.eval.networks.i3d import (
    PRESETS,
    BatchNorm,
    build_i3d,
    i3d_features,
    load_i3d,
    pad_same,
    same_padding,
    write_random_i3d,
)
from javisdit.eval.networks.i3d_inputs import fvd_frame_indices, i3d_input, letterbox

REL = 1e-5


# ------------------------------------------------------------------------------------------ architecture


def test_full_preset_is_the_published_file_layout():
    manifest = read_manifest("eval_i3d_400")
    with torch.device("meta"):
        model = build_i3d("full")
    state = model.state_dict()
    assert len(manifest) == 287
    assert list(state) == list(manifest)  # same keys, same order, no num_batches_tracked
    assert {k: tuple(v.shape) for k, v in state.items()} == manifest
    assert sum(p.numel() for p in model.parameters()) == 12_697_264
    assert sum(v.numel() for v in state.values()) == 12_711_824
    assert all(v.dtype == torch.float32 for v in state.values())
    norms = [m for m in model.modules() if isinstance(m, BatchNorm)]
    assert len(norms) == 57 and {m.eps for m in norms} == {1e-5} and {m.momentum for m in norms} == {0.001}
    assert not model.training


def test_tiny_preset_keeps_the_key_names_and_feature_width():
    with torch.device("meta"):
        full, tiny = build_i3d("full").state_dict(), build_i3d("tiny").state_dict()
    assert list(tiny) == list(full)
    assert tiny["logits.conv3d.weight"].shape == (400, 128, 1, 1, 1)
    assert tiny["Mixed_5c.b0.conv3d.weight"].shape == (48, 104, 1, 1, 1)  # 384/8 out of 832/8 in


def test_unknown_size_lists_the_valid_ones():
    with pytest.raises(ValueError, match="unknown I3D size 'huge'; valid: full, tiny"):
        build_i3d("huge")
    assert set(PRESETS) == {"full", "tiny"}


@pytest.mark.parametrize(("size", "kernel", "stride", "expected"), [
    (224, 7, 2, (2, 3)),  # even size: pad k - r = 5, the odd pixel at the back
    (16, 7, 2, (2, 3)),
    (9, 7, 2, (3, 3)),  # odd size: pad k - (s % r) = 6
    (7, 3, 2, (1, 1)),
    (5, 2, 2, (0, 1)),
    (8, 2, 2, (0, 0)),
    (56, 3, 1, (1, 1)),
    (8, 1, 1, (0, 0)),
    (2, 3, 2, (0, 1)),
])
def test_same_padding_by_hand(size, kernel, stride, expected):
    assert same_padding(size, kernel, stride) == expected


def test_pad_same_gives_ceil_output_sizes():
    x = torch.ones(1, 1, 9, 7, 10)
    padded = pad_same(x, (7, 3, 2), (2, 2, 2))
    assert padded.shape == (1, 1, 9 + 6, 7 + 2, 10 + 0)
    assert padded[0, 0, :3].sum() == 0 and padded[0, 0, -3:].sum() == 0 and padded[0, 0, :, 0].sum() == 0
    out = torch.nn.functional.max_pool3d(padded, (7, 3, 2), (2, 2, 2))
    assert out.shape[2:] == (5, 4, 5)  # ceil(9/2), ceil(7/2), ceil(10/2)


def test_tiny_forward_shape_and_the_nine_frame_minimum():
    model = build_i3d("tiny")
    size = model.image_size
    clips = torch.stack([i3d_input(video_v(range(s, s + 9), 24, 40), size) for s in (0, 5)])  # [2, 3, 9, 32, 32]
    features = i3d_features(model, clips)
    assert features.shape == (2, 400) and features.dtype == torch.float32
    assert not torch.allclose(features[0], features[1])
    with pytest.raises(ValueError, match=r"^I3D needs at least 9 frames per clip, got 8$"):
        i3d_features(model, clips[:, :, :8])


# ---------------------------------------------------------------------------------------- input pipeline


@pytest.mark.parametrize(("num_frames", "max_frames", "expected"), [
    (96, 16, "0 6 13 19 25 32 38 44 51 57 63 70 76 82 89 95"),
    (96, 24, "0 4 8 12 17 21 25 29 33 37 41 45 50 54 58 62 66 70 74 78 83 87 91 95"),
    (65, 16, "0 4 9 13 17 21 26 30 34 38 43 47 51 55 60 64"),
    (65, 24, "0 3 6 8 11 14 17 19 22 25 28 31 33 36 39 42 45 47 50 53 56 58 61 64"),
])
def test_frame_indices_golden(num_frames, max_frames, expected):
    assert fvd_frame_indices(num_frames, max_frames) == [int(i) for i in expected.split()]


def test_letterbox_golden_landscape_and_portrait():
    frame = letterbox(video_v([0])[0])  # 240 x 426 -> content 126 x 224
    assert frame.shape == (3, 224, 224) and frame.dtype == torch.float32
    empty_rows = (frame.abs().sum(dim=(0, 2)) == 0).nonzero().flatten().tolist()
    assert empty_rows == list(range(49)) + list(range(175, 224))
    assert (frame[:, 49:175].abs().sum(dim=(0, 2)) > 0).all()
    assert frame.mean().item() == pytest.approx(0.2812636, rel=REL)
    assert frame.sum().item() == pytest.approx(42338.05, rel=REL)
    expected = torch.tensor([[0.0512475, 0.0974910, 0.1494032],
                             [0.1373009, 0.1835443, 0.2354566],
                             [0.2338953, 0.2801388, 0.3320510]])
    torch.testing.assert_close(frame[0, 49:52, 0:3], expected, rtol=REL, atol=1e-6)

    portrait = letterbox(video_v([0], 426, 240)[0])
    empty_cols = (portrait.abs().sum(dim=(0, 1)) == 0).nonzero().flatten().tolist()
    assert empty_cols == list(range(49)) + list(range(175, 224))


def test_i3d_input_faithful_golden_16_frames():
    frames = video_v(fvd_frame_indices(96, 16))
    x = i3d_input(frames)
    assert x.shape == (3, 16, 224, 224) and x.dtype == torch.float32
    assert x.mean().item() == pytest.approx(0.2773283, rel=REL)
    assert x.std().item() == pytest.approx(0.3092801, rel=REL)
    assert x.min().item() == pytest.approx(-0.003921568, rel=REL)  # padding: 127 / 127.5 - 1
    assert x.max().item() == pytest.approx(0.9372549, rel=REL)
    assert x.sum().item() == pytest.approx(667930.8, rel=REL)
    torch.testing.assert_close(x[0, 0, 49, 0:3], torch.tensor([0.0509804, 0.0901961, 0.1450980]), rtol=REL, atol=1e-6)
    assert (x[:, :, :49] == x.min()).all()
    # the uint8 stage in between: R at rows 49-51, cols 0-2 of frame 0; padding 127; frame range [127, 247]
    quantised = torch.round((x[:, 0] + 1) * 127.5)
    torch.testing.assert_close(quantised[0, 49:52, 0:3], torch.tensor([[134.0, 139, 146], [145, 150, 157],
                                                                       [157, 163, 169]]))
    assert quantised.min().item() == 127 and quantised.max().item() == 247


def test_i3d_input_faithful_golden_24_frames():
    x = i3d_input(video_v(fvd_frame_indices(96, 24)))
    assert x.shape == (3, 24, 224, 224)
    assert x.mean().item() == pytest.approx(0.2773274, rel=REL)
    assert x.sum().item() == pytest.approx(1001893, rel=REL)


def test_i3d_input_corrected_is_minus_one_to_one():
    frames = video_v([0, 29])
    x = i3d_input(frames, mode="corrected")
    assert x.shape == (3, 2, 224, 224)
    assert (x[:, :, :49] == -1).all() and (x[:, :, 175:] == -1).all()
    torch.testing.assert_close(x[:, 1], letterbox(frames[1]) * 2 - 1)
    assert x.mean().item() == pytest.approx(0.2812636 * 2 - 1, abs=0.02)  # not the faithful ~0.28
    with pytest.raises(ValueError, match="unknown I3D input mode 'tf'; valid: faithful, corrected"):
        i3d_input(frames, mode="tf")


# --------------------------------------------------------------------------------------------- weights


def test_random_checkpoint_round_trip(tmp_path):
    path = write_random_i3d(tmp_path, "tiny", seed=0)
    assert path == tmp_path / "i3d_pretrained_400.pt"
    state = torch.load(path, map_location="cpu", weights_only=True)
    assert list(state) == list(read_manifest("eval_i3d_400"))  # flat, no prefix, no num_batches_tracked
    assert not hasattr(state, "_metadata")
    assert all(v.dtype == torch.float32 for v in state.values())

    loaded = load_i3d(tmp_path, "tiny")
    assert not loaded.training
    for key, value in loaded.state_dict().items():
        assert torch.equal(value, state[key]), key
    reference = build_i3d("tiny")
    reference.load_state_dict(state)  # stock torch load of the same file
    clips = torch.stack([i3d_input(video_v(range(s, s + 10), 30, 20), 32) for s in (0, 40)])
    torch.testing.assert_close(i3d_features(loaded, clips), i3d_features(reference, clips), rtol=0, atol=0)
    other = load_i3d(write_random_i3d(tmp_path / "seed1", "tiny", seed=1).parent, "tiny")
    assert not torch.allclose(i3d_features(other, clips), i3d_features(loaded, clips))


def test_load_tolerates_num_batches_tracked_only(tmp_path):
    state = torch.load(write_random_i3d(tmp_path), weights_only=True)
    state["Mixed_3b.b0.bn.num_batches_tracked"] = torch.tensor(0)
    torch.save(state, tmp_path / "i3d_pretrained_400.pt")
    load_i3d(tmp_path, "tiny")
    torch.save({"state_dict": state}, tmp_path / "i3d_pretrained_400.pt")
    with pytest.raises(WeightsMismatchError, match="not a flat state dict"):
        load_i3d(tmp_path, "tiny")


def test_missing_file_names_it_and_the_url(tmp_path):
    with pytest.raises(MissingWeightsError) as info:
        load_i3d(tmp_path / "empty", "tiny")
    message = str(info.value)
    assert "i3d_pretrained_400.pt" in message and SOURCES["i3d"].url in message and "\n" not in message


def test_renamed_key_is_reported_by_name(tmp_path):
    path = write_random_i3d(tmp_path)
    state = torch.load(path, weights_only=True)
    state["Mixed_4c.b1b.conv.weight"] = state.pop("Mixed_4c.b1b.conv3d.weight")
    torch.save(state, path)
    with pytest.raises(WeightsMismatchError) as info:
        load_i3d(tmp_path, "tiny")
    message = str(info.value)
    assert "1 missing: Mixed_4c.b1b.conv3d.weight" in message
    assert "1 unexpected: Mixed_4c.b1b.conv.weight" in message and "\n" not in message


def test_mis_shaped_key_is_reported_by_name(tmp_path):
    path = write_random_i3d(tmp_path)
    state = torch.load(path, weights_only=True)
    state["Conv3d_1a_7x7.bn.running_var"] = torch.ones(7)
    torch.save(state, path)
    with pytest.raises(WeightsMismatchError, match=r"1 mis-shaped: Conv3d_1a_7x7\.bn\.running_var \[7\] vs \[8\]"):
        load_i3d(tmp_path, "tiny")
    with pytest.raises(WeightsMismatchError, match=r"logits\.conv3d\.weight \[400, 128, 1, 1, 1\] vs "
                                                   r"\[400, 1024, 1, 1, 1\]"):
        load_i3d(write_random_i3d(tmp_path / "tiny_as_full").parent, "full")
