"""OpenSoraVAE_V1_2: key layout, latent sizes, encode/decode, loading."""

import pytest
import torch

from conftest import read_manifest
from javisdit.models.loading import save_pretrained
from javisdit.registry import MODELS, build_module


def test_matches_the_published_keys_on_meta():
    with torch.device("meta"):
        vae = build_module(dict(type="OpenSoraVAE_V1_2", from_pretrained=None, micro_frame_size=17,
                                micro_batch_size=4), MODELS)
    shapes = {k: tuple(v.shape) for k, v in vae.state_dict().items()}
    assert shapes == read_manifest("opensora_vae_v1_2") and len(shapes) == 517
    assert sum(p.numel() for p in vae.parameters()) == 393_341_007
    assert vae.get_latent_size((102, 240, 426)) == (30, 30, 53)


@pytest.fixture(scope="module")
def tiny():
    torch.manual_seed(0)
    return build_module(dict(type="OpenSoraVAE_V1_2", from_pretrained=None, preset="tiny"), MODELS)


@pytest.mark.parametrize("frames", [17, 20, 1, 34])
def test_encode_decode_shapes(tiny, frames):
    x = torch.rand(1, 3, frames, 32, 48) * 2 - 1
    z = tiny.encode(x)
    assert z.shape == (1, 4, *tiny.get_latent_size((frames, 32, 48)))
    assert tiny.decode(z, num_frames=frames).shape == (1, 3, frames, 32, 48)


def test_posterior_switch(tiny):
    x = torch.rand(1, 3, 5, 16, 16) * 2 - 1
    tiny.sample_posterior = False
    try:
        torch.testing.assert_close(tiny.encode(x), tiny.encode(x))
    finally:
        tiny.sample_posterior = True
    a, b = tiny.encode(x, generator=torch.Generator().manual_seed(1)), tiny.encode(x, generator=torch.Generator().manual_seed(1))
    torch.testing.assert_close(a, b)


def test_bad_inputs(tiny):
    with pytest.raises(ValueError, match=r"video must be \[B, 3, T, H, W\] with T, H, W >= 1, got \[1, 4, 5, 16, 16\]"):
        tiny.encode(torch.zeros(1, 4, 5, 16, 16))
    with pytest.raises(ValueError, match=r"got \[1, 3, 0, 16, 16\]"):
        tiny.encode(torch.zeros(1, 3, 0, 16, 16))
    with pytest.raises(ValueError, match=r"latents for 17 frames must be \[B, 4, 5, h, w\], got \[1, 4, 6, 2, 2\]"):
        tiny.decode(torch.zeros(1, 4, 6, 2, 2), num_frames=17)


def test_loads_from_a_folder_without_normalisation_buffers(tiny, tmp_path):
    folder = save_pretrained(tiny, tmp_path / "vae")
    from safetensors.torch import load_file, save_file

    state = load_file(folder / "model.safetensors")
    del state["scale"], state["shift"]
    save_file(state, folder / "model.safetensors")
    loaded = build_module(dict(type="OpenSoraVAE_V1_2", from_pretrained=str(folder), preset="tiny"), MODELS)
    z = torch.randn(1, 4, 5, 2, 3)
    torch.testing.assert_close(loaded.decode(z, 17), tiny.decode(z, 17))


def test_temporal_stride_of_the_preset_sets_the_latent_frames():
    """A temporal VAE of stride 2 (JavisDiT-mini's) gives 9 latent frames a chunk of 17; encode and decode agree."""
    from javisdit.models import geometry
    from javisdit.models.vae.video import VIDEO_VAE_PRESETS, OpenSoraVideoVAE

    assert VIDEO_VAE_PRESETS["mini"]["temporal"]["temporal_downsample"] == (False, True, False)
    assert [geometry.video_latent_frames(n, 2) for n in (1, 17, 20, 51)] == [1, 9, 11, 27]
    assert geometry.video_latent_frames(51) == 15 and geometry.video_chunk_latents(1) == 17
    torch.manual_seed(0)
    vae = OpenSoraVideoVAE(preset="mini", sample_posterior=False).eval()
    assert vae.time_stride == 2 and vae.get_latent_size((20, 16, 24)) == (11, 2, 3)
    z = vae.encode(torch.rand(1, 3, 20, 16, 24) * 2 - 1)
    assert z.shape == (1, 4, 11, 2, 3)
    assert vae.decode(z, num_frames=20).shape == (1, 3, 20, 16, 24)
    with pytest.raises(ValueError, match=r"latents for 20 frames must be \[B, 4, 11, h, w\]"):
        vae.decode(z[:, :, :10], num_frames=20)


def test_channels_last_weights_decode_the_same_and_save_as_before(tmp_path):
    torch.manual_seed(0)
    vae = build_module(dict(type="OpenSoraVAE_V1_2", from_pretrained=None, preset="tiny"), MODELS).eval()
    z = torch.randn(1, 4, *vae.get_latent_size((17, 32, 48)))
    plain = vae.decode(z, 17)
    assert vae.channels_last() is vae
    convs = [m for m in vae.modules() if isinstance(m, (torch.nn.Conv2d, torch.nn.Conv3d))]
    assert any(isinstance(m, torch.nn.Conv3d) for m in convs) and any(isinstance(m, torch.nn.Conv2d) for m in convs)
    for m in convs:
        fmt = torch.channels_last if isinstance(m, torch.nn.Conv2d) else torch.channels_last_3d
        assert m.weight.is_contiguous(memory_format=fmt)
    assert not all(m.weight.is_contiguous() for m in convs)  # 1x1 kernels are both layouts at once
    torch.testing.assert_close(vae.decode(z, 17), plain, rtol=1e-4, atol=1e-5)
    folder = save_pretrained(vae, tmp_path / "vae")  # contiguous copies: a normal checkpoint
    again = build_module(dict(type="OpenSoraVAE_V1_2", from_pretrained=str(folder), preset="tiny"), MODELS).eval()
    torch.testing.assert_close(again.decode(z, 17), plain, rtol=1e-4, atol=1e-5)


def test_inference_builds_the_video_vae_channels_last(repo):
    from javisdit.config import parse_configs
    from javisdit.inference.pipeline import build_models

    cfg = parse_configs("inference", [str(repo / "configs" / "tiny" / "inference.py")])
    vae = build_models(cfg, torch.device("cpu"), torch.float32).vae
    conv = next(m for m in vae.modules() if isinstance(m, torch.nn.Conv2d) and m.kernel_size != (1, 1))
    assert conv.weight.is_contiguous(memory_format=torch.channels_last) and not conv.weight.is_contiguous()
