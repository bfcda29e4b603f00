"""The synchronisation modules: exact no-ops at initialisation, and the batch-union prior attention."""

import pytest
import torch

from conftest import TINY_VA, randomise_sync_modules, take_sample
from javisdit.models.stdit.policy import initialize_from
from javisdit.registry import MODELS, build_module


def test_fresh_sync_modules_leave_the_towers_unchanged(tiny_inputs):
    torch.manual_seed(0)
    joint = build_module(TINY_VA, MODELS).eval()
    inputs = tiny_inputs()
    out = joint(**inputs)

    # the video tower alone: Open-Sora's STDiT3 with the joint model's video weights
    video = build_module(dict(type="STDiT3-tiny"), MODELS).eval()
    video.load_state_dict({k: v for k, v in joint.state_dict().items() if k in video.state_dict()}, strict=True)
    video_out = video(inputs["x"]["video"], inputs["timestep"], inputs["y"], inputs["mask"], fps=inputs["fps"],
                      height=inputs["height"], width=inputs["width"])
    torch.testing.assert_close(out["video"], video_out, rtol=0, atol=0)

    # the audio tower alone: the stage-1 model (no video blocks, no sync modules) with the same weights
    audio = build_module(dict(TINY_VA, only_train_audio=True, train_st_prior_attn=False, train_va_cross_attn=False),
                         MODELS).eval()
    audio.load_state_dict({k: v for k, v in joint.state_dict().items() if k in audio.state_dict()}, strict=True)
    audio_out = audio(x={"audio": inputs["x"]["audio"]}, timestep=inputs["timestep"], y=inputs["y"],
                      mask=inputs["mask"], fps=inputs["fps"])
    torch.testing.assert_close(out["audio"], audio_out["audio"], rtol=0, atol=0)


def test_batch_union_differs_only_for_mixed_batches(tiny_inputs):
    torch.manual_seed(0)
    union = build_module(TINY_VA, MODELS).eval()
    randomise_sync_modules(union)
    per_sample = build_module(dict(TINY_VA, prior_attn_batch_union=False), MODELS).eval()
    per_sample.load_state_dict(union.state_dict())

    single = take_sample(tiny_inputs(B=2), 0)
    for key in ("video", "audio"):  # one sample: the union is the sample's own prior
        torch.testing.assert_close(union(**single)[key], per_sample(**single)[key])

    same = tiny_inputs(B=2)
    for name in ("spatial_prior", "temporal_prior"):  # the same prior twice: duplicated keys change nothing
        same[name] = same[name][:1].expand(2, -1, -1).clone()
    for key in ("video", "audio"):
        torch.testing.assert_close(union(**same)[key], per_sample(**same)[key])

    mixed = tiny_inputs(B=2)
    assert not torch.allclose(union(**mixed)["video"], per_sample(**mixed)["video"], atol=1e-4)
    # per sample, the first sample's output does not depend on the second sample's prior
    other = {**mixed, "spatial_prior": mixed["spatial_prior"].clone()}
    other["spatial_prior"][1] += 1.0
    torch.testing.assert_close(per_sample(**other)["video"][0], per_sample(**mixed)["video"][0])
    assert not torch.allclose(union(**other)["video"][0], union(**mixed)["video"][0], atol=1e-5)


def test_stage1_initialisation_copies_video_into_audio():
    torch.manual_seed(0)
    opensora = build_module(dict(type="STDiT3-tiny"), MODELS).state_dict()
    model = build_module(dict(TINY_VA, only_train_audio=True, train_st_prior_attn=False, train_va_cross_attn=False),
                         MODELS)
    report = initialize_from(model, [opensora], copy_video_to_audio=True)
    state = model.state_dict()
    for key in ("audio_spatial_blocks.1.attn.qkv.weight", "audio_temporal_blocks.0.mlp.fc2.bias"):
        assert torch.equal(state[key], opensora[key.removeprefix("audio_")])
    assert torch.equal(state["audio_y_embedder.y_embedding"], opensora["y_embedder.y_embedding"])
    assert torch.equal(state["t_block.1.weight"], opensora["t_block.1.weight"])
    # fresh: the audio patch embedding and final layer (no video counterpart of that shape)
    assert sorted({k.split(".")[0] for k in report.kept_init}) == ["audio_final_layer", "ax_embedder"]
    assert "spatial_blocks.0.attn.qkv.weight" in report.ignored  # the model has no video blocks


