"""CAVP (the CAVP score): architecture against the manifest, the input pipeline against the golden values
of ``EVAL_MODELS.md`` §4.3, ffmpeg's frame choice, the score, and the checkpoint layout and its errors."""

from __future__ import annotations

import math
from fractions import Fraction

import numpy as np
import pytest
import torch
from conftest import read_manifest, spec_audio_a as audio_a, spec_video_v as video_v

from javisdit.errors import MissingWeightsError, WeightsMismatchError
from javisdit.eval.cavp_inputs import (
    cavp_frame_indices,
    cavp_frames,
    cavp_mel,
    cavp_mel_basis,
    cavp_score,
    cavp_seconds,
    resize_frames,
)
from javisdit.eval.networks.cavp import VIDEO_CHUNK, build_cavp, load_cavp, write_random_cavp

R = 1e-5  # relative tolerance of the golden values


# ------------------------------------------------------------------------------------------- architecture


def test_full_model_matches_the_manifest():
    manifest = read_manifest("eval_cavp")
    with torch.device("meta"):
        model = build_cavp("full")
    state = model.state_dict()
    assert len(manifest) == 402
    assert list(state) == list(manifest)  # logit_scale first, conv1/conv2/bn1/bn2 in the Cnn14 blocks
    assert {k: tuple(v.shape) for k, v in state.items()} == manifest
    assert sum(v.numel() for v in state.values()) == 113_476_163
    assert sum(p.numel() for p in model.parameters()) == 113_406_593
    assert {k for k, v in state.items() if v.dtype == torch.int64} == {k for k in manifest if
                                                                       k.endswith("num_batches_tracked")}
    assert not model.training


def test_tiny_keys_are_full_keys_and_unknown_size_fails():
    with torch.device("meta"):
        full = set(build_cavp("full").state_dict())
    tiny = build_cavp("tiny")
    assert set(tiny.state_dict()) <= full
    assert {k.split(".")[0] for k in tiny.state_dict()} == {k.split(".")[0] for k in full}
    with pytest.raises(ValueError, match="unknown CAVP size 'huge'; valid: full, tiny"):
        build_cavp("huge")


# ------------------------------------------------------------------------------------------- audio input


def test_mel_of_a_matches_the_golden_values():
    mel = cavp_mel(audio_a(), cavp_seconds(4.0))
    assert mel.shape == (128, 256) and mel.dtype == torch.float32
    assert mel.mean().item() == pytest.approx(0.1062437, rel=R)
    assert mel.std().item() == pytest.approx(0.2153691, rel=R)
    assert mel.sum().item() == pytest.approx(3481.393, rel=R)
    assert mel.max().item() == pytest.approx(0.982618, rel=R)
    assert (mel == 0).float().mean().item() == pytest.approx(0.67682, abs=1e-5)
    torch.testing.assert_close(mel[0, 0:4], torch.tensor([0.745771, 0.841421, 0.858160, 0.782059]), rtol=R, atol=1e-6)
    torch.testing.assert_close(mel[20, 100:104], torch.tensor([0.231530, 0.231288, 0.231047, 0.231295]),
                               rtol=R, atol=1e-6)
    torch.testing.assert_close(mel[127, 250:256], torch.tensor([0.101050, 0.141388, 0.221363, 0.346431, 0.481443,
                                                                0.636229]), rtol=R, atol=1e-6)
    assert mel[:, 0].mean().item() == pytest.approx(0.4566739, rel=R)
    assert mel[:, 255].mean().item() == pytest.approx(0.4544280, rel=R)


def test_mel_of_a_truncated_clip_is_zero_padded():
    full = cavp_mel(audio_a(), 4)
    mel = cavp_mel(audio_a()[:56000], 4)  # 3.5 s, padded to 4 s
    assert mel.shape == (128, 256) and mel.dtype == torch.float32
    assert mel.mean().item() == pytest.approx(0.09978696, rel=R)
    assert mel.sum().item() == pytest.approx(3269.819, rel=R)
    torch.testing.assert_close(mel[:, :222], full[:, :222], rtol=0, atol=1.2e-6)  # a prefix of A
    assert mel[127, 250:256].tolist() == [0.0] * 6
    # a longer clip is cropped; every second gives 64 mel frames
    torch.testing.assert_close(cavp_mel(np.concatenate([audio_a(), audio_a()[:8000]]), 4), full, rtol=0, atol=0)
    assert cavp_mel(audio_a()[:16000], 1).shape == (128, 64)
    with pytest.raises(ValueError, match="shorter than 1 s"):
        cavp_mel(audio_a()[:8000], 0)


