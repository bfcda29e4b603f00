"""The T5 text encoder through the same loader as the real weights, and prompt cleaning."""

import pytest
import torch

from javisdit.models.loading import MissingWeightsError, save_pretrained
from javisdit.models.text import T5TextEncoder, append_score, build_t5, clean_caption, text_preprocessing
from javisdit.registry import MODELS, build_module


@pytest.fixture(scope="module")
def t5_folder(tmp_path_factory):
    """A tiny T5 in the layout of DeepFloyd/t5-v1_1-xxl: sharded .bin weights, config, tokenizer files."""
    torch.manual_seed(0)
    encoder = T5TextEncoder("tiny")
    folder = tmp_path_factory.mktemp("t5")
    encoder.model.save_pretrained(folder, safe_serialization=False, max_shard_size="100KB")
    encoder.tokenizer.save_pretrained(folder)
    return folder, encoder


def test_loads_sharded_bin_checkpoint(t5_folder):
    folder, reference = t5_folder
    assert len(list(folder.glob("pytorch_model-*.bin"))) > 1
    t5 = build_module(dict(type="t5", from_pretrained=str(folder), model_max_length=12), MODELS)
    out, ref = t5.encode(["a dog barks"]), reference.encode(["a dog barks"])
    assert t5.output_dim == 32
    torch.testing.assert_close(out["y"][:, :, :12], ref["y"][:, :, :12])


def test_shapes_and_masks(t5_folder):
    t5 = build_t5(from_pretrained=str(t5_folder[0]), model_max_length=20)
    out = t5.encode(["hi", "x" * 50])  # byte-level: 2 + EOS tokens, and one longer than 20
    assert out["y"].shape == (2, 1, 20, 32) and out["mask"].shape == (2, 20)
    assert out["mask"].sum(dim=1).tolist() == [3, 20]
    with pytest.raises(ValueError, match="no prompts given"):
        t5.encode([])


def test_safetensors_checkpoint_with_tied_embedding(tmp_path):
    torch.manual_seed(0)
    encoder = T5TextEncoder("tiny")
    save_pretrained(encoder.model, tmp_path, encoder.model.config.to_dict())
    from safetensors.torch import load_file

    assert "encoder.embed_tokens.weight" not in load_file(tmp_path / "model.safetensors")  # tied: stored once
    encoder.tokenizer.save_pretrained(tmp_path)
    loaded = build_t5(from_pretrained=str(tmp_path))
    assert torch.equal(loaded.model.encoder.embed_tokens.weight, encoder.model.shared.weight)


def test_cpu_offload_gives_the_same_features(t5_folder):
    folder, _ = t5_folder
    plain = build_t5(from_pretrained=str(folder), model_max_length=10)
    offloaded = build_t5(from_pretrained=str(folder), model_max_length=10, cpu_offload=True)
    torch.testing.assert_close(plain.encode(["rain"], device="cpu")["y"], offloaded.encode(["rain"], device="cpu")["y"])


def test_missing_weights_offline():
    with pytest.raises(MissingWeightsError, match="huggingface-cli download DeepFloyd/t5-v1_1-xxl --local-dir"):
        build_t5()


@pytest.mark.parametrize(
    "raw, cleaned",
    [
        ("A dog barks at a passing train. aesthetic score: 6.5.", "a dog barks at a passing train. aesthetic score: 6.5."),
        ("Check https://example.com/x.png NOW!!! <b>bold</b> &amp; 你好 “quoted” — dash", 'check now!!! bold "quoted" - dash'),
        ("this-is-my-cute-cat_video", "this is my cute cat video"),
        ("@someone Waves   roll\\nonto the beach", "waves roll onto the beach"),
    ],
)
def test_text_preprocessing(raw, cleaned):
    assert text_preprocessing(raw) == cleaned


def test_one_pass_differs_from_two():
    raw = "Check https://example.com/x.png NOW!!! <b>bold</b> &amp; 你好 “quoted” — dash"
    assert clean_caption(raw) == 'check . now!!! bold "quoted" - dash'