def test_stage3_initialisation_later_sources_win():
    torch.manual_seed(0)
    stage1 = build_module(dict(TINY_VA, only_train_audio=True, train_st_prior_attn=False, train_va_cross_attn=False),
                          MODELS).state_dict()
    opensora = build_module(dict(type="STDiT3-tiny"), MODELS).state_dict()
    model = build_module(TINY_VA, MODELS)
    report = initialize_from(model, [stage1, opensora])
    state = model.state_dict()
    assert torch.equal(state["t_block.1.weight"], opensora["t_block.1.weight"])  # shared: Open-Sora's
    assert torch.equal(state["audio_spatial_blocks.0.attn.qkv.weight"], stage1["audio_spatial_blocks.0.attn.qkv.weight"])
    assert {k.split(".")[0] for k in report.kept_init} == {
        "st_t_block", "st_prior_embedder", "video_st_prior_blocks", "audio_st_prior_blocks", "va_cross_blocks"}


def test_initialisation_rejects_wrong_shapes():
    model = build_module(TINY_VA, MODELS)
    bad = {"t_block.1.weight": torch.zeros(3, 3)}
    try:
        initialize_from(model, [bad])
    except ValueError as err:
        assert "t_block.1.weight: checkpoint [3, 3] vs model [384, 64]" in str(err)
    else:
        raise AssertionError("no error")


def test_skip_sync_equals_a_model_without_those_modules(tiny_inputs):
    """The benchmark's ablation switch: skipping a sync module gives what the model built without it gives."""
    from javisdit.models.stdit.vastdit3 import SYNC_MODULES

    torch.manual_seed(0)
    joint = build_module(TINY_VA, MODELS).eval()
    randomise_sync_modules(joint)
    inputs = tiny_inputs()
    full = joint(**inputs)
    for skip, flags in [({"va_cross"}, dict(train_va_cross_attn=False)),
                        ({"st_prior"}, dict(train_st_prior_attn=False)),
                        (set(SYNC_MODULES), dict(train_va_cross_attn=False, train_st_prior_attn=False))]:
        joint.skip_sync = frozenset(skip)
        ablated = joint(**inputs)
        without = build_module(dict(TINY_VA, **flags), MODELS).eval()
        without.load_state_dict({k: v for k, v in joint.state_dict().items() if k in without.state_dict()}, strict=True)
        kwargs = dict(inputs) if "st_prior" not in skip else {k: v for k, v in inputs.items() if "prior" not in k}
        reference = without(**kwargs)
        for key in ("video", "audio"):
            torch.testing.assert_close(ablated[key], reference[key], rtol=0, atol=0)
            assert not torch.allclose(ablated[key], full[key])
    joint.skip_sync = frozenset()
    torch.testing.assert_close(joint(**inputs)["audio"], full["audio"], rtol=0, atol=0)


@pytest.mark.parametrize("option", [dict(va_cross_time_rope=True), dict(va_cross_time_window=1.0)])
def test_va_time_options_share_the_weights_and_change_only_the_va_block(tiny_inputs, option):
    torch.manual_seed(0)
    plain = build_module(TINY_VA, MODELS).eval()
    timed = build_module(dict(TINY_VA, **option), MODELS).eval()
    randomise_sync_modules(plain)
    timed.load_state_dict(plain.state_dict(), strict=True)  # no new weights: v0.1 checkpoints load either way
    inputs = tiny_inputs(T=5, Ta=8)
    with torch.no_grad():
        a, b = plain(**inputs), timed(**inputs)
        timed.skip_sync = plain.skip_sync = frozenset({"va_cross"})
        c, d = timed(**inputs), plain(**inputs)
    assert (a["audio"] - b["audio"]).abs().max() > 1e-3 and (a["video"] - b["video"]).abs().max() > 1e-3
    torch.testing.assert_close(c["audio"], d["audio"], rtol=0, atol=0)  # only the video-audio block changes


def test_va_token_times_put_both_towers_on_one_clock():
    model = build_module(dict(TINY_VA, va_cross_time_rope=True, va_cross_time_window=0.1), MODELS)
    # 4 frames of 6 tokens, 8 audio time patches of 16 mel tokens: patches 2k and 2k+1 straddle frame k
    times = model._va_token_times(4, 6, (8, 16), None, torch.device("cpu"))
    assert times.m1 is times.m1_all and times.m1.tolist() == [float(k) for k in range(4) for _ in range(6)]
    torch.testing.assert_close(times.m2[::16], torch.arange(8.0) / 2 - 0.25)
    assert times.rope and times.window == 0.5  # widened: each frame sees at least its nearest patches
    assert times.angles is times.angles and times.masks is times.masks  # computed once for every block
    # 8 frames, 2 patches (4 frames each): the window reaches half a patch
    assert model._va_token_times(8, 1, (2, 1), None, torch.device("cpu")).window == 2.0
