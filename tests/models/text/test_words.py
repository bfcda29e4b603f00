"""The word-level frozen T5 of JavisDiT-mini: vocabulary, tokenizer framing, a folder build_t5 loads."""

import torch

from javisdit.models.text.t5 import build_t5
from javisdit.models.text.words import SPECIAL_TOKENS, vocabulary, word_tokenizer, write_word_t5


def test_vocabulary_is_sorted_lowercase_words_and_punctuation():
    assert vocabulary(["A Red ball, bounces", "two balls"]) == [",", "a", "ball", "balls", "bounces", "red", "two"]


def test_tokenizer_gives_each_word_one_id_eos_and_unknown():
    tok = word_tokenizer(["a", "ball", "red"], model_max_length=8)
    ids = tok(["A red ball", "a purple ball"]).input_ids
    # ids: <pad> 0, </s> 1, <unk> 2, then the words in order
    assert ids == [[3, 5, 4, 1], [3, 2, 4, 1]]
    assert len(tok) == len(SPECIAL_TOKENS) + 3


def test_written_folder_loads_through_build_t5_and_is_deterministic(tmp_path):
    words = vocabulary(["a small red rubber ball bounces slowly against a black background"])
    write_word_t5(tmp_path / "a", words, seed=3)
    write_word_t5(tmp_path / "b", words, seed=3)
    assert (tmp_path / "a" / "model.safetensors").read_bytes() == (tmp_path / "b" / "model.safetensors").read_bytes()
    encoder = build_t5(str(tmp_path / "a"), model_max_length=12)
    out = encoder.encode(["a red ball", "a black ball"])
    assert out["y"].shape == (2, 1, 12, 64)
    assert out["mask"][0].tolist() == [1] * 4 + [0] * 8
    # a different colour word changes the features at its position; the same caption gives the same features
    assert not torch.allclose(out["y"][0, 0, 1], out["y"][1, 0, 1])
    assert torch.equal(encoder.encode(["a red ball"])["y"][0], out["y"][0])
    assert all(not p.requires_grad for p in encoder.parameters())
