"""STIBPrior: JavisDiT's spatio-temporal prior estimator (arXiv 2503.23377 §3.3).

A caption's ImageBind hidden states [B, 77, 1024] go through a small transformer encoder-decoder whose
decoder queries are 32 learned spatial + 32 learned temporal tokens; each output token is a diagonal
Gaussian over 128 channels, sampled (or its mean taken) to give ``spatial_prior`` [B, 32, 128] and
``temporal_prior`` [B, 32, 128] for the DiT's ST-prior cross-attention. Stage 2 trains it
contrastively against video-audio embeddings of synchronised and asynchronous pairs (``losses.py``).
"""

from __future__ import annotations

import dataclasses
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import torch
from torch import nn

from javisdit.errors import ConfigError
from javisdit.models.prior.imagebind_text import TEXT_TOWER_PRESETS, ImageBindTextTower
from javisdit.models.prior.tokenizer import ImageBindTokenizer
from javisdit.models.prior.va_encoder import VAEncoderMixin
from javisdit.utils.seed import randn


@dataclass
class STIBPriorConfig:
    text_tower: str = "huge"  # ImageBind text tower preset; the prior reads its hidden states
    spatial_token_num: int = 32
    temporal_token_num: int = 32
    hidden_size: int = 512
    out_dim: int = 128
    nhead: int = 4
    num_encoder_layers: int = 4
    num_decoder_layers: int = 4
    feedforward_scale: int = 4
    dropout: float = 0.0
    apply_sampling: bool = True
    deterministic: bool = False  # take the Gaussian's mean instead of a sample (the original samples)
    kl_weight: float = 1e-6
    # stage-2 video-audio encoders
    encode_va: bool = False
    video_in_channel: int = 4
    video_patch_size: tuple[int, int, int] = (1, 2, 2)
    video_input_sq_size: int = 512
    audio_in_channel: int = 8
    audio_patch_size: tuple[int, int] = (2, 2)
    va_num_heads: int = 4
    va_mlp_ratio: float = 4.0
    qk_norm: bool = True
    enable_layernorm_kernel: bool = False  # the stage-2 video-audio encoders' LayerNorms

    @property
    def text_emb_dim(self) -> int:
        return TEXT_TOWER_PRESETS[self.text_tower]["width"]

    @property
    def num_tokens(self) -> int:
        return self.spatial_token_num + self.temporal_token_num


_FIXED = dict(va_drop_path=0.0, pred_onset=False)


def prior_kwargs() -> frozenset[str]:
    """Every kwarg ``make_prior_config`` takes (the config's fields and the original's fixed extras)."""
    return frozenset(f.name for f in dataclasses.fields(STIBPriorConfig)) | frozenset(_FIXED) | {"text_emb_dim"}


def make_prior_config(**kwargs: Any) -> STIBPriorConfig:
    """A validated config from the original's kwargs.

    Raises:
        ConfigError: an unknown or unsupported kwarg.
    """
    fields = {f.name for f in dataclasses.fields(STIBPriorConfig)}
    values = {}
    for key, value in kwargs.items():
        if key in fields:
            values[key] = tuple(value) if key.endswith("patch_size") else value
        elif key in _FIXED:
            if value != _FIXED[key]:
                raise ConfigError(f"STIBPrior: {key}={value!r} is not supported (only {_FIXED[key]!r})")
        elif key != "text_emb_dim":  # always the text tower's width
            raise ConfigError(f"STIBPrior: unknown argument {key!r}; valid: {', '.join(sorted(fields))}")
    config = STIBPriorConfig(**values)
    if config.text_tower not in TEXT_TOWER_PRESETS:
        raise ConfigError(f"STIBPrior: unknown text_tower {config.text_tower!r}; valid: {', '.join(TEXT_TOWER_PRESETS)}")
    if "text_emb_dim" in kwargs and kwargs["text_emb_dim"] != config.text_emb_dim:
        raise ConfigError(f"STIBPrior: text_emb_dim {kwargs['text_emb_dim']} must equal the ImageBind text "
                          f"tower's width {config.text_emb_dim}")
    return config


