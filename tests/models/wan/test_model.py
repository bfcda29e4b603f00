"""JavisDiT++'s DiT: keys against the manifests, TA-RoPE positions, the dual FFN's routing, precision."""

import pytest
import torch
from conftest import read_manifest

from javisdit.errors import ConfigError, UserError
from javisdit.models.layers.rope import apply_rope_pairs, axis_dims, rope_angles_3d
from javisdit.models.wan import build_wan
from javisdit.models.wan.config import make_config
from javisdit.models.wan.model import WanModel, audio_positions, video_positions


@pytest.mark.parametrize("manifest, kwargs, params", [
    ("javisdit_v1_jav_merged", dict(), 2_252_388_960),
    ("javisdit_v1_stage1_t2a", dict(model_type="t2a"), 1_426_119_200),
    ("wan21_t2v_1_3b", dict(model_type="t2v", dual_ffn=False), 1_418_996_800),
])
def test_xl_keys_shapes_and_parameters_equal_the_manifests(manifest, kwargs, params):
    with torch.device("meta"):
        model = WanModel(make_config("1.3B", **kwargs))
    expected = read_manifest(manifest)
    got = {k: tuple(v.shape) for k, v in model.state_dict().items()}
    assert sorted(got) == sorted(expected)
    assert got == expected
    if manifest != "wan21_t2v_1_3b":  # upstream Wan lists head.* last; ours and JavisDiT's keep this order
        assert list(got) == list(expected)
    assert sum(p.numel() for p in model.parameters()) == params


def test_config_refuses_what_upstream_never_implemented():
    with pytest.raises(ConfigError, match="audio_pe_type='interleave' is not supported"):
        make_config("tiny", audio_pe_type="interleave")
    with pytest.raises(ConfigError, match="unknown argument 'caption_channels'"):
        make_config("tiny", caption_channels=4096)
    with pytest.raises(ConfigError, match="model_type 'i2v' is not supported"):
        make_config("tiny", model_type="i2v")
    assert make_config("tiny", window_size=[-1, -1], audio_pe_type="interleave_offset").dim == 64


def test_rope_axis_split_and_angles():
    assert axis_dims(128) == (44, 42, 42) and axis_dims(64) == (24, 20, 20)
    angles = rope_angles_3d(torch.tensor([[1, 0, 0], [0, 2, 0], [0, 0, 3]]), 128)
    assert angles.shape == (3, 64) and angles.dtype == torch.float64
    inv_t = 1 / 10000 ** (torch.arange(0, 44, 2, dtype=torch.float64) / 44)
    inv_h = 1 / 10000 ** (torch.arange(0, 42, 2, dtype=torch.float64) / 42)
    assert torch.equal(angles[0, :22], inv_t) and not angles[0, 22:].any()
    assert torch.equal(angles[1, 22:43], 2 * inv_h) and not angles[1, :22].any() and not angles[1, 43:].any()
    assert torch.equal(angles[2, 43:], 3 * inv_h)
    # adjacent pairs rotate as complex numbers: (1, 0) by 90 degrees is (0, 1)
    x = torch.zeros(1, 1, 2)
    x[..., 0] = 1
    rotated = apply_rope_pairs(x, torch.tensor([[torch.pi / 2]], dtype=torch.float64))
    torch.testing.assert_close(rotated, torch.tensor([[[0.0, 1.0]]]), atol=1e-7, rtol=0)


