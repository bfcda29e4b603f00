"""Text encoders: T5 (``t5``) for the DiT, and caption cleaning shared with the ST-prior estimator."""

from javisdit.models.text.cleaning import append_score, clean_caption, text_preprocessing
from javisdit.models.text.t5 import T5TextEncoder
from javisdit.registry import MODELS

__all__ = ["T5TextEncoder", "append_score", "clean_caption", "text_preprocessing"]

MODELS.register_module(name="t5", module=T5TextEncoder)
