"""Inference: text to sounding video (``scripts/inference.py``)."""

from javisdit.inference.pipeline import RunReport, build_models, generate, run

__all__ = ["RunReport", "build_models", "generate", "run"]