def test_mel_basis_matches_the_golden_values():
    basis = cavp_mel_basis()
    assert basis.shape == (128, 513) and basis.dtype == np.float32
    assert float(basis.sum()) == pytest.approx(8.188132, rel=R)
    assert np.flatnonzero(basis[0]).tolist() == [9, 10]
    np.testing.assert_allclose(basis[0, 9:11], [0.0322004, 0.0263918], rtol=R)
    assert np.flatnonzero(basis[127]).tolist() == list(range(465, 487))


# ------------------------------------------------------------------------------------------- video input


def test_frame_transform_of_v_matches_the_golden_values():
    frame = resize_frames(video_v(frames=1))[0]  # frame 0 of V, 240 x 426
    assert frame.shape == (3, 224, 224) and frame.dtype == torch.float32
    assert frame.mean().item() == pytest.approx(0.5000246, rel=R)
    assert frame.std().item() == pytest.approx(0.2607108, rel=R)
    assert frame.min().item() == pytest.approx(0.02352941, rel=R)
    assert frame.max().item() == pytest.approx(0.9686275, rel=R)
    torch.testing.assert_close(frame[0, 0, 0:4], torch.tensor([0.0235294, 0.0666667, 0.121569, 0.172549]),
                               rtol=R, atol=1e-6)
    torch.testing.assert_close(frame[2, 223, 220:224], torch.tensor([0.141176, 0.192157, 0.247059, 0.290196]),
                               rtol=R, atol=1e-6)


def test_frame_indices_of_a_4_s_clip():
    # 24 -> 4 fps: frame i lands in slot round(i / 6) (halves up), so slot k holds frames 6k-3 .. 6k+2 and
    # ffmpeg keeps the last of them: 6k + 2, not the frame 6k nearest to k / 4.
    assert cavp_frame_indices(96, 24.0, 4) == [6 * k + 2 for k in range(16)]
    assert cavp_frame_indices(96, 24.0, 4) == [2, 8, 14, 20, 26, 32, 38, 44, 50, 56, 62, 68, 74, 80, 86, 92]
    # 25 fps: slot k holds the frames with i / 6.25 in [k - 0.5, k + 0.5)
    assert cavp_frame_indices(125, 25.0, 4) == [3, 9, 15, 21, 28, 34, 40, 46, 53, 59, 65, 71, 78, 84, 90, 96]
    assert cavp_frame_indices(10, 2.0, 4) == [0, 0, 1, 1, 2, 2, 3, 3, 4, 4, 5, 5, 6, 6, 7, 7]  # repeats
    assert cavp_seconds(4.0) == 4 and cavp_seconds(4.99) == 4 and cavp_seconds(3.999) == 3
    with pytest.raises(ValueError, match="80 frames at 24 fps are shorter than the 4 s to score"):
        cavp_frame_indices(80, 24.0, 4)
    with pytest.raises(ValueError, match="shorter than 1 s"):
        cavp_frame_indices(20, 24.0, 0)


def _libavfilter_fps(num_frames: int, rate: Fraction, seconds: int) -> list[int]:
    """Which input frames ffmpeg's own ``trim`` + ``fps=4`` filters (through PyAV) output."""
    import av

    graph = av.filter.Graph()
    source = graph.add_buffer(width=16, height=16, format="gray", time_base=1 / rate)
    chain = [source, graph.add("trim", f"duration={seconds}"), graph.add("fps", "fps=4"), graph.add("buffersink")]
    for a, b in zip(chain, chain[1:]):
        a.link_to(b)
    graph.configure()
    out: list[int] = []

    def drain() -> None:
        while True:
            try:
                frame = graph.pull()
            except (av.error.BlockingIOError, av.error.EOFError):
                return
            out.append(int(frame.to_ndarray()[0, :2].astype(int) @ [1, 256]))

    for i in range(num_frames):
        image = np.zeros((16, 16), np.uint8)
        image[0, :2] = i % 256, i // 256  # the frame number, read back from the output
        frame = av.VideoFrame.from_ndarray(image, format="gray")
        frame.pts, frame.time_base = i, 1 / rate
        try:
            graph.push(frame)
        except av.error.EOFError:  # trim has ended the stream
            break
        drain()
    graph.push(None)
    drain()
    return out


@pytest.mark.parametrize("rate", [Fraction(24), Fraction(25), Fraction(30000, 1001), Fraction(60), Fraction(5),
                                  Fraction(3)])
def test_frame_indices_agree_with_libavfilter(rate):
    for seconds in (1, 3):
        num_frames = math.ceil(rate * (seconds + 1))  # longer than scored: trim ends the stream at `seconds`
        expected = _libavfilter_fps(num_frames, rate, seconds)
        assert len(expected) == 4 * seconds
        assert cavp_frame_indices(num_frames, float(rate), seconds) == expected