def test_append_score():
    assert append_score("a cat", aes=6.5) == "a cat aesthetic score: 6.5."
    assert append_score("a cat aesthetic score: 5.0.", aes=6.5) == "a cat aesthetic score: 5.0."
    assert append_score("a cat", flow=5, camera_motion="pan left") == "a cat motion score: 5.0. camera motion: pan left."


def test_load_in_bf16(t5_folder):
    t5 = build_t5(from_pretrained=str(t5_folder[0]), model_max_length=10, dtype=torch.bfloat16)
    assert t5.model.shared.weight.dtype == torch.bfloat16
    assert t5.encode(["rain"])["y"].dtype == torch.bfloat16


def test_constructor_builds_layers_without_loading(refuse_loading):
    from transformers import T5Config

    from javisdit.models.text import t5
    from javisdit.models.text.t5 import T5_PRESETS

    refuse_loading(t5)
    torch.manual_seed(0)
    from_config = T5TextEncoder(T5Config(**T5_PRESETS["tiny"]), model_max_length=8, cpu_offload=True)
    torch.manual_seed(0)
    from_preset = T5TextEncoder("tiny", model_max_length=8)
    assert from_config.output_dim == 32 and from_config.model_max_length == 8 and from_config.cpu_offload
    assert not from_config.model.shared.weight.is_meta
    assert not any(p.requires_grad for p in from_config.parameters())
    torch.testing.assert_close(from_config.encode(["rain"])["y"], from_preset.encode(["rain"])["y"])
    with pytest.raises(ValueError, match="unknown T5 preset 'huge'; valid: xxl, tiny"):
        T5TextEncoder("huge")


def test_builder_loads_strictly(t5_folder, tmp_path):
    folder, reference = t5_folder
    t5 = build_t5(from_pretrained=str(folder), model_max_length=12, preset="ignored-with-a-checkpoint")
    assert not any(p.is_meta for p in t5.parameters())  # every meta tensor was replaced by a checkpoint one
    state = reference.model.state_dict()
    for key, value in t5.model.state_dict().items():
        assert torch.equal(value, state[key]), key
    # a checkpoint that lacks a tensor is refused, by name
    broken = {k: v for k, v in state.items() if k != "encoder.final_layer_norm.weight"}
    from javisdit.models.loading import WeightsMismatchError, save_pretrained

    save_pretrained(reference.model, tmp_path, reference.model.config.to_dict(), state_dict=broken)
    reference.tokenizer.save_pretrained(tmp_path)
    with pytest.raises(WeightsMismatchError, match="1 missing: encoder.final_layer_norm.weight"):
        build_t5(from_pretrained=str(tmp_path))


@pytest.mark.parametrize("asked, runs", [(torch.float16, torch.bfloat16), (torch.bfloat16, torch.bfloat16),
                                         (torch.float32, torch.float32), (None, None)])
def test_t5_dtype(asked, runs):
    from javisdit.models.text import t5_dtype

    assert t5_dtype(asked) == runs


def test_fp16_run_gets_a_bf16_t5(t5_folder, caplog):
    with caplog.at_level("INFO", logger="javisdit.models.text.t5"):
        tiny = build_module(dict(type="t5", from_pretrained=None, preset="tiny", model_max_length=8), MODELS,
                            dtype=torch.float16)
    assert {p.dtype for p in tiny.parameters()} == {torch.bfloat16}
    assert tiny.encode(["rain"])["y"].dtype == torch.bfloat16
    assert caplog.text.count("T5 runs in bf16 (T5 v1.1 overflows in fp16)") == 1
    loaded = build_module(dict(type="t5", from_pretrained=str(t5_folder[0]), model_max_length=8), MODELS,
                          dtype=torch.float16)
    assert {p.dtype for p in loaded.parameters()} == {torch.bfloat16}
    full = build_module(dict(type="t5", from_pretrained=None, preset="tiny"), MODELS, dtype=torch.float32)
    assert {p.dtype for p in full.parameters()} == {torch.float32}
