"""ImageBind's text tokenizer: CLIP byte-pair encoding (vocabulary 49408, context 77).

The vocabulary and the BPE/cleaning rules come from ``open-clip-torch`` (the same files ImageBind
ships); only the framing is ImageBind's: ``<sot> tokens <eot>`` cut to 77 ids, so a long prompt loses
its ``<eot>`` (open-clip would keep it), then zero padding.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from functools import lru_cache

import torch

logger = logging.getLogger(__name__)

CONTEXT_LENGTH = 77
VOCAB_SIZE = 49408


@lru_cache(maxsize=1)
def _bpe():
    from open_clip.tokenizer import SimpleTokenizer

    return SimpleTokenizer(context_length=CONTEXT_LENGTH)


class ImageBindTokenizer:
    """``tokenizer(["a dog barks"])`` -> LongTensor [B, 77]."""

    def __init__(self, context_length: int = CONTEXT_LENGTH):
        self.context_length = context_length
        self._warned = False

    @property
    def sot(self) -> int:
        return _bpe().encoder["<start_of_text>"]

    @property
    def eot(self) -> int:
        return _bpe().encoder["<end_of_text>"]

    def __call__(self, texts: str | Sequence[str]) -> torch.Tensor:
        if isinstance(texts, str):
            texts = [texts]
        if len(texts) == 0:
            raise ValueError("no text to tokenize: the prompt list is empty")
        ids = torch.zeros(len(texts), self.context_length, dtype=torch.long)
        for i, text in enumerate(texts):
            tokens = [self.sot, *_bpe().encode(text), self.eot]
            if len(tokens) > self.context_length and not self._warned:
                logger.warning("a prompt has %d ImageBind tokens; the prior reads the first %d (as the original)",
                               len(tokens), self.context_length)
                self._warned = True
            tokens = tokens[: self.context_length]
            ids[i, : len(tokens)] = torch.tensor(tokens)
        return ids
