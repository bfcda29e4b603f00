"""STIBPrior: published key layouts, the tokenizer, ImageBind loading, outputs and sampling."""

import pytest
import torch

from conftest import TINY_PRIOR as TINY
from conftest import read_manifest
from javisdit.errors import ConfigError
from javisdit.models.loading import MissingWeightsError, WeightsMismatchError, save_pretrained
from javisdit.models.prior import build_stib_prior
from javisdit.models.prior.imagebind_text import ImageBindTextTower, load_imagebind_text
from javisdit.models.prior.stib import STIBPrior, make_prior_config
from javisdit.models.prior.tokenizer import ImageBindTokenizer
from javisdit.registry import MODELS, build_module

V01 = dict(spatial_token_num=32, temporal_token_num=32, out_dim=128, hidden_size=512, apply_sampling=True,
           qk_norm=True, enable_layernorm_kernel=True)


def _shapes(model, with_text=True):
    return {k: tuple(v.shape) for k, v in model.state_dict().items() if with_text or not k.startswith("text_encoder.")}


@pytest.mark.parametrize(
    "encode_va, manifest, with_text, params",
    [(False, "stib_prior", True, 30_116_608), (False, "stib_prior_no_imagebind", False, 30_116_608),
     (True, "stib_prior_train_encode_va_no_imagebind", False, 30_650_945)],
)
def test_manifests(encode_va, manifest, with_text, params):
    with torch.device("meta"):  # construction reads no files, even with the v0.1 imagebind path configured
        model = STIBPrior(make_prior_config(encode_va=encode_va, **V01))
    shapes = _shapes(model, with_text)
    assert shapes == read_manifest(manifest) and list(shapes) == list(read_manifest(manifest))
    assert sum(p.numel() for n, p in model.named_parameters() if not n.startswith("text_encoder.")) == params
    assert sum(p.numel() for p in model.parameters() if p.requires_grad) == params  # the tower is frozen


def test_tokenizer_ids():
    tok = ImageBindTokenizer()
    ids = tok(["A dog barks.", "Hello, World!  &amp; more"])  # expected ids from open_clip.tokenize
    assert ids.shape == (2, 77) and ids.dtype == torch.long
    assert ids[0, :8].tolist() == [49406, 320, 1929, 1040, 662, 269, 49407, 0]
    assert ids[1, :9].tolist() == [49406, 3306, 267, 1002, 256, 261, 750, 49407, 0]
    assert ids[0, 7:].eq(0).all()


def test_tokenizer_truncates_like_imagebind(caplog):
    ids = ImageBindTokenizer()([" ".join(["dog"] * 100)])
    assert ids[0, 0] == 49406 and (ids[0, 1:] == 1929).all()  # 77 ids, no <eot> kept (ImageBind's cut)
    assert "the prior reads the first 77" in caplog.text
    with pytest.raises(ValueError, match="the prompt list is empty"):
        ImageBindTokenizer()([])


def _imagebind_file(tmp_path, tower, extra=None):
    state = dict(tower.state_dict())
    state["modality_trunks.vision.blocks.0.attn.in_proj_weight"] = torch.zeros(3, 1)  # other modalities
    state["modality_heads.audio.proj.1.weight"] = torch.zeros(1)
    state.update(extra or {})
    torch.save(state, tmp_path / "imagebind_huge.pth")
    return tmp_path


def test_imagebind_text_subset_loads_strictly(tmp_path):
    torch.manual_seed(0)
    source = ImageBindTextTower.from_preset("tiny")
    folder = _imagebind_file(tmp_path, source)
    target = ImageBindTextTower.from_preset("tiny")
    load_imagebind_text(target, folder)
    tokens = ImageBindTokenizer()(["a dog barks"])
    torch.testing.assert_close(target(tokens), source(tokens))
    assert target.embed(tokens).shape == (1, 32)


def test_imagebind_errors(tmp_path):
    tower = ImageBindTextTower.from_preset("tiny")
    with pytest.raises(MissingWeightsError) as err:
        load_imagebind_text(tower, tmp_path / "checkpoints")
    assert "imagebind_huge.pth not found" in str(err.value)
    assert "wget -P " in str(err.value) and "https://dl.fbaipublicfiles.com/imagebind/imagebind_huge.pth" in str(err.value)
    _imagebind_file(tmp_path, tower, {"something.else": torch.zeros(1)})
    with pytest.raises(WeightsMismatchError, match=r"not an ImageBind checkpoint: unexpected keys \['something.else'\]"):
        load_imagebind_text(tower, tmp_path)
    huge_shaped = {k: v for k, v in tower.state_dict().items()}
    huge_shaped["modality_preprocessors.text.pos_embed"] = torch.zeros(1, 77, 1024)
    _imagebind_file(tmp_path, tower, huge_shaped)
    with pytest.raises(WeightsMismatchError, match="does not fit the text tower"):
        load_imagebind_text(tower, tmp_path)