def test_ta_rope_positions_by_hand():
    # spec §15: 240p, 65 frames: video grid (17, 15, 27), audio grid (52, 8)
    pos = audio_positions((52, 8), (17, 15, 27)).reshape(52, 8, 3)
    t = pos[:, 0, 0].tolist()
    assert t[:11] == [0, 1, 1, 1, 2, 2, 2, 3, 3, 3, 4] and t[-4:] == [16, 16, 16, 16]
    assert t == [-(-16 * i // 51) for i in range(52)]  # ceil(16 i / 51)
    assert pos[:, 0, 1].tolist() == list(range(15, 67)) and pos[0, :, 2].tolist() == list(range(27, 35))
    assert (pos[:, :, 0] == pos[:, :1, 0]).all() and (pos[:, :, 1] == pos[:, :1, 1]).all()
    # 49 frames (Tv 13, Ta' 40): exact interior integers at i = 13 and 26
    t = audio_positions((40, 8), (13, 30, 54)).reshape(40, 8, 3)[:, 0, 0].tolist()
    assert t[13] == 4 and t[12] == 4 and t[14] == 5 and t[26] == 8 and t[27] == 9 and t[-1] == 12
    # t2a: no video grid (stage 1): (ceil((Tv - 1) i / (Ta' - 1)), i, m) with Tv from the frame count
    assert audio_positions((3, 2), (26, 0, 0)).tolist() == [[0, 0, 0], [0, 0, 1], [13, 1, 0], [13, 1, 1], [25, 2, 0],
                                                            [25, 2, 1]]
    assert video_positions((2, 1, 3)).tolist() == [[0, 0, 0], [0, 0, 1], [0, 0, 2], [1, 0, 0], [1, 0, 1], [1, 0, 2]]


def _tiny(seed=0, **kwargs):
    torch.manual_seed(seed)
    model = build_wan("tiny", **kwargs).eval()
    with torch.no_grad():  # the output projections start at zero: give them values
        for name in ("head", "audio_head"):
            if hasattr(model, name):
                torch.nn.init.normal_(getattr(model, name).head.weight, std=0.1)
    return model


def _inputs(B=2, seed=1, frames=3, audio_frames=8):
    g = torch.Generator().manual_seed(seed)
    return (dict(video=torch.randn(B, 16, frames, 4, 6, generator=g), audio=torch.randn(B, 8, audio_frames, 16, generator=g)),
            torch.tensor([999.0, 250.0][:B]), torch.randn(B, 5, 32, generator=g), torch.tensor([[1, 1, 1, 0, 0], [1, 1, 1, 1, 1]][:B]))


def test_forward_shapes_types_and_inputs_untouched():
    model = _tiny()
    x, t, y, mask = _inputs()
    before = {k: v.clone() for k, v in x.items()}, y.clone()
    out = model(x=x, timestep=t, y=y, mask=mask)
    assert out["video"].shape == (2, 16, 3, 4, 6) and out["audio"].shape == (2, 8, 8, 16)
    assert out["video"].dtype == out["audio"].dtype == torch.float32
    assert all(torch.equal(x[k], before[0][k]) for k in x) and torch.equal(y, before[1])
    audio_only = _tiny(model_type="t2a")(x=x, timestep=t, y=y, mask=mask, num_frames=torch.tensor([9, 9]))
    assert audio_only["video"] is None and audio_only["audio"].shape == (2, 8, 8, 16)
    video_only = _tiny(model_type="t2v", dual_ffn=False)(x=x, timestep=t, y=y, mask=mask)
    assert video_only["audio"] is None and video_only["video"].shape == (2, 16, 3, 4, 6)
    with pytest.raises(UserError, match="JavisDiT\\+\\+ \\(v1.0\\) does not take"):
        model(x=x, timestep=t, y=y, mask=mask, x_mask=torch.ones(2, 3, dtype=torch.bool))


def test_padding_rows_of_the_text_are_zeroed_and_unused():
    model = _tiny()
    x, t, y, mask = _inputs()
    changed = y.clone()
    changed[0, 3:] = 7.0  # sample 0's padding
    a, b = model(x=x, timestep=t, y=y, mask=mask), model(x=x, timestep=t, y=changed, mask=mask)
    assert torch.equal(a["video"], b["video"]) and torch.equal(a["audio"], b["audio"])
    c = model(x=x, timestep=t, y=changed)  # without the mask the rows count
    assert not torch.allclose(a["video"][0], c["video"][0])


def test_dual_ffn_routes_video_tokens_to_ffn_and_audio_tokens_to_audio_ffn():
    model = _tiny()
    x, t, y, mask = _inputs()
    seen = {}
    def record(name):
        def hook(module, inputs, output):
            seen[name] = inputs[0].shape
        return hook

    hooks = [getattr(model.blocks[-1], name).register_forward_hook(record(name)) for name in ("ffn", "audio_ffn")]
    base = model(x=x, timestep=t, y=y, mask=mask)
    for hook in hooks:
        hook.remove()
    assert seen["ffn"][1] == 3 * 2 * 3  # video tokens: (3, 4/2, 6/2)
    assert seen["audio_ffn"][1] == 4 * 8  # audio tokens: (8/2, 16/2)
    # the last block's FFNs act after its attention: each changes its own modality only
    with torch.no_grad():
        model.blocks[-1].audio_ffn[2].bias.add_(1.0)
    moved = model(x=x, timestep=t, y=y, mask=mask)
    assert torch.equal(moved["video"], base["video"]) and not torch.allclose(moved["audio"], base["audio"])
    with torch.no_grad():
        model.blocks[-1].audio_ffn[2].bias.sub_(1.0)
        model.blocks[-1].ffn[2].bias.add_(1.0)
    moved = model(x=x, timestep=t, y=y, mask=mask)
    assert torch.equal(moved["audio"], base["audio"]) and not torch.allclose(moved["video"], base["video"])


def test_joint_attention_mixes_the_modalities_in_earlier_blocks():
    model = _tiny()
    x, t, y, mask = _inputs()
    base = model(x=x, timestep=t, y=y, mask=mask)
    other = dict(x, audio=x["audio"] + 1.0)
    assert not torch.allclose(model(x=other, timestep=t, y=y, mask=mask)["video"], base["video"])


def test_bf16_rounds_the_timestep_and_keeps_fp32_heads():
    model = _tiny().to(torch.bfloat16)
    x, _, y, mask = _inputs()
    # 991.64 and 992 are the same bf16 number (spec §3.9; bf16 steps by 4 here); 984 is not
    a = model(x=x, timestep=torch.tensor([991.64, 991.64]), y=y, mask=mask)
    b = model(x=x, timestep=torch.tensor([992.0, 992.0]), y=y, mask=mask)
    c = model(x=x, timestep=torch.tensor([984.0, 984.0]), y=y, mask=mask)
    assert torch.equal(a["video"], b["video"]) and not torch.equal(a["video"], c["video"])
    assert a["video"].dtype == torch.float32
    full = _tiny()(x=x, timestep=torch.tensor([992.0, 992.0]), y=y, mask=mask)  # same weights in fp32
    err = (a["video"] - full["video"]).abs().max() / full["video"].abs().max()
    assert 0 < err < 0.1  # bf16 blocks, close to fp32


def test_output_is_the_negated_head():
    model = _tiny()
    x, t, y, mask = _inputs()
    with torch.no_grad():
        model.head.head.weight.zero_()
        model.head.head.bias.fill_(0.5)
    assert torch.equal(model(x=x, timestep=t, y=y, mask=mask)["video"], torch.full((2, 16, 3, 4, 6), -0.5))
