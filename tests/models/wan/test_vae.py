"""The Wan2.1 video VAE (JavisDiT++ v1.0): key layout, latent sizes, causal chunked coding, normalisation,
precision, loading and registration."""

import copy
from pathlib import Path

import pytest
import torch
import torch.nn.functional as F
from conftest import MANIFESTS

import javisdit.models.wan.vae  # noqa: F401  (registers Wan2_1_T2V_1_3B_VAE until the package imports it)
from javisdit.errors import ConfigError, MissingWeightsError, WeightsMismatchError
from javisdit.models.wan.vae import Resample, WanVAENetwork, WanVideoVAE, build_wan_vae
from javisdit.registry import MODELS, build_module

# spec MODEL_V1.md §6
MEAN = [-0.7571, -0.7089, -0.9113, 0.1075, -0.1745, 0.9653, -0.1517, 1.5508,
        0.4134, -0.0715, 0.5517, -0.3632, -0.1922, -0.9497, 0.2503, -0.2921]
STD = [2.8184, 1.4541, 2.3275, 2.6558, 1.2196, 1.7708, 2.6052, 2.0743,
       3.2687, 2.1526, 2.8652, 1.5579, 1.6382, 1.1253, 2.8251, 1.9160]


def _manifest() -> tuple[list[tuple[str, tuple[int, ...], int]], int]:
    """(key, shape, numel) rows of ``wan21_vae.tsv`` and its ``state_dict_numel`` footer."""
    path = MANIFESTS / "wan21_vae.tsv"
    rows, total = [], None
    for line in path.read_text().splitlines():
        if line.startswith("# state_dict_numel"):
            total = int(line.split("\t")[1])
        elif line and not line.startswith("#"):
            key, shape, _, numel = line.split("\t")
            rows.append((key, tuple(int(v) for v in shape.strip("[]").split(",")), int(numel)))
    return rows, total


def _randomise(module: torch.nn.Module, seed: int = 0) -> torch.nn.Module:
    """Non-trivial values everywhere (norm gains around 1), so that a misplaced tensor changes the output."""
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for name, p in module.named_parameters():
            noise = torch.randn(p.shape, generator=g)
            p.copy_(1 + 0.2 * noise if name.endswith("gamma") else p + 0.05 * noise)
    return module


@pytest.fixture(scope="module")
def tiny() -> WanVideoVAE:
    torch.manual_seed(0)
    return _randomise(build_wan_vae(preset="tiny"))


def _video(T: int, H: int = 16, W: int = 16, seed: int = 0) -> torch.Tensor:
    return torch.rand(1, 3, T, H, W, generator=torch.Generator().manual_seed(seed)) * 2 - 1


def test_real_size_matches_the_published_keys_on_meta():
    rows, total = _manifest()
    with torch.device("meta"):
        vae = WanVideoVAE()
    state = vae.model.state_dict()
    assert [(k, tuple(v.shape), v.numel()) for k, v in state.items()] == rows  # same keys, order, shapes
    assert len(state) == 194 and sum(p.numel() for p in vae.parameters()) == total == 126_892_531
    assert list(vae.state_dict()) == ["model." + key for key, _, _ in rows]  # the wrapper only adds a prefix
    assert not vae.latent_inv_std.is_meta and vae.out_channels == 16 and vae.time_stride == 4


@pytest.mark.parametrize(("size", "latent"), [((33, 240, 426), (9, 30, 54)), ((81, 480, 854), (21, 60, 108)),
                                              ((65, 360, 640), (17, 46, 80)), ((102, 240, 426), (27, 30, 54)),
                                              ((1, 8, 8), (1, 2, 2))])
def test_latent_size(tiny, size, latent):
    assert tiny.get_latent_size(size) == latent  # spec §8's table