def test_outputs_and_sampling_switch():
    torch.manual_seed(0)
    model = STIBPrior(make_prior_config(**TINY)).eval()
    prompts = ["a dog barks", "rain on a roof"]
    out = model(prompts, generator=torch.Generator().manual_seed(1))
    assert out["spatial_prior"].shape == (2, 4, 16) and out["temporal_prior"].shape == (2, 4, 16)
    assert out["mean"].shape == out["logvar"].shape == (2, 8, 16)
    again = model(prompts, generator=torch.Generator().manual_seed(1))
    torch.testing.assert_close(out["spatial_prior"], again["spatial_prior"])  # seeded
    mean = model(prompts, deterministic=True)
    torch.testing.assert_close(torch.cat([mean["spatial_prior"], mean["temporal_prior"]], 1), out["mean"])
    assert not torch.allclose(out["spatial_prior"], mean["spatial_prior"])  # sampling is the default
    hidden = model.encode_text(prompts)
    from_hidden = model(hidden, deterministic=True)  # precomputed hidden states work too
    torch.testing.assert_close(from_hidden["temporal_prior"], mean["temporal_prior"])
    deterministic = STIBPrior(make_prior_config(**TINY, deterministic=True))
    deterministic.load_state_dict(model.state_dict())
    torch.testing.assert_close(deterministic(prompts)["spatial_prior"], mean["spatial_prior"])


def test_input_errors():
    model = STIBPrior(make_prior_config(**TINY))
    with pytest.raises(ValueError, match="no prompts given"):
        model([])
    with pytest.raises(ValueError, match=r"text hidden states must be \[B, L, 32\], got \[2, 77, 16\]"):
        model(torch.zeros(2, 77, 16))
    with pytest.raises(ConfigError, match="STIBPrior: unknown argument 'hiden_size'"):
        make_prior_config(hiden_size=3)
    with pytest.raises(ConfigError, match="text_emb_dim 512 must equal the ImageBind text tower's width 1024"):
        make_prior_config(text_emb_dim=512)


def test_registry_build_loads_prior_then_imagebind(tmp_path):
    torch.manual_seed(0)
    trained = STIBPrior(make_prior_config(**TINY, encode_va=True))
    # the published prior: its own weights (here with the stage-2 encoders and a stale text tower)
    save_pretrained(trained, tmp_path / "prior")
    _imagebind_file(tmp_path, trained.text_encoder)
    model = build_module(dict(type="STIBPrior", from_pretrained=str(tmp_path / "prior"),
                              imagebind_ckpt_path=str(tmp_path), encode_va=False, **TINY), MODELS)
    prompts = ["a dog barks"]
    torch.testing.assert_close(model(prompts, deterministic=True)["spatial_prior"],
                               trained(prompts, deterministic=True)["spatial_prior"])
    assert not hasattr(model, "discriminator")


def test_registry_build_without_imagebind_file(tmp_path):
    with pytest.raises(MissingWeightsError, match="prior_encoder.imagebind_ckpt_path: .*imagebind_huge.pth not found"):
        build_stib_prior(imagebind_ckpt_path=str(tmp_path / "checkpoints"), **TINY)


def test_random_text_tower_file_loads_strictly_and_is_deterministic(tmp_path):
    """JavisDiT-mini's frozen tower: a .safetensors file in ImageBind's key layout, read by the same loader."""
    from javisdit.models.prior.imagebind_text import write_random_text_tower

    a = write_random_text_tower(tmp_path / "a.safetensors", "tiny", seed=1)
    b = write_random_text_tower(tmp_path / "b.safetensors", "tiny", seed=1)
    assert a.read_bytes() == b.read_bytes()
    tower = ImageBindTextTower.from_preset("tiny")
    load_imagebind_text(tower, a)
    from safetensors.torch import load_file

    stored = load_file(str(a))
    assert set(stored) == set(tower.state_dict())
    key = "modality_preprocessors.text.token_embedding.weight"
    assert stored[key].dtype == torch.float16 and torch.equal(tower.state_dict()[key], stored[key].float())