class STIBPrior(VAEncoderMixin, nn.Module):
    def __init__(self, config: STIBPriorConfig):
        super().__init__()
        self.config = config
        d = config.hidden_size
        self.spatial_query_emb = nn.Parameter(torch.randn(1, config.spatial_token_num, d))
        self.temporal_query_emb = nn.Parameter(torch.randn(1, config.temporal_token_num, d))
        self.in_proj = nn.Linear(config.text_emb_dim, d)
        layer = dict(d_model=d, nhead=config.nhead, dim_feedforward=d * config.feedforward_scale,
                     dropout=config.dropout, activation=nn.GELU(approximate="tanh"), batch_first=True, norm_first=True)
        self.prior_extractor = nn.Transformer(
            d_model=d, nhead=config.nhead, batch_first=True,
            custom_encoder=nn.TransformerEncoder(nn.TransformerEncoderLayer(**layer), config.num_encoder_layers,
                                                 norm=nn.LayerNorm(d), enable_nested_tensor=False),
            custom_decoder=nn.TransformerDecoder(nn.TransformerDecoderLayer(**layer), config.num_decoder_layers,
                                                 norm=nn.LayerNorm(d)),
        )
        self.out_proj = nn.Linear(d, config.out_dim * (2 if config.apply_sampling else 1))
        if config.encode_va:
            self._build_va_encoder(
                config.out_dim, config.spatial_token_num, config.temporal_token_num, config.video_in_channel,
                config.video_patch_size, config.video_input_sq_size, config.audio_in_channel,
                config.audio_patch_size, config.va_num_heads, config.va_mlp_ratio, config.qk_norm,
                config.enable_layernorm_kernel,
            )
        self.text_encoder = ImageBindTextTower.from_preset(config.text_tower)
        self.text_encoder.requires_grad_(False).eval()
        self.tokenizer = ImageBindTokenizer()

    def train(self, mode: bool = True) -> STIBPrior:
        super().train(mode)
        self.text_encoder.eval()  # frozen
        return self

    def prior_state_dict(self) -> dict[str, torch.Tensor]:
        """The prior's own weights, without the (separately published) ImageBind text tower."""
        return {k: v for k, v in self.state_dict().items() if not k.startswith("text_encoder.")}

    @torch.no_grad()
    def encode_text(self, prompts: Sequence[str]) -> torch.Tensor:
        """Captions -> ImageBind hidden states [B, 77, D] (the frozen tower, no padding mask)."""
        device = self.in_proj.weight.device
        tokens = self.tokenizer(list(prompts)).to(device)
        return self.text_encoder(tokens)

    def forward(
        self,
        text: Sequence[str] | torch.Tensor,
        deterministic: bool | None = None,
        generator: torch.Generator | Sequence[torch.Generator] | None = None,
    ) -> dict[str, torch.Tensor]:
        """Estimate the ST-prior of captions.

        Args:
            text: a list of captions, or their ImageBind hidden states [B, 77, D].
            deterministic: use the Gaussian's mean (default: the config's ``deterministic``).
            generator: random source of the Gaussian sample: a generator on the model's device, or a
                list of CPU generators, one per caption.

        Returns:
            ``spatial_prior`` [B, Ns, C] and ``temporal_prior`` [B, Nt, C]; with sampling also the
            Gaussian's ``mean`` and ``logvar`` [B, Ns + Nt, C].
        """
        cfg = self.config
        if isinstance(text, torch.Tensor):
            hidden = text
            if hidden.dim() != 3 or hidden.shape[-1] != cfg.text_emb_dim:
                raise ValueError(f"text hidden states must be [B, L, {cfg.text_emb_dim}], got {list(hidden.shape)}")
        else:
            if isinstance(text, str):
                text = [text]
            if len(text) == 0:
                raise ValueError("no prompts given to the ST-prior estimator")
            hidden = self.encode_text(text)
        x = self.in_proj(hidden.to(self.in_proj.weight.dtype))
        queries = torch.cat([self.spatial_query_emb, self.temporal_query_emb], dim=1).expand(x.shape[0], -1, -1)
        out = self.out_proj(self.prior_extractor(src=x, tgt=queries))
        result: dict[str, torch.Tensor] = {}
        if cfg.apply_sampling:
            mean, logvar = out.chunk(2, dim=-1)
            logvar = logvar.clamp(-30.0, 20.0)
            use_mean = cfg.deterministic if deterministic is None else deterministic
            if use_mean:
                out = mean
            else:
                noise = randn(mean.shape, generator, device=mean.device, dtype=mean.dtype)
                out = mean + torch.exp(0.5 * logvar) * noise
            result.update(mean=mean, logvar=logvar)
        spatial, temporal = out.split([cfg.spatial_token_num, cfg.temporal_token_num], dim=1)
        return {"spatial_prior": spatial, "temporal_prior": temporal, **result}

    encode = forward
