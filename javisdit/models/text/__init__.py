"""Text encoders: T5 (``t5``) for the DiT, and caption cleaning shared with the ST-prior estimator."""

from javisdit.models.text.cleaning import append_score, clean_caption, text_preprocessing
from javisdit.models.text.t5 import T5TextEncoder, build_t5, t5_dtype
from javisdit.registry import MODELS

__all__ = ["T5TextEncoder", "append_score", "build_t5", "clean_caption", "t5_dtype", "text_preprocessing"]

MODELS.register_module(name="t5", module=build_t5)
