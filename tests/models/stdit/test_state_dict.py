"""State dicts load strictly, including the original's one-copy null caption and missing RoPE freqs."""

import pytest
import torch
from safetensors.torch import load_file, save_file

from conftest import TINY_VA
from javisdit.registry import MODELS, build_module


def test_strict_round_trip_through_safetensors(tmp_path, tiny_inputs):
    torch.manual_seed(0)
    source = build_module(TINY_VA, MODELS).eval()
    save_file(source.state_dict(), tmp_path / "model.safetensors")
    torch.manual_seed(1)
    target = build_module(TINY_VA, MODELS).eval()
    target.load_state_dict(load_file(tmp_path / "model.safetensors"), strict=True)
    inputs = tiny_inputs()
    for key in ("video", "audio"):
        torch.testing.assert_close(source(**inputs)[key], target(**inputs)[key], rtol=0, atol=0)


def test_one_copy_of_the_null_caption_and_no_rope(tmp_path):
    torch.manual_seed(0)
    source = build_module(TINY_VA, MODELS)
    state = source.state_dict()
    del state["audio_y_embedder.y_embedding"], state["rope.freqs"]
    torch.manual_seed(1)
    target = build_module(TINY_VA, MODELS)
    target.load_state_dict(state, strict=True)
    assert torch.equal(target.audio_y_embedder.y_embedding, source.y_embedder.y_embedding)
    assert torch.equal(target.rope.freqs, source.rope.freqs)
    # two buffers, not an alias: changing one leaves the other
    target.y_embedder.y_embedding.add_(1.0)
    assert not torch.equal(target.audio_y_embedder.y_embedding, target.y_embedder.y_embedding)


def test_meta_model_takes_weights_by_assignment():
    torch.manual_seed(0)
    state = build_module(TINY_VA, MODELS).state_dict()
    with torch.device("meta"):
        model = build_module(TINY_VA, MODELS)
    model.load_state_dict(state, strict=True, assign=True)
    assert all(not p.is_meta for p in model.parameters()) and all(not b.is_meta for b in model.buffers())


def test_bad_state_dicts_are_listed():
    model = build_module(TINY_VA, MODELS)
    state = model.state_dict()
    state.pop("va_cross_blocks.0.gamma_m1")
    state["not_a_key.weight"] = torch.zeros(1)
    state["t_block.1.bias"] = torch.zeros(5)
    with pytest.raises(RuntimeError) as err:
        model.load_state_dict(state, strict=True)
    message = str(err.value)
    assert "va_cross_blocks.0.gamma_m1" in message and "not_a_key.weight" in message and "t_block.1.bias" in message


@pytest.mark.parametrize(
    "kwargs, message",
    [
        (dict(depht=2), "VASTDiT3: unknown argument 'depht'; valid: "),
        (dict(enable_sequence_parallelism=True), "enable_sequence_parallelism=True is not supported"),
        (dict(st_prior_utilize="modulate"), "st_prior_utilize='modulate' is not supported"),
        (dict(hidden_size=66, num_heads=4), "hidden_size 66 must split into 4 heads of an even size"),
        (dict(audio_hidden_size=32), "audio_hidden_size 32 must equal hidden_size 64"),
    ],
)
def test_bad_config(kwargs, message):
    from javisdit.errors import ConfigError

    with pytest.raises(ConfigError, match=message):
        build_module(dict(TINY_VA, **kwargs), MODELS)
