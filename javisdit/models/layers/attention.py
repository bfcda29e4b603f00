"""One attention function for the whole package, and the attention layers of the DiT blocks.

``attention()`` runs ``torch.nn.functional.scaled_dot_product_attention`` by default. With the
``flash`` backend (``enable_flash_attn``), flash-attn -- or xformers when flash-attn is missing -- is
used where it can run: on CUDA, in half precision, without a mask; ``eager``
is an explicit softmax(QK^T)V with an fp32 softmax (the original's fallback path, kept for parity
checks and benchmarks). Shapes: ``B`` batch, ``H`` heads, ``N`` queries, ``L`` keys, ``D`` head dim.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from dataclasses import dataclass
from functools import cached_property, lru_cache

import torch
import torch.nn.functional as F
from torch import nn

from javisdit.models.layers.norms import RMSNorm
from javisdit.models.layers.rope import RotaryEmbedding, apply_rope_pairs, rope_angles_1d

logger = logging.getLogger(__name__)

BACKENDS = ("sdpa", "flash", "eager")


@lru_cache(maxsize=1)
def _flash_attn_func():
    try:
        from flash_attn import flash_attn_func
    except ImportError:
        return None
    return flash_attn_func


@lru_cache(maxsize=1)
def _xformers_attention():
    try:
        from xformers.ops import memory_efficient_attention
    except ImportError:
        return None
    return memory_efficient_attention


@lru_cache(maxsize=None)
def _log_backend_once(requested: str, used: str) -> None:
    if requested != used:
        logger.info("attention: %s requested, using %s", requested, used)
    else:
        logger.info("attention: using %s", used)


def flash_available() -> bool:
    """Whether the flash-attn package can be imported."""
    return _flash_attn_func() is not None


def attention(
    q: torch.Tensor,
    k: torch.Tensor,
    v: torch.Tensor,
    mask: torch.Tensor | None = None,
    backend: str = "sdpa",
) -> torch.Tensor:
    """Scaled dot-product attention with scale ``D ** -0.5``.

    Args:
        q: [B, H, N, D]; k, v: [B, H, L, D].
        mask: optional bool mask broadcastable to [B, H, N, L], True where a query may attend.
        backend: ``sdpa`` (default), ``flash`` (falls back to sdpa where it cannot run) or ``eager``.

    Returns:
        [B, H, N, D] in the dtype of ``q``.
    """
    if backend == "flash":
        if mask is None and q.is_cuda and q.dtype in (torch.float16, torch.bfloat16):
            kernel, name = _flash_attn_func(), "flash-attn"
            if kernel is None:
                kernel, name = _xformers_attention(), "xformers"
            if kernel is not None:  # both take [B, N, H, D]
                _log_backend_once("flash", name)
                return kernel(q.transpose(1, 2), k.transpose(1, 2), v.transpose(1, 2)).transpose(1, 2)
        _log_backend_once("flash", "sdpa")
        backend = "sdpa"
    if backend == "sdpa":
        return F.scaled_dot_product_attention(q, k, v, attn_mask=mask)
    if backend == "eager":
        scores = (q * q.shape[-1] ** -0.5) @ k.transpose(-2, -1)
        if mask is not None:
            scores = scores.masked_fill(~mask, float("-inf"))
        return scores.float().softmax(dim=-1).to(q.dtype) @ v
    raise ValueError(f"unknown attention backend {backend!r}; valid: {', '.join(BACKENDS)}")


class SelfAttention(nn.Module):
    """Multi-head self-attention with optional per-head qk-RMSNorm, then RoPE."""

    def __init__(self, dim: int, num_heads: int, qk_norm: bool = False, backend: str = "sdpa"):
        super().__init__()
        if dim % num_heads:
            raise ValueError(f"hidden size {dim} is not divisible by {num_heads} heads")
        self.num_heads = num_heads
        self.head_dim = dim // num_heads
        self.qkv = nn.Linear(dim, 3 * dim)
        self.q_norm = RMSNorm(self.head_dim) if qk_norm else nn.Identity()
        self.k_norm = RMSNorm(self.head_dim) if qk_norm else nn.Identity()
        self.proj = nn.Linear(dim, dim)
        self.backend = backend

    def forward(self, x: torch.Tensor, rope: RotaryEmbedding | None = None) -> torch.Tensor:
        """x: [B, N, C] -> [B, N, C]; ``rope`` rotates queries and keys along N."""
        B, N, C = x.shape
        q, k, v = self.qkv(x).view(B, N, 3, self.num_heads, self.head_dim).permute(2, 0, 3, 1, 4)
        q, k = self.q_norm(q), self.k_norm(k)
        if rope is not None:
            q, k = rope(q), rope(k)
        out = attention(q, k, v, backend=self.backend)
        return self.proj(out.transpose(1, 2).reshape(B, N, C))


class CrossAttention(nn.Module):
    """Multi-head cross-attention from tokens to a condition sequence (text or prior tokens).

    With ``share_across_batch`` every query attends to the condition tokens of *all* samples of the
    batch, which is what the original's un-masked packed attention did for the ST-prior blocks.
    """

    def __init__(self, dim: int, num_heads: int):
        super().__init__()
        if dim % num_heads:
            raise ValueError(f"hidden size {dim} is not divisible by {num_heads} heads")
        self.num_heads = num_heads
        self.head_dim = dim // num_heads
        self.q_linear = nn.Linear(dim, dim)
        self.kv_linear = nn.Linear(dim, 2 * dim)
        self.proj = nn.Linear(dim, dim)

    def forward(
        self,
        x: torch.Tensor,
        cond: torch.Tensor,
        cond_mask: torch.Tensor | None = None,
        share_across_batch: bool = False,
    ) -> torch.Tensor:
        """x: [B, N, C]; cond: [B, L, C]; cond_mask: [B, L] bool (True = a real token) -> [B, N, C]."""
        B, N, C = x.shape
        L = cond.shape[1]
        q = self.q_linear(x).view(B, N, self.num_heads, self.head_dim).transpose(1, 2)
        k, v = self.kv_linear(cond).view(B, L, 2, self.num_heads, self.head_dim).permute(2, 0, 3, 1, 4)
        mask = None
        if share_across_batch:
            if cond_mask is not None:
                raise ValueError("a condition mask cannot be combined with batch-shared condition tokens")
            # [B, H, L, D] -> [1, H, B*L, D], seen by every sample
            k = k.transpose(0, 1).reshape(1, self.num_heads, B * L, self.head_dim).expand(B, -1, -1, -1)
            v = v.transpose(0, 1).reshape(1, self.num_heads, B * L, self.head_dim).expand(B, -1, -1, -1)
        elif cond_mask is not None:
            mask = cond_mask[:, None, None, :]
        out = attention(q, k, v, mask=mask)
        return self.proj(out.transpose(1, 2).reshape(B, N, C))


@dataclass(frozen=True)
class TokenTimes:
    """Where the tokens of a ``BiCrossAttention`` sit on one clock, and what the attention makes of it; built
    once per forward and shared by every block, which reuse its angles and masks.

    ``m1``: [L1] times of the modality-1 tokens this process holds; ``m1_all``: [L1'] those of all of them
    (the same tensor without sequence parallelism); ``m2``: [L2] those of modality 2; ``head_dim``: the
    attention's. ``rope``: rotate the queries and keys by their times (RoPE, ``rope_angles_1d``), so that
    the shared similarity depends on the relative time. ``window``: a token attends only to the other set's
    tokens at most this far away.
    """

    m1: torch.Tensor
    m1_all: torch.Tensor
    m2: torch.Tensor
    head_dim: int
    rope: bool = False
    window: float | None = None

    @cached_property
    def angles(self) -> tuple[torch.Tensor, torch.Tensor] | None:
        """RoPE angles ([L1, D/2], [L2, D/2]), or None without ``rope``."""
        if not self.rope:
            return None
        return rope_angles_1d(self.m1, self.head_dim), rope_angles_1d(self.m2, self.head_dim)

    @cached_property
    def masks(self) -> tuple[torch.Tensor | None, torch.Tensor | None]:
        """Who may attend to whom: ([L1, L2] for the modality-1 queries, [L2, L1'] for modality 2), or
        (None, None) without a window."""
        if self.window is None:
            return None, None
        return ((self.m1[:, None] - self.m2[None]).abs() <= self.window,
                (self.m2[:, None] - self.m1_all[None]).abs() <= self.window)


class BiCrossAttention(nn.Module):
    """Bidirectional cross-attention between two token sets that share one similarity matrix.

    Modality 1 queries modality 2 with ``m1_proj``/``m2_proj`` as query/key; modality 2 queries
    modality 1 with the same projections swapped, so the two softmaxes run along opposite axes of
    the same scores.
    """

    def __init__(self, m1_dim: int, m2_dim: int, embed_dim: int, num_heads: int):
        super().__init__()
        if embed_dim % num_heads:
            raise ValueError(f"embedding size {embed_dim} is not divisible by {num_heads} heads")
        self.num_heads = num_heads
        self.head_dim = embed_dim // num_heads
        self.m1_proj = nn.Linear(m1_dim, embed_dim)
        self.m2_proj = nn.Linear(m2_dim, embed_dim)
        self.values_m1_proj = nn.Linear(m1_dim, embed_dim)
        self.values_m2_proj = nn.Linear(m2_dim, embed_dim)
        self.out_m1_proj = nn.Linear(embed_dim, m1_dim)
        self.out_m2_proj = nn.Linear(embed_dim, m2_dim)
        for layer in (self.m1_proj, self.m2_proj, self.values_m1_proj, self.values_m2_proj,
                      self.out_m1_proj, self.out_m2_proj):
            nn.init.xavier_uniform_(layer.weight)
            nn.init.zeros_(layer.bias)

    def _heads(self, x: torch.Tensor) -> torch.Tensor:
        B, L, _ = x.shape
        return x.view(B, L, self.num_heads, self.head_dim).transpose(1, 2)

    def _merge(self, x: torch.Tensor) -> torch.Tensor:
        B, _, L, _ = x.shape
        return x.transpose(1, 2).reshape(B, L, self.num_heads * self.head_dim)

    def forward(self, m1: torch.Tensor, m2: torch.Tensor,
                gather_m1: Callable[[torch.Tensor], torch.Tensor] | None = None,
                times: TokenTimes | None = None) -> tuple[torch.Tensor, torch.Tensor]:
        """m1: [B, L1, C1], m2: [B, L2, C2] -> updates of the same shapes.

        ``gather_m1`` (sequence parallelism): m1 is one shard of modality 1's tokens, and this maps its
        projections [..., L1_shard, E] to those of all its tokens [..., L1, E] (along dim -2), so that
        modality 2's update sees every token of modality 1.
        ``times``: the tokens' times, used as it says (RoPE, a window); None: every token of one set sees
        every token of the other alike (the original).
        """
        q1, k2 = self._heads(self.m1_proj(m1)), self._heads(self.m2_proj(m2))
        if times is not None and times.angles is not None:
            q1, k2 = apply_rope_pairs(q1, times.angles[0]), apply_rope_pairs(k2, times.angles[1])
        mask1, mask2 = times.masks if times is not None else (None, None)
        v1, v2 = self._heads(self.values_m1_proj(m1)), self._heads(self.values_m2_proj(m2))
        out1 = attention(q1, k2, v2, mask1)
        if gather_m1 is not None:
            q1, v1 = gather_m1(torch.stack((q1, v1))).unbind(0)
        out2 = attention(k2, q1, v1, mask2)
        return self.out_m1_proj(self._merge(out1)), self.out_m2_proj(self._merge(out2))
