"""The stage-2 objective: each term on hand-built embeddings, and where the gradients go."""

import math

import pytest
import torch
import torch.nn.functional as F

from javisdit.models.prior.losses import contrastive_terms, gaussian_kl, prior_loss
from javisdit.models.prior.stib import STIBPrior, make_prior_config
from javisdit.models.prior.va_encoder import AttentionDiscriminator
from conftest import TINY_PRIOR as TINY


@pytest.fixture
def constant_discriminator():
    disc = AttentionDiscriminator(4, 2)
    with torch.no_grad():
        disc.classifier.weight.zero_()
        disc.classifier.bias.fill_(0.0)  # logit 0 for every pair
    return disc


def _unit(B=2, K=3, C=4, seed=0):
    return F.normalize(torch.randn(B, K, C, generator=torch.Generator().manual_seed(seed)), dim=-1)


def test_perfect_positive_and_opposite_negatives(constant_discriminator):
    prior = _unit()
    embed = torch.stack([prior, -prior, -prior], dim=1)  # [B, 3, K, C]
    terms = contrastive_terms(embed, prior, constant_discriminator)
    assert terms["hinge"].item() == pytest.approx(0.0, abs=1e-6)  # cos 1 to the positive, -1 to negatives
    assert terms["mse"].item() == pytest.approx(0.0, abs=1e-6)
    assert terms["va"].item() == pytest.approx(0.0, abs=1e-6)  # negatives at cos -1 from the positive
    assert terms["disc"].item() == pytest.approx(math.log(2))  # logit 0: BCE log 2 whatever the label


def test_orthogonal_negatives(constant_discriminator):
    prior = torch.zeros(1, 1, 4)
    prior[..., 0] = 1.0
    negative = torch.zeros(1, 1, 4)
    negative[..., 1] = 1.0
    embed = torch.stack([prior * 2, negative], dim=1)  # the positive is parallel but twice as long
    terms = contrastive_terms(embed, prior, constant_discriminator)
    assert terms["hinge"].item() == pytest.approx(0.5 * (0.0 + 1.0))
    assert terms["mse"].item() == pytest.approx(1.0 / 4)  # (2 - 1)^2 in one of 4 channels
    assert terms["va"].item() == pytest.approx(1.0)


def test_discriminator_labels(constant_discriminator):
    with torch.no_grad():
        constant_discriminator.classifier.bias.fill_(2.0)  # says "synchronised" to everything
    prior = _unit(B=1)
    terms = contrastive_terms(torch.stack([prior, prior, prior], 1), prior, constant_discriminator)
    expected = (math.log1p(math.exp(-2.0)) + 2 * math.log1p(math.exp(2.0))) / 3  # 1 positive, 2 negatives
    assert terms["disc"].item() == pytest.approx(expected, rel=1e-5)


def test_gaussian_kl():
    assert gaussian_kl(torch.zeros(2, 3, 4), torch.zeros(2, 3, 4)).item() == 0.0
    assert gaussian_kl(torch.ones(2, 3, 4), torch.zeros(2, 3, 4)).item() == pytest.approx(0.5 * 12)


def test_prior_loss_gradients():
    torch.manual_seed(0)
    model = STIBPrior(make_prior_config(**TINY, encode_va=True)).train()
    B = 2
    video, audio = torch.randn(B, 4, 4, 8, 8), torch.randn(B, 8, 8, 16)
    neg_v = {m: torch.randn(B, 1, 4, 4, 8, 8) for m in ("spatial", "temporal")}
    neg_a = {m: torch.randn(B, 1, 8, 8, 16) for m in ("spatial", "temporal")}
    total, terms = prior_loss(model, ["a dog barks", "rain"], video, audio, neg_v, neg_a, 64.0, 64.0)
    assert set(terms) == {f"{m}_{t}" for m in ("spatial", "temporal") for t in ("hinge", "disc", "mse", "va")} | {"kl"}
    expected = sum(v for k, v in terms.items() if k != "kl") + 1e-6 * terms["kl"]
    torch.testing.assert_close(total, expected)
    total.backward()
    for prefix in ("spatial_query_emb", "in_proj", "prior_extractor", "out_proj", "video_embedder", "audio_embedder",
                   "va_spatial_encoder", "va_temporal_encoder", "discriminator"):
        grads = [p.grad for n, p in model.named_parameters() if n.startswith(prefix)]
        assert grads and all(g is not None and g.abs().sum() > 0 for g in grads), prefix
    assert all(p.grad is None for p in model.text_encoder.parameters())
    assert not model.text_encoder.training  # stays in eval mode under model.train()


def test_prior_loss_needs_the_va_encoders():
    model = STIBPrior(make_prior_config(**TINY))
    with pytest.raises(ValueError, match="build STIBPrior with encode_va=True"):
        prior_loss(model, ["x"], torch.zeros(1, 4, 4, 8, 8), torch.zeros(1, 8, 8, 16), {}, {}, 64, 64)


def test_prior_loss_shape_errors():
    model = STIBPrior(make_prior_config(**TINY, encode_va=True))
    video, audio = torch.zeros(1, 4, 4, 8, 8), torch.zeros(1, 8, 8, 16)
    neg_v = {m: torch.zeros(1, 1, 4, 4, 8, 8) for m in ("spatial", "temporal")}
    neg_a = {m: torch.zeros(1, 1, 8, 8, 16) for m in ("spatial", "temporal")}
    with pytest.raises(ValueError, match=r"video must be \[B, 4, T, H, W\], got \[1, 3, 4, 8, 8\]"):
        prior_loss(model, ["x"], torch.zeros(1, 3, 4, 8, 8), audio, neg_v, neg_a, 64, 64)
    with pytest.raises(ValueError, match=r"audio must be \[B, 8, Ta, M\] with Ta, M multiples of \(2, 2\)"):
        prior_loss(model, ["x"], video, torch.zeros(1, 8, 7, 16), neg_v, neg_a, 64, 64)
    with pytest.raises(ValueError, match=r"neg_audios\['temporal'\] must be \[B, N, 8, 8, 16\]"):
        prior_loss(model, ["x"], video, audio, neg_v, {**neg_a, "temporal": torch.zeros(1, 8, 8, 16)}, 64, 64)
