"""The ST-prior estimator ``STIBPrior`` and ImageBind's text tower. Loading is two explicit steps: the
published prior (``from_pretrained``, without the text tower) and ``imagebind_huge.pth``
(``imagebind_ckpt_path``)."""

from __future__ import annotations

from typing import Any

from javisdit.models.loading import load_state_dict_checked, read_state_dict, resolve_weights
from javisdit.models.prior.imagebind_text import ImageBindTextTower, load_imagebind_text
from javisdit.models.prior.stib import STIBPrior, STIBPriorConfig, make_prior_config, prior_kwargs
from javisdit.registry import MODELS

__all__ = ["ImageBindTextTower", "STIBPrior", "STIBPriorConfig", "build_stib_prior", "load_prior_weights"]

_VA_ENCODER = ("video_embedder.", "audio_embedder.", "va_spatial_encoder.", "va_temporal_encoder.", "discriminator.")


def load_prior_weights(model: STIBPrior, source: str, config_key: str = "prior_encoder.from_pretrained") -> None:
    """Load a trained prior (hub id, folder or file) strictly, except for two documented gaps: the
    ImageBind text tower (loaded separately) and, for a model without them, the stage-2 encoders."""
    state = read_state_dict(resolve_weights(source, config_key=config_key))
    ignore = ("text_encoder.",) + (() if model.config.encode_va else _VA_ENCODER)
    load_state_dict_checked(model, state, source=str(source), allow_missing=("text_encoder.",),
                            ignore_unexpected=ignore)


def build_stib_prior(from_pretrained: str | None = None, imagebind_ckpt_path: str | None = None,
                     **kwargs: Any) -> STIBPrior:
    """Build the prior from the original's kwargs, then (each only when given) load its weights and
    the ImageBind text tower."""
    model = STIBPrior(make_prior_config(**kwargs))
    if from_pretrained is not None:
        load_prior_weights(model, from_pretrained)
    if imagebind_ckpt_path is not None:
        load_imagebind_text(model.text_encoder, imagebind_ckpt_path)
    return model


build_stib_prior.accepted_kwargs = prior_kwargs() | {"from_pretrained", "imagebind_ckpt_path"}
MODELS.register_module(name="STIBPrior", module=build_stib_prior)