@pytest.mark.parametrize("T", [1, 5, 9])
def test_encode_decode_shapes_at_a_size_not_a_multiple_of_8(tiny, T):
    x = _video(T, 20, 28)
    z = tiny.encode(x)
    assert z.shape == (1, 16, 1 + (T - 1) // 4, 4, 4) == (1, 16, *tiny.get_latent_size((T, 20, 28)))
    video = tiny.decode(z, num_frames=T)
    assert video.shape == (1, 3, T, 32, 32) and video.dtype == torch.float32
    assert video.abs().max() <= 1 and video.abs().max() > 0.1


def test_inputs_off_the_grid_are_padded_with_their_last_frame_row_and_column(tiny):
    x = _video(7, 20, 28)
    z = tiny.encode(x)
    padded = F.pad(x, (0, 4, 0, 12, 0, 2), mode="replicate")  # 9 frames, 32 x 32
    assert padded[:, :, 8, :20, :28].equal(x[:, :, 6]) and padded[:, :, :7, 31, :28].equal(x[:, :, :, 19])
    torch.testing.assert_close(z, tiny.encode(padded), rtol=0, atol=1e-6)
    assert z.shape[2] == 3 and tiny.decode(z, num_frames=7).shape[2] == 7 and tiny.decode(z).shape[2] == 9
    torch.testing.assert_close(tiny.decode(z, num_frames=7), tiny.decode(z)[:, :, :7])


def test_bad_inputs(tiny):
    with pytest.raises(ValueError, match=r"video must be \[B, 3, T, H, W\] with T, H, W >= 1, got \[1, 4, 5, 16, 16\]"):
        tiny.encode(torch.zeros(1, 4, 5, 16, 16))
    with pytest.raises(ValueError, match=r"latents for 9 frames must have 3 frames, got \[1, 16, 4, 2, 2\]"):
        tiny.decode(torch.zeros(1, 16, 4, 2, 2), num_frames=9)
    with pytest.raises(ValueError, match=r"latents must be \[B, 16, Tv, h, w\], got \[1, 4, 3, 2, 2\]"):
        tiny.decode(torch.zeros(1, 4, 3, 2, 2))


def _record_time_lengths(module: torch.nn.Module) -> tuple[list[int], object]:
    seen: list[int] = []
    return seen, module.register_forward_hook(lambda m, args, out: seen.append(args[0].shape[2]))


def test_chunked_encode_equals_one_pass_over_the_clip(tiny):
    net, x = tiny.model, _video(13)
    seen, hook = _record_time_lengths(net.encoder.conv1)
    try:
        chunked = net.encode_chunked(x)
    finally:
        hook.remove()
    assert seen == [1, 4, 4, 4]  # the first frame alone, then groups of 4
    whole, _ = net.encode(x)  # every layer over the whole time axis at once
    assert chunked.shape == whole.shape == (1, 16, 4, 2, 2)
    torch.testing.assert_close(chunked, whole, rtol=0, atol=1e-5)


def test_chunked_decode_equals_one_pass_over_the_latents(tiny):
    net = tiny.model
    z = torch.randn(1, 16, 4, 2, 3, generator=torch.Generator().manual_seed(1))
    seen, hook = _record_time_lengths(net.decoder.conv1)
    try:
        chunked = net.decode_chunked(z)
    finally:
        hook.remove()
    assert seen == [1, 1, 1, 1]  # one latent frame at a time: memory does not grow with the clip
    whole = net.decode(z)
    assert chunked.shape == whole.shape == (1, 3, 13, 16, 24)
    scale = whole.abs().max()
    torch.testing.assert_close(chunked / scale, whole / scale, rtol=0, atol=1e-5)


def test_encode_and_decode_are_causal(tiny):
    x = _video(9, seed=2)
    torch.testing.assert_close(tiny.encode(x[:, :, :5]), tiny.encode(x)[:, :, :2], rtol=0, atol=1e-5)
    z = tiny.encode(x)
    torch.testing.assert_close(tiny.decode(z[:, :, :2]), tiny.decode(z)[:, :, :5], rtol=0, atol=1e-5)
    changed = x.clone()
    changed[:, :, 5:] = 0  # the last group of 4 frames changes only the last latent frame
    z2 = tiny.encode(changed)
    assert z2[:, :, :2].equal(z[:, :, :2]) and not z2[:, :, 2].equal(z[:, :, 2])


def test_temporal_upsampling_keeps_the_first_frame_and_doubles_the_others():
    torch.manual_seed(0)
    layer, x = Resample(4, "up3d"), torch.randn(1, 4, 3, 2, 2)
    w, b = layer.time_conv.weight, layer.time_conv.bias
    pairs = F.conv3d(F.pad(x[:, :, 1:], (0, 0, 0, 0, 2, 0)), w, b)  # causal over frames 1.., zeros before
    frames = [x[:, :, 0], pairs[:, :4, 0], pairs[:, 4:, 0], pairs[:, :4, 1], pairs[:, 4:, 1]]
    conv = layer.resample[1]
    expected = torch.stack([conv(F.interpolate(f, scale_factor=2, mode="nearest")) for f in frames], dim=2)
    with torch.no_grad():
        whole = layer(x, {})
        cache: dict = {}
        stepwise = torch.cat([layer(x[:, :, i:i + 1], cache) for i in range(3)], dim=2)
    assert whole.shape == (1, 2, 5, 4, 4)
    torch.testing.assert_close(whole, expected, rtol=0, atol=1e-6)
    torch.testing.assert_close(stepwise, expected, rtol=0, atol=1e-6)


def test_temporal_downsampling_keeps_the_first_frame_and_strides_over_all():
    torch.manual_seed(0)
    layer, x = Resample(4, "down3d"), torch.randn(1, 4, 9, 4, 4)
    conv = layer.resample[1]
    spatial = torch.stack([conv(F.pad(x[:, :, i], (0, 1, 0, 1))) for i in range(9)], dim=2)  # [1, 4, 9, 2, 2]
    strided = F.conv3d(spatial, layer.time_conv.weight, layer.time_conv.bias, stride=(2, 1, 1))  # windows 0-2, 2-4..
    expected = torch.cat([spatial[:, :, :1], strided], dim=2)
    with torch.no_grad():
        whole = layer(x, {})
        cache: dict = {}
        chunked = torch.cat([layer(chunk, cache) for chunk in (x[:, :, :1], x[:, :, 1:5], x[:, :, 5:])], dim=2)
    assert whole.shape == (1, 4, 5, 2, 2)
    torch.testing.assert_close(whole, expected, rtol=0, atol=1e-6)
    torch.testing.assert_close(chunked, expected, rtol=0, atol=1e-6)


def test_middle_attention_is_single_head_attention_within_each_frame(tiny):
    block = tiny.model.encoder.middle[1]
    C = block.proj.out_channels
    x = torch.randn(1, C, 2, 3, 2, generator=torch.Generator().manual_seed(3))
    with torch.no_grad():
        out = block(x)
        for t in range(2):
            tokens = x[0, :, t].flatten(1).T  # [6, C]
            normed = F.normalize(tokens, dim=1) * C**0.5 * block.norm.gamma.flatten()
            q, k, v = (normed @ block.to_qkv.weight.flatten(1).T + block.to_qkv.bias).split(C, dim=1)
            attn = torch.softmax(q @ k.T / C**0.5, dim=-1) @ v
            expected = tokens + attn @ block.proj.weight.flatten(1).T + block.proj.bias
            torch.testing.assert_close(out[0, :, t].flatten(1).T, expected, rtol=0, atol=1e-5)


def test_latents_are_the_normalised_posterior_mean(tiny):
    x = _video(5, seed=4)
    mean, std = torch.tensor(MEAN).view(1, 16, 1, 1, 1), torch.tensor(STD).view(1, 16, 1, 1, 1)
    mu = tiny.model.encode_chunked(x)
    torch.testing.assert_close(tiny.encode(x), (mu - mean) / std, rtol=0, atol=1e-5)
    assert tiny.encode(x).equal(tiny.encode(x))  # no sampling
    z = torch.randn(1, 16, 2, 2, 2, generator=torch.Generator().manual_seed(5))
    expected = tiny.model.decode_chunked(z * std + mean).clamp(-1, 1)
    torch.testing.assert_close(tiny.decode(z, num_frames=5), expected, rtol=0, atol=1e-5)
    assert tiny.latent_inv_std.dtype == torch.float32
    assert tiny.latent_inv_std.equal(1 / torch.tensor(STD))  # the stored reciprocal, computed in fp32


def test_bf16_weights_compute_in_fp32(tiny):
    x = _video(5, seed=6)
    stored = copy.deepcopy(tiny).to(torch.bfloat16)
    assert {p.dtype for p in stored.parameters()} == {torch.bfloat16}
    assert stored.latent_inv_std.dtype == torch.float32  # the constants stay fp32
    rounded = copy.deepcopy(stored).float()  # the same bf16-rounded values, stored in fp32
    z = stored.encode(x)
    assert z.dtype == torch.float32 and z.equal(rounded.encode(x))
    assert not z.equal(tiny.encode(x))  # the rounding is visible, so the comparison above means something
    assert stored.decode(z, 5).equal(rounded.decode(z, 5))
    built = build_wan_vae(preset="tiny", dtype="bf16")
    assert {p.dtype for p in built.parameters()} == {torch.bfloat16} and not built.training


def _save(vae: WanVideoVAE, folder: Path, rename: tuple[str, str] | None = None) -> Path:
    state = {k: v.clone() for k, v in vae.model.state_dict().items()}  # bare keys, as the published file
    if rename is not None:
        state[rename[1]] = state.pop(rename[0])
    folder.mkdir(parents=True, exist_ok=True)
    torch.save(state, folder / "Wan2.1_VAE.pth")
    return folder


def test_loads_the_published_file_layout(tiny, tmp_path):
    folder = _save(tiny, tmp_path / "Wan2.1-T2V-1.3B")
    loaded = build_wan_vae(from_pretrained=str(folder), preset="tiny")
    assert all(v.equal(tiny.state_dict()[k]) for k, v in loaded.state_dict().items())
    assert not any(p.requires_grad for p in loaded.parameters()) and not loaded.training
    x = _video(5, seed=7)
    assert loaded.encode(x).equal(tiny.encode(x))
    assert build_wan_vae(from_pretrained=folder / "Wan2.1_VAE.pth", preset="tiny").encode(x).equal(tiny.encode(x))
    as_bf16 = build_wan_vae(from_pretrained=folder, preset="tiny", dtype=torch.bfloat16)
    assert {p.dtype for p in as_bf16.parameters()} == {torch.bfloat16}


def test_missing_weights_say_what_to_download(tmp_path):
    for where in (tmp_path, tmp_path / "absent"):
        with pytest.raises(MissingWeightsError) as err:
            build_wan_vae(from_pretrained=where, preset="tiny")
        message = str(err.value)
        assert "\n" not in message and "Wan2.1_VAE.pth" in message and "Wan-AI/Wan2.1-T2V-1.3B" in message
        assert str(where) in message


def test_a_renamed_key_is_named(tiny, tmp_path):
    folder = _save(tiny, tmp_path, rename=("decoder.head.2.weight", "decoder.head.3.weight"))
    with pytest.raises(WeightsMismatchError, match=r"missing: decoder\.head\.2\.weight.*unexpected: decoder\.head\.3"):
        build_wan_vae(from_pretrained=folder, preset="tiny")


@pytest.mark.parametrize(("kwargs", "message"), [
    (dict(vae_stride=(4, 16, 16)), r"vae_stride must be \(4, 8, 8\).*got \(4, 16, 16\)"),
    (dict(dit_patch_size=[1, 4, 4]), r"dit_patch_size must be \(1, 2, 2\).*got \(1, 4, 4\)"),
    (dict(preset="huge"), r"unknown Wan VAE preset 'huge'; valid: wan2\.1, tiny"),
    (dict(dtype="fp64"), r"vae\.dtype must be one of fp32, fp16, bf16, got 'fp64'"),
])
def test_unsupported_settings_are_config_errors(kwargs, message):
    with pytest.raises(ConfigError, match=message):
        build_wan_vae(**{"preset": "tiny", **kwargs})


def test_registered_under_the_upstream_name():
    torch.manual_seed(0)
    vae = build_module(dict(type="Wan2_1_T2V_1_3B_VAE", from_pretrained=None, preset="tiny",
                            vae_stride=[4, 8, 8], dit_patch_size=[1, 2, 2]), MODELS)
    assert isinstance(vae, WanVideoVAE) and isinstance(vae.model, WanVAENetwork)
    assert vae.model.encoder.conv1.out_channels == 8 and vae.out_channels == 16
    assert vae.encode(_video(5)).shape == (1, 16, 2, 2, 2)
