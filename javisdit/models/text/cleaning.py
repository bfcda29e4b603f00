"""Prompt preprocessing of the original at inference: the score suffixes, then PixArt's caption
cleaning (lower case, URLs / HTML / @handles / CJK removed, dashes and quotes normalised, ...) applied
twice. The cleaning itself is the one diffusers ships with its PixArt pipeline, so it stays the same
function PixArt, Open-Sora and JavisDiT used.
"""

from __future__ import annotations

from functools import lru_cache


@lru_cache(maxsize=1)
def _pixart_cleaner():
    try:
        from diffusers.pipelines.pixart_alpha.pipeline_pixart_alpha import PixArtAlphaPipeline
    except ImportError as err:  # pragma: no cover - diffusers is a dependency
        raise ImportError("caption cleaning needs diffusers' PixArt pipeline (pip install diffusers)") from err
    clean = getattr(PixArtAlphaPipeline, "_clean_caption", None)
    if clean is None or not hasattr(PixArtAlphaPipeline, "bad_punct_regex"):
        raise ImportError("this diffusers version no longer ships PixArt's caption cleaning; install diffusers<0.30")
    return lambda caption: clean(PixArtAlphaPipeline, caption)


def clean_caption(caption: str) -> str:
    """One pass of PixArt's caption cleaning."""
    return _pixart_cleaner()(caption)


def text_preprocessing(caption: str) -> str:
    """The original's ``text_preprocessing``: ``clean_caption`` twice."""
    return clean_caption(clean_caption(caption))


def append_score(prompt: str, aes: float | None = None, flow: float | None = None,
                 camera_motion: str | None = None) -> str:
    """Append the score suffixes the models were trained with, each unless already present:
    ``" aesthetic score: 6.5."``, ``" motion score: X."``, ``" camera motion: X."``."""
    if aes is not None and "aesthetic score:" not in prompt:
        prompt = f"{prompt} aesthetic score: {aes:.1f}."
    if flow is not None and "motion score:" not in prompt:
        prompt = f"{prompt} motion score: {flow:.1f}."
    if camera_motion is not None and "camera motion:" not in prompt:
        prompt = f"{prompt} camera motion: {camera_motion}."
    return prompt