def test_cavp_frames_takes_the_chosen_frames():
    clip = video_v(frames=100, height=24, width=32)
    frames = cavp_frames(clip, 24.0, 4)
    assert frames.shape == (16, 3, 224, 224) and frames.dtype == torch.float32
    torch.testing.assert_close(frames, resize_frames(clip[[6 * k + 2 for k in range(16)]]), rtol=0, atol=0)
    assert 0.0 <= frames.min().item() and frames.max().item() <= 1.0


# ------------------------------------------------------------------------------------------- model


@pytest.fixture(scope="module")
def tiny():
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(0)
        return build_cavp("tiny")


@torch.no_grad()
def test_tiny_encodes_a_4_s_clip(tiny):
    frames = cavp_frames(video_v(frames=96, height=60, width=80), 24.0, 4)
    mel = cavp_mel(audio_a(), 4)
    video = tiny.encode_video(frames[None])
    spec = tiny.encode_spec(mel[None])
    assert video.shape == (1, 16, 16) and spec.shape == (1, 16, 16)  # 16 frames at 4 fps; 256 mel frames / 16
    torch.testing.assert_close(video.norm(dim=-1), torch.ones(1, 16), rtol=0, atol=1e-5)
    torch.testing.assert_close(spec.norm(dim=-1), torch.ones(1, 16), rtol=0, atol=1e-5)
    score = cavp_score(video[0], spec[0])
    assert -1.0 <= score <= 1.0
    assert score == pytest.approx(float((video[0] * spec[0]).sum(dim=1).mean()), abs=1e-6)


@torch.no_grad()
def test_video_is_encoded_in_independent_chunks_of_40(tiny):
    assert VIDEO_CHUNK == 40
    g = torch.Generator().manual_seed(1)
    frames = torch.rand(1, 42, 3, 32, 32, generator=g)
    features = tiny.encode_video(frames)
    assert features.shape == (1, 42, 16)
    torch.testing.assert_close(features[:, :40], tiny.encode_video(frames[:, :40]), rtol=0, atol=1e-6)
    torch.testing.assert_close(features[:, 40:], tiny.encode_video(frames[:, 40:]), rtol=0, atol=1e-6)
    # the inflated (3,1,1) convs pad each chunk with zeros, so the border frames differ from one long sequence
    whole = tiny.encode_video(frames, chunk=42)
    assert (whole[:, 39] - features[:, 39]).abs().max() > 1e-4
    torch.testing.assert_close(whole[:, :37], features[:, :37], rtol=0, atol=1e-5)  # 3 inflated convs: +-3 frames


def test_cavp_score_on_hand_made_features():
    e = torch.eye(4)
    assert cavp_score(e, e) == pytest.approx(1.0, abs=1e-7)
    assert cavp_score(e, e.roll(1, dims=0)) == pytest.approx(0.0, abs=1e-7)  # orthogonal at every step
    assert cavp_score(e, -e) == pytest.approx(-1.0, abs=1e-7)
    video = np.array([[1.0, 0.0], [1.0, 1.0], [0.0, 0.0]])
    spec = np.array([[2.0, 0.0], [1.0, 0.0], [1.0, 0.0]])  # cosines 1, 1/sqrt(2), 0 (zero vector: eps)
    assert cavp_score(video, spec) == pytest.approx((1 + 1 / math.sqrt(2)) / 3, rel=1e-6)
    with pytest.raises(ValueError, match="16 video steps vs 15 audio steps"):
        cavp_score(torch.ones(16, 512), torch.ones(15, 512))
    with pytest.raises(ValueError, match=r"\[16, 512\] and \[16, 256\]"):
        cavp_score(torch.ones(16, 512), torch.ones(16, 256))


# ------------------------------------------------------------------------------------------- checkpoint


def _raw(path) -> dict:
    return torch.load(path, map_location="cpu", weights_only=True)


