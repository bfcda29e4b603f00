"""Stage-2 objective of the ST-prior estimator (MODEL.md §4.4).

For each mode (spatial, temporal), the prior's sampled tokens ``P`` [B, 32, C] are the anchor, the
video-audio embedding of the true pair is the positive and the embeddings of the asynchronous pairs
(true video + negative audio, negative video + true audio) are the negatives; ``embed`` stacks them
[B, X, 32, C] with the positive first. Per mode: a token hinge on cosine similarities, a
discriminator's binary cross-entropy, the MSE of the prior to the positive, and a margin pushing the
negatives away from the positive (all weights 1); plus a small KL term on the prior's Gaussian.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

import torch
import torch.nn.functional as F

from javisdit.models.prior.stib import STIBPrior
from javisdit.models.prior.va_encoder import AttentionDiscriminator

MODES = ("spatial", "temporal")


def contrastive_terms(embed: torch.Tensor, prior: torch.Tensor,
                      discriminator: AttentionDiscriminator) -> dict[str, torch.Tensor]:
    """The four loss terms of one mode.

    Args:
        embed: [B, X, K, C], positive pair first, then the X-1 negatives.
        prior: [B, K, C] the prior's (sampled) tokens.
        discriminator: scores (prior tokens ‖ pair tokens) sequences.
    """
    B, X, K, C = embed.shape
    sim = F.cosine_similarity(embed, prior[:, None], dim=-1)  # [B, X, K]
    hinge = 0.5 * (F.relu(1 - sim[:, 0]).mean() + F.relu(1 + sim[:, 1:]).mean())
    pairs = torch.cat([prior[:, None].expand(B, X, K, C), embed], dim=2).reshape(B * X, 2 * K, C)
    labels = torch.zeros(B, X, device=embed.device, dtype=embed.dtype)
    labels[:, 0] = 1
    disc = F.binary_cross_entropy_with_logits(discriminator(pairs).view(B, X), labels)
    mse = F.mse_loss(prior, embed[:, 0])
    margin = F.relu(F.cosine_similarity(embed[:, :1], embed[:, 1:], dim=-1) + 1).mean()
    return {"hinge": hinge, "disc": disc, "mse": mse, "va": margin}


def gaussian_kl(mean: torch.Tensor, logvar: torch.Tensor) -> torch.Tensor:
    """KL(N(mean, exp(logvar)) || N(0, 1)) summed over tokens and channels, averaged over the batch."""
    kl = 0.5 * (mean.pow(2) + logvar.exp() - 1.0 - logvar)
    return kl.flatten(1).sum(dim=1).mean()


def _check_latents(model: STIBPrior, video, audio, neg_videos, neg_audios) -> None:
    cfg = model.config
    if video.dim() != 5 or video.shape[1] != cfg.video_in_channel:
        raise ValueError(f"video must be [B, {cfg.video_in_channel}, T, H, W], got {list(video.shape)}")
    pa, pm = cfg.audio_patch_size
    if audio.dim() != 4 or audio.shape[1] != cfg.audio_in_channel or audio.shape[2] % pa or audio.shape[3] % pm:
        raise ValueError(f"audio must be [B, {cfg.audio_in_channel}, Ta, M] with Ta, M multiples of "
                         f"{cfg.audio_patch_size}, got {list(audio.shape)}")
    if audio.shape[0] != video.shape[0]:
        raise ValueError(f"audio has batch {audio.shape[0]}, video {video.shape[0]}")
    for kind, negatives, positive in (("neg_videos", neg_videos, video), ("neg_audios", neg_audios, audio)):
        for mode in MODES:
            if mode not in negatives:
                raise ValueError(f"{kind} needs a {mode!r} entry")
            neg = negatives[mode]
            if neg.dim() != positive.dim() + 1 or neg.shape[0] != positive.shape[0] or neg.shape[2:] != positive.shape[1:]:
                raise ValueError(f"{kind}[{mode!r}] must be [B, N, {', '.join(map(str, positive.shape[1:]))}] "
                                 f"(B = {positive.shape[0]}), got {list(neg.shape)}")


def prior_loss(
    model: STIBPrior,
    text: Sequence[str] | torch.Tensor,
    video: torch.Tensor,
    audio: torch.Tensor,
    neg_videos: Mapping[str, torch.Tensor],
    neg_audios: Mapping[str, torch.Tensor],
    frame_height: float,
    frame_width: float,
    generator: torch.Generator | Sequence[torch.Generator] | None = None,
) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
    """The stage-2 loss of a batch.

    Args:
        text: captions (or ImageBind hidden states) of the B clips.
        video: [B, 4, T, H, W] and audio: [B, 8, Ta, M] latents of the synchronised pairs.
        neg_videos, neg_audios: ``{"spatial": [B, N, ...], "temporal": [B, N, ...]}`` asynchronous
            versions of the same clips (N per kind).
        frame_height, frame_width: pixel size of the clips (scale of the video positions).
        generator: random source of the prior's Gaussian sample (a generator or one per clip).

    Returns:
        The total and every term by name (``spatial_hinge``, ..., ``temporal_va``, ``kl``).
    """
    if not model.config.encode_va:
        raise ValueError("the stage-2 loss needs the video-audio encoders: build STIBPrior with encode_va=True")
    if not model.config.apply_sampling:
        raise ValueError("the stage-2 loss needs apply_sampling=True (it regularises the prior's Gaussian)")
    _check_latents(model, video, audio, neg_videos, neg_audios)
    B = video.shape[0]
    prior = model(text, deterministic=False, generator=generator)
    terms: dict[str, torch.Tensor] = {}
    total = torch.zeros((), device=video.device)
    for mode in MODES:
        nv, na = neg_videos[mode], neg_audios[mode]
        videos = torch.cat([video[:, None], nv], dim=1)  # [B, 1 + Nv, ...]: positive, negatives
        audios = torch.cat([audio[:, None], na], dim=1)
        v_tok = model.video_tokens(videos.flatten(0, 1), frame_height, frame_width)
        a_tok = model.audio_tokens(audios.flatten(0, 1))
        v_tok = v_tok.view(B, videos.shape[1], *v_tok.shape[1:])
        a_tok = a_tok.view(B, audios.shape[1], *a_tok.shape[1:])
        # pairs: (V, A), (V, A-) for each audio negative, (V-, A) for each video negative
        pair_v = torch.cat([v_tok[:, :1].expand(-1, 1 + na.shape[1], -1, -1, -1), v_tok[:, 1:]], dim=1)
        pair_a = torch.cat([a_tok, a_tok[:, :1].expand(-1, nv.shape[1], -1, -1, -1)], dim=1)
        X = pair_v.shape[1]
        merge = model.spatial_embedding if mode == "spatial" else model.temporal_embedding
        embed = merge(pair_v.flatten(0, 1), pair_a.flatten(0, 1)).view(B, X, -1, model.config.out_dim)
        for name, value in contrastive_terms(embed, prior[f"{mode}_prior"], model.discriminator).items():
            terms[f"{mode}_{name}"] = value
            total = total + value
    terms["kl"] = gaussian_kl(prior["mean"], prior["logvar"])
    total = total + model.config.kl_weight * terms["kl"]
    return total, terms
