"""Training: the three JavisDiT stages (``scripts/train.py`` for stages 1 and 3, ``scripts/train_prior.py``
for stage 2) and the autoencoders before them (``scripts/train_vae.py``) over one loop, and the feature
extraction that feeds the ``_feat`` configs.

Imports are lazy so that ``javisdit.training.masks`` and friends load without the booster.
"""

from __future__ import annotations

from typing import Any


def run(cfg: Any):
    """Stage 1 (audio branch) or stage 3 (synchronisation modules), chosen by the config."""
    from javisdit.training.loop import run_diffusion

    return run_diffusion(cfg)


def run_prior(cfg: Any):
    """Stage 2: the ST-prior estimator's contrastive objective."""
    from javisdit.training.loop import run_prior_training

    return run_prior_training(cfg)


def run_autoencoder(cfg: Any):
    """The video or audio autoencoder (``cfg.autoencoder``), trained from scratch before the stages."""
    from javisdit.training.autoencoder import AutoencoderStage
    from javisdit.training.loop import train

    return train(cfg, AutoencoderStage(cfg))
