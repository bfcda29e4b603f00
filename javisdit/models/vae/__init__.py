"""The frozen autoencoders: ``OpenSoraVAE_V1_2`` (video) and ``AudioLDM2`` (audio + vocoder)."""

from __future__ import annotations

import torch

from javisdit.models import geometry
from javisdit.models.loading import load_state_dict_checked, read_state_dict, resolve_weights
from javisdit.models.vae.audio import AudioLDM2, build_audioldm2
from javisdit.models.vae.video import OpenSoraVideoVAE
from javisdit.registry import MODELS

__all__ = ["AudioLDM2", "OpenSoraVideoVAE", "build_audioldm2", "build_opensora_vae"]


def build_opensora_vae(from_pretrained: str | None = None, micro_frame_size: int = geometry.VIDEO_CHUNK_FRAMES,
                       micro_batch_size: int = 4, preset: str = "v1.2", sample_posterior: bool = True) -> OpenSoraVideoVAE:
    """The video VAE; ``from_pretrained`` (hub id, folder or file) loads its weights strictly, and
    None builds the architecture without weights."""
    kwargs = dict(preset=preset, micro_frame_size=micro_frame_size, micro_batch_size=micro_batch_size,
                  sample_posterior=sample_posterior)
    if from_pretrained is None:
        model = OpenSoraVideoVAE(**kwargs)
    else:
        path = resolve_weights(from_pretrained, config_key="vae.from_pretrained")
        with torch.device("meta"):
            model = OpenSoraVideoVAE(**kwargs)
        load_state_dict_checked(model, read_state_dict(path), source=str(from_pretrained), assign=True)
    return model.requires_grad_(False).eval()


MODELS.register_module(name="OpenSoraVAE_V1_2", module=build_opensora_vae)
MODELS.register_module(name="AudioLDM2", module=build_audioldm2)