@torch.no_grad()
def test_write_random_then_load_round_trip(tmp_path):
    path = write_random_cavp(tmp_path, "tiny", seed=3)
    assert path == tmp_path / "cavp_epoch66.ckpt"
    raw = _raw(path)
    assert set(raw) == {"epoch", "name", "state_dict"} and raw["epoch"] == 66
    assert all(k.startswith("module.") for k in raw["state_dict"])
    stripped = {k.removeprefix("module."): v for k, v in raw["state_dict"].items()}

    model = load_cavp(tmp_path, "tiny")
    assert not model.training and next(model.parameters()).dtype == torch.float32
    state = model.state_dict()
    assert list(state) == list(build_cavp("tiny").state_dict())
    assert all(torch.equal(state[k], stripped[k]) for k in state)
    assert state["spec_encoder.bn.running_var"].min() >= 0.5  # BN statistics are random and loaded too

    reference = build_cavp("tiny")
    reference.load_state_dict(stripped, strict=True)
    frames, mel = torch.rand(1, 5, 3, 32, 32), torch.rand(1, 128, 64)
    torch.testing.assert_close(model.encode_video(frames), reference.encode_video(frames), rtol=0, atol=0)
    torch.testing.assert_close(model.encode_spec(mel), reference.encode_spec(mel), rtol=0, atol=0)

    again = _raw(write_random_cavp(tmp_path / "again", "tiny", seed=3))["state_dict"]
    other = _raw(write_random_cavp(tmp_path / "other", "tiny", seed=4))["state_dict"]
    assert all(torch.equal(again[k], raw["state_dict"][k]) for k in again)
    assert not torch.equal(other["module.spec_encoder.fc1.weight"], raw["state_dict"]["module.spec_encoder.fc1.weight"])


@pytest.mark.parametrize("layout", ["flat with module.", "state_dict without module.", "flat without module."])
def test_both_file_layouts_load(tmp_path, layout):
    state = _raw(write_random_cavp(tmp_path / "ref", "tiny"))["state_dict"]
    if "without" in layout:
        state = {k.removeprefix("module."): v for k, v in state.items()}
    ckpt = state if layout.startswith("flat") else {"state_dict": state, "epoch": 1}
    torch.save(ckpt, tmp_path / "cavp_epoch66.ckpt")
    model = load_cavp(tmp_path, "tiny")
    expected = load_cavp(tmp_path / "ref", "tiny").state_dict()
    assert all(torch.equal(v, expected[k]) for k, v in model.state_dict().items())


def _save_modified(tmp_path, change) -> None:
    ckpt = _raw(write_random_cavp(tmp_path, "tiny"))
    change(ckpt["state_dict"])
    torch.save(ckpt, tmp_path / "cavp_epoch66.ckpt")


def test_missing_renamed_and_misshaped_keys_are_errors(tmp_path):
    _save_modified(tmp_path / "missing", lambda s: s.pop("module.spec_encoder.fc1.bias"))
    with pytest.raises(WeightsMismatchError, match=r"1 missing: spec_encoder\.fc1\.bias"):
        load_cavp(tmp_path / "missing", "tiny")

    def rename(s):
        s["module.spec_encoder.conv_block1.bn_1.weight"] = s.pop("module.spec_encoder.conv_block1.bn1.weight")

    _save_modified(tmp_path / "renamed", rename)
    with pytest.raises(WeightsMismatchError, match=r"missing: spec_encoder\.conv_block1\.bn1\.weight; "
                                                    r"1 unexpected: spec_encoder\.conv_block1\.bn_1\.weight"):
        load_cavp(tmp_path / "renamed", "tiny")

    def reshape(s):
        s["module.video_project_head.weight"] = torch.zeros(16, 64)

    _save_modified(tmp_path / "shape", reshape)
    with pytest.raises(WeightsMismatchError, match=r"mis-shaped: video_project_head\.weight \[16, 64\] vs \[16, 128\]"):
        load_cavp(tmp_path / "shape", "tiny")

    write_random_cavp(tmp_path / "tiny_file", "tiny")  # a tiny file is no full model: its keys are named
    with pytest.raises(WeightsMismatchError, match=r"missing: .*video_encoder\.layer1\.1\.conv1\.conv\.weight"):
        load_cavp(tmp_path / "tiny_file", "full", device="meta")


class _NotAWeight:
    pass


def test_unsafe_pickles_and_missing_files_are_refused(tmp_path):
    ckpt = _raw(write_random_cavp(tmp_path, "tiny"))
    torch.save({**ckpt, "args": _NotAWeight()}, tmp_path / "cavp_epoch66.ckpt")
    with pytest.raises(WeightsMismatchError, match=r"refuses \(Unsupported global: GLOBAL .*_NotAWeight"):
        load_cavp(tmp_path, "tiny")
    (tmp_path / "cavp_epoch66.ckpt").write_bytes(b"not a checkpoint")
    with pytest.raises(WeightsMismatchError, match="cannot be read as a torch checkpoint"):
        load_cavp(tmp_path, "tiny")
    torch.save([torch.zeros(1)], tmp_path / "cavp_epoch66.ckpt")
    with pytest.raises(WeightsMismatchError, match="holds no state dict of tensors"):
        load_cavp(tmp_path, "tiny")
    with pytest.raises(MissingWeightsError, match="cavp_epoch66.ckpt"):
        load_cavp(tmp_path / "empty", "tiny")
