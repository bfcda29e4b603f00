"""A small frozen T5 that reads whole words: JavisDiT-mini's text encoder.

JavisDiT-mini's captions use a few dozen words. A randomly initialised, frozen T5 over a word-level
vocabulary gives each word an embedding of its own (contextualised by the random layers), which is all
the denoiser needs to tell "red" from "blue"; a byte-level tokenizer would leave it to the denoiser to
assemble words from letters. ``write_word_t5`` writes such an encoder as a checkpoint folder
(``config.json``, ``model.safetensors``, ``tokenizer.json``, ``tokenizer_config.json``) that ``build_t5``
loads like any T5 folder: lower-cased, split at whitespace and punctuation, ``</s>`` appended, unknown
words mapped to ``<unk>``.
"""

from __future__ import annotations

import json
import re
from collections.abc import Iterable
from pathlib import Path

import torch

from javisdit.models.loading import save_pretrained
from javisdit.models.text.t5 import T5_PRESETS

SPECIAL_TOKENS = ("<pad>", "</s>", "<unk>")  # ids 0, 1, 2: T5's pad and eos ids
_WORD = re.compile(r"\w+|[^\w\s]+")  # what the tokenizer's Whitespace pre-tokenizer splits


def vocabulary(texts: Iterable[str]) -> list[str]:
    """The sorted distinct lower-cased words and punctuation runs of ``texts``."""
    return sorted({token for text in texts for token in _WORD.findall(str(text).lower())})


def word_tokenizer(words: Iterable[str], model_max_length: int):
    """A ``PreTrainedTokenizerFast`` over ``SPECIAL_TOKENS`` + ``words`` (ids in that order)."""
    from tokenizers import Tokenizer, models, normalizers, pre_tokenizers, processors
    from transformers import PreTrainedTokenizerFast

    vocab = {token: i for i, token in enumerate([*SPECIAL_TOKENS, *(w for w in words if w not in SPECIAL_TOKENS)])}
    core = Tokenizer(models.WordLevel(vocab, unk_token="<unk>"))
    core.normalizer = normalizers.Lowercase()
    core.pre_tokenizer = pre_tokenizers.Whitespace()
    core.post_processor = processors.TemplateProcessing(single="$A </s>", special_tokens=[("</s>", vocab["</s>"])])
    return PreTrainedTokenizerFast(tokenizer_object=core, pad_token="<pad>", eos_token="</s>", unk_token="<unk>",
                                   model_max_length=model_max_length)


def write_word_t5(folder: str | Path, words: Iterable[str], preset: str = "mini", seed: int = 0,
                  model_max_length: int = 32) -> Path:
    """A random T5 encoder of ``preset``'s size over a word vocabulary, saved fp16 as a checkpoint folder.

    The same ``words``, ``preset`` and ``seed`` give the same weights.
    """
    from transformers import T5Config, T5EncoderModel

    folder = Path(folder)
    tokenizer = word_tokenizer(list(words), model_max_length)
    config = T5Config(**{**T5_PRESETS[preset], "vocab_size": len(tokenizer)}, pad_token_id=0, eos_token_id=1,
                      decoder_start_token_id=0)
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        model = T5EncoderModel(config).eval()
    tokenizer.save_pretrained(str(folder))
    state = {k: v.to(torch.float16).contiguous() for k, v in model.state_dict().items()
             if k != "encoder.embed_tokens.weight"}  # tied to shared.weight
    save_pretrained(model, folder, config=json.loads(config.to_json_string()), state_dict=state)
    return folder
