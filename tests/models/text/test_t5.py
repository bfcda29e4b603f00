"""The T5 text encoder through the same loader as the real weights, and prompt cleaning."""

import pytest
import torch

from javisdit.models.loading import MissingWeightsError, save_pretrained
from javisdit.models.text import T5TextEncoder, append_score, clean_caption, text_preprocessing
from javisdit.registry import MODELS, build_module


@pytest.fixture(scope="module")
def t5_folder(tmp_path_factory):
    """A tiny T5 in the layout of DeepFloyd/t5-v1_1-xxl: sharded .bin weights, config, tokenizer files."""
    torch.manual_seed(0)
    encoder = T5TextEncoder(from_pretrained=None, preset="tiny")
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
    t5 = T5TextEncoder(from_pretrained=str(t5_folder[0]), model_max_length=20)
    out = t5.encode(["hi", "x" * 50])  # byte-level: 2 + EOS tokens, and one longer than 20
    assert out["y"].shape == (2, 1, 20, 32) and out["mask"].shape == (2, 20)
    assert out["mask"].sum(dim=1).tolist() == [3, 20]
    with pytest.raises(ValueError, match="no prompts given"):
        t5.encode([])


def test_safetensors_checkpoint_with_tied_embedding(tmp_path):
    torch.manual_seed(0)
    encoder = T5TextEncoder(from_pretrained=None, preset="tiny")
    save_pretrained(encoder.model, tmp_path, encoder.model.config.to_dict())
    from safetensors.torch import load_file

    assert "encoder.embed_tokens.weight" not in load_file(tmp_path / "model.safetensors")  # tied: stored once
    encoder.tokenizer.save_pretrained(tmp_path)
    loaded = T5TextEncoder(from_pretrained=str(tmp_path))
    assert torch.equal(loaded.model.encoder.embed_tokens.weight, encoder.model.shared.weight)


def test_cpu_offload_gives_the_same_features(t5_folder):
    folder, _ = t5_folder
    plain = T5TextEncoder(from_pretrained=str(folder), model_max_length=10)
    offloaded = T5TextEncoder(from_pretrained=str(folder), model_max_length=10, cpu_offload=True)
    torch.testing.assert_close(plain.encode(["rain"], device="cpu")["y"], offloaded.encode(["rain"], device="cpu")["y"])


def test_missing_weights_offline():
    with pytest.raises(MissingWeightsError, match="huggingface-cli download DeepFloyd/t5-v1_1-xxl --local-dir"):
        T5TextEncoder()


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
    t5 = T5TextEncoder(from_pretrained=str(t5_folder[0]), model_max_length=10, dtype=torch.bfloat16)
    assert t5.model.shared.weight.dtype == torch.bfloat16
    assert t5.encode(["rain"])["y"].dtype == torch.bfloat16
