"""The weight loader: every on-disk layout, strict key checks, and missing weights offline."""

import json

import pytest
import torch

from conftest import TINY_VA
from javisdit.models.loading import (
    MissingWeightsError,
    WeightsMismatchError,
    load_state_dict_checked,
    read_state_dict,
    resolve_weights,
    save_pretrained,
)
from javisdit.registry import MODELS, build_module


@pytest.fixture(scope="module")
def tiny():
    torch.manual_seed(0)
    return build_module(TINY_VA, MODELS).eval()


def _same_weights(a, b):
    sa, sb = a.state_dict(), b.state_dict()
    return sa.keys() == sb.keys() and all(torch.equal(sa[k], sb[k]) for k in sa)


@pytest.mark.parametrize("layout", ["single", "sharded", "bin", "file", "run-folder"])
def test_from_pretrained_layouts(tiny, tmp_path, layout):
    if layout == "single":
        source = save_pretrained(tiny, tmp_path / "ckpt", tiny.config_json())
    elif layout == "sharded":
        source = save_pretrained(tiny, tmp_path / "ckpt", tiny.config_json(), max_shard_bytes=200_000)
        assert len(list(source.glob("model-*-of-*.safetensors"))) > 2
    elif layout == "bin":
        source = tmp_path / "ckpt"
        source.mkdir()
        torch.save(tiny.state_dict(), source / "pytorch_model.bin")
        (source / "config.json").write_text(json.dumps(tiny.config_json()))
    elif layout == "file":
        source = save_pretrained(tiny, tmp_path / "ckpt") / "model.safetensors"
    else:  # a training run's checkpoint folder: epochEEE-global_stepS/model/
        source = tmp_path / "epoch000-global_step10"
        save_pretrained(tiny, source / "model", tiny.config_json())
    kwargs = {} if layout in ("single", "sharded", "bin", "run-folder") else dict(TINY_VA)
    kwargs.pop("type", None)
    loaded = build_module(dict(type="VASTDiT3-tiny", from_pretrained=str(source), **kwargs), MODELS)
    assert _same_weights(loaded, tiny)


def test_config_json_sets_the_architecture_and_kwargs_override_it(tiny, tmp_path):
    source = save_pretrained(tiny, tmp_path / "ckpt", {**tiny.config_json(), "architectures": ["VASTDiT3"],
                                                          "weight_init_from": ["./gone"], "torch_dtype": "float32"})
    model = build_module(dict(type="VASTDiT3-XL/2", from_pretrained=str(source), enable_flash_attn=True), MODELS)
    assert model.config.hidden_size == 64 and model.config.enable_flash_attn is True
    assert model.training_policy == {}  # a stored weight_init_from is never executed


def test_missing_hub_weights_offline(monkeypatch):
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    with pytest.raises(MissingWeightsError) as err:
        build_module(dict(type="VASTDiT3-XL/2", from_pretrained="JavisDiT/JavisDiT-v0.1-jav"), MODELS)
    message = str(err.value)
    assert "model.from_pretrained: the weights 'JavisDiT/JavisDiT-v0.1-jav' are not in the local Hugging Face cache" in message
    assert "huggingface-cli download JavisDiT/JavisDiT-v0.1-jav --local-dir ./checkpoints/JavisDiT-v0.1-jav" in message
    assert "--cfg-options model.from_pretrained=./checkpoints/JavisDiT-v0.1-jav" in message


def test_missing_local_path(tmp_path):
    with pytest.raises(MissingWeightsError, match="no such file or folder: ./checkpoints/nothing-here"):
        resolve_weights("./checkpoints/nothing-here")
    (tmp_path / "empty").mkdir()
    with pytest.raises(MissingWeightsError, match="no weights in .*empty: expected one of model.safetensors"):
        read_state_dict(tmp_path / "empty")


def test_missing_shard(tiny, tmp_path):
    source = save_pretrained(tiny, tmp_path / "ckpt", max_shard_bytes=200_000)
    next(source.glob("model-00002-*.safetensors")).unlink()
    with pytest.raises(MissingWeightsError, match="lists the shard model-00002-of-.*, which is missing"):
        read_state_dict(source)


def test_wrong_checkpoint_lists_keys(tiny, tmp_path):
    stdit = build_module(dict(type="STDiT3-tiny"), MODELS)
    source = save_pretrained(stdit, tmp_path / "video-only")
    with pytest.raises(WeightsMismatchError) as err:
        build_module(dict(type="VASTDiT3-tiny", from_pretrained=str(source)), MODELS)
    message = str(err.value)
    assert "does not fit VASTDiT3" in message and "missing: ax_embedder.proj.weight" in message


def test_allow_lists(tiny):
    state = {k: v for k, v in tiny.state_dict().items() if not k.startswith("va_cross_blocks")}
    state["extra.weight"] = torch.zeros(1)
    torch.manual_seed(3)
    model = build_module(TINY_VA, MODELS)
    with pytest.raises(WeightsMismatchError, match="1 unexpected: extra.weight"):
        load_state_dict_checked(model, state, allow_missing=["va_cross_blocks."])
    report = load_state_dict_checked(model, state, allow_missing=["va_cross_blocks."], ignore_unexpected=["extra."])
    assert not report
    assert torch.equal(model.t_block[1].weight, tiny.t_block[1].weight)


def test_mis_shaped(tiny):
    state = dict(tiny.state_dict())
    state["t_block.1.bias"] = torch.zeros(3)
    with pytest.raises(WeightsMismatchError, match=r"1 mis-shaped: t_block.1.bias \[3\] vs \[384\]"):
        load_state_dict_checked(build_module(TINY_VA, MODELS), state)


def test_hub_id_from_the_local_cache_offline(tiny, tmp_path, monkeypatch):
    """A repository already in the Hugging Face cache loads by its id with HF_HUB_OFFLINE=1."""
    import huggingface_hub.constants

    commit = "0123456789abcdef0123456789abcdef01234567"
    repo = tmp_path / "hub" / "models--JavisDiT--JavisDiT-v0.1-tiny"
    save_pretrained(tiny, repo / "snapshots" / commit, tiny.config_json())
    (repo / "refs").mkdir()
    (repo / "refs" / "main").write_text(commit)
    monkeypatch.setattr(huggingface_hub.constants, "HF_HUB_CACHE", str(tmp_path / "hub"))
    assert resolve_weights("JavisDiT/JavisDiT-v0.1-tiny") == repo / "snapshots" / commit
    loaded = build_module(dict(type="VASTDiT3-XL/2", from_pretrained="JavisDiT/JavisDiT-v0.1-tiny"), MODELS)
    assert _same_weights(loaded, tiny)


def test_missing_local_copy_of_published_weights_says_where_to_get_them():
    with pytest.raises(MissingWeightsError) as err:
        resolve_weights("./checkpoints/OpenSora-STDiT-v3/model.safetensors", config_key="model.weight_init_from")
    assert "huggingface-cli download hpcai-tech/OpenSora-STDiT-v3 --local-dir checkpoints/OpenSora-STDiT-v3" in str(err.value)
    with pytest.raises(MissingWeightsError, match="move your stage 2 checkpoint folder there"):
        resolve_weights("./checkpoints/JavisDiT-v0.1-prior", config_key="prior_encoder.from_pretrained")
    with pytest.raises(MissingWeightsError, match="no such file or folder: weights/model.pt$"):
        resolve_weights("weights/model.pt")  # a relative file, not a hub id
