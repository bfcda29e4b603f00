"""Sequence parallelism (SP) for VASTDiT3, in inference and training: one sample's video tokens sharded by
frames over the processes of a group, with DeepSpeed-Ulysses-style temporal attention.

The video tower dominates the cost of a JavisDiT step (its T·S tokens against the audio tower's R·M).
A group of P processes computes the same sample: rank r holds latent frames ``[r·Tl, (r+1)·Tl)`` of the
video tokens, T padded to ``Tp = P·Tl`` with frames that temporal attention masks off (as keys) and the
output drops. What works within a frame or from a token to replicated condition tokens -- spatial
attention, text and ST-prior cross-attention, MLPs, modulation, the final layer -- runs on the local
frames with the same math. Three places need the frames of other ranks:

- temporal self-attention (``temporal_attention``): q, k, v [B·S, H, Tl, D] -> all-to-all ->
  [B·S, H/P, Tp, D] (all frames, a share of the heads), attention with RoPE at the global frame
  positions, all-to-all back. When P does not divide H, k and v are all-gathered along the frames instead
  (every rank attends its own frames' queries with all heads: P-1 copies of k and v travel instead of
  (P-1)/P of q, k, v and the output);
- the video-audio block: audio queries attend to every video token, so the video key/value projections
  are all-gathered; the (small) audio branch is computed replicated and stays identical on every rank;
- the output: the final layer's tokens are all-gathered along frames and unpadded.

Under autograd the collectives backpropagate through their adjoints: an all-to-all through the reverse
all-to-all, an all-gather through the sum over the ranks of the gradients of this rank's shard (a
reduce-scatter). Every rank of a group then computes the same, full loss from the gathered output, and
the gradients of the group's ranks add up to P times the gradient of that loss: the world-wide average of
data-parallel training (DDP, ZeRO) therefore gives each group's gradient, averaged over the groups, with
no change to the loss or to the optimizer. ``SequenceParallel.bytes_sent`` counts the payload each
collective leaves this rank with, backward included: (P-1)/P of an all-to-all's input (the
reduce-scatter's too), P-1 copies of an all-gather's shard.

Shape legend: ``B`` batch, ``T`` latent frames (``Tl`` per rank, ``Tp`` padded), ``S`` tokens per
frame, ``C`` hidden size, ``H`` heads of ``D`` channels.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

import torch
import torch.distributed as dist
from torch import nn

from javisdit.errors import ConfigError

if TYPE_CHECKING:  # the model package imports this module: its names are imported where they are used
    from javisdit.models.layers.attention import SelfAttention
    from javisdit.models.layers.rope import RotaryEmbedding


@dataclass
class SequenceParallel:
    """One process's place in its SP group, and the group's collectives.

    Attributes:
        group: the process group of the P ranks that share a sample (None: the default group).
        rank: this process's rank in the group; it holds the r-th block of frames.
        size: P, the number of processes in the group.
        device: where the flags of ``broadcast_flag`` live (the device NCCL communicates on).
        bytes_sent: payload sent by this rank's collectives so far (see the module docstring).
    """

    group: dist.ProcessGroup | None
    rank: int
    size: int
    device: torch.device = field(default_factory=lambda: torch.device("cpu"))
    bytes_sent: int = 0

    @classmethod
    def of(cls, group: dist.ProcessGroup | None = None, device: torch.device | str = "cpu") -> SequenceParallel:
        """The context of this process in ``group`` (default: every process)."""
        return cls(group, dist.get_rank(group), dist.get_world_size(group), torch.device(device))

    def all_to_all(self, x: torch.Tensor, scatter_dim: int, gather_dim: int) -> torch.Tensor:
        """Split ``x`` into P chunks along ``scatter_dim`` and send chunk j to rank j; concatenate the chunks
        received from ranks 0..P-1 along ``gather_dim`` (their order). Differentiable.

        E.g. [N, H, Tl, D] with scatter 1, gather 2 -> [N, H/P, Tp, D]: heads sharded, all frames.
        """
        if torch.is_grad_enabled() and x.requires_grad:
            return _AllToAll.apply(x, self, scatter_dim, gather_dim)
        return self._all_to_all(x, scatter_dim, gather_dim)

    def all_gather(self, x: torch.Tensor, dim: int) -> torch.Tensor:
        """The shards of ranks 0..P-1 concatenated along ``dim`` (every rank gets the same tensor).
        Differentiable: the gradient of this rank's shard is the sum of every rank's gradient of it."""
        if torch.is_grad_enabled() and x.requires_grad:
            return _AllGather.apply(x, self, dim)
        return self._all_gather(x, dim)

    def _exchange(self, x: torch.Tensor, dim: int) -> torch.Tensor:
        """[P, ...]: row j is the j-th of P chunks (along ``dim``) of rank j's ``x``; this rank sent its
        j-th chunk to rank j."""
        if x.shape[dim] % self.size:
            raise ValueError(f"all_to_all: dim {dim} of {list(x.shape)} is not divisible by {self.size}")
        send = torch.stack(x.chunk(self.size, dim=dim))  # [P, ...], contiguous
        recv = torch.empty_like(send)
        dist.all_to_all_single(recv, send, group=self.group)
        self.bytes_sent += send.numel() * send.element_size() * (self.size - 1) // self.size
        return recv

    def _all_to_all(self, x: torch.Tensor, scatter_dim: int, gather_dim: int) -> torch.Tensor:
        return torch.cat(self._exchange(x, scatter_dim).unbind(0), dim=gather_dim)

    def _all_gather(self, x: torch.Tensor, dim: int) -> torch.Tensor:
        x = x.contiguous()
        parts = [torch.empty_like(x) for _ in range(self.size)]
        dist.all_gather(parts, x, group=self.group)
        self.bytes_sent += x.numel() * x.element_size() * (self.size - 1)
        return torch.cat(parts, dim=dim)

    def _reduce_scatter(self, x: torch.Tensor, dim: int) -> torch.Tensor:
        """This rank's chunk (of P along ``dim``) of the sum of ``x`` over the group: the chunks exchanged
        and summed here in rank order (any backend, the same bits on every rank)."""
        return self._exchange(x, dim).sum(0)

    def broadcast_flag(self, flag: bool) -> bool:
        """The group's first rank's ``flag`` on every rank (decisions the whole group must take alike)."""
        value = torch.tensor([int(flag)], device=self.device)
        dist.broadcast(value, dist.get_global_rank(self.group, 0) if self.group is not None else 0, group=self.group)
        return bool(value.item())

    def shard(self, frames: int) -> FrameShard:
        """The layout of one forward's ``frames`` (T) latent frames over the group."""
        return FrameShard(self, frames, -(-frames // self.size))


class _AllToAll(torch.autograd.Function):
    @staticmethod
    def forward(ctx, x: torch.Tensor, sp: SequenceParallel, scatter_dim: int, gather_dim: int) -> torch.Tensor:
        ctx.sp, ctx.dims = sp, (scatter_dim, gather_dim)
        return sp._all_to_all(x, scatter_dim, gather_dim)

    @staticmethod
    def backward(ctx, grad: torch.Tensor):
        scatter_dim, gather_dim = ctx.dims
        return ctx.sp._all_to_all(grad, gather_dim, scatter_dim), None, None, None


class _AllGather(torch.autograd.Function):
    @staticmethod
    def forward(ctx, x: torch.Tensor, sp: SequenceParallel, dim: int) -> torch.Tensor:
        ctx.sp, ctx.dim = sp, dim
        return sp._all_gather(x, dim)

    @staticmethod
    def backward(ctx, grad: torch.Tensor):
        return ctx.sp._reduce_scatter(grad, ctx.dim), None, None


@dataclass(frozen=True)
class FrameShard:
    """Which latent frames this rank holds in one forward: ``[start, start + local)`` of T padded to Tp."""

    sp: SequenceParallel
    frames: int  # T, the real frames
    local: int  # Tl, frames per rank

    @property
    def padded(self) -> int:
        return self.local * self.sp.size

    @property
    def start(self) -> int:
        return self.local * self.sp.rank

    def split(self, x: torch.Tensor | None, dim: int = 1, fill: float | bool = 0) -> torch.Tensor | None:
        """This rank's frames of frame-major ``x`` (e.g. tokens [B, T·S, C] -> [B, Tl·S, C], or a frame mask
        [B, T] -> [B, Tl]); padding frames are filled with ``fill``. None stays None."""
        if x is None:
            return None
        x = x.unflatten(dim, (self.frames, -1))  # dim -> (T, S)
        frame_dim = dim if dim >= 0 else dim - 1
        if self.padded > self.frames:
            pad_shape = list(x.shape)
            pad_shape[frame_dim] = self.padded - self.frames
            x = torch.cat([x, x.new_full(pad_shape, fill)], dim=frame_dim)
        return x.narrow(frame_dim, self.start, self.local).flatten(frame_dim, frame_dim + 1)

    def gather(self, x: torch.Tensor, dim: int = 1) -> torch.Tensor:
        """The inverse of ``split``: every rank's frames of frame-major ``x`` along ``dim``, padding dropped
        ([B, Tl·S, ...] -> [B, T·S, ...])."""
        full = self.sp.all_gather(x, dim).unflatten(dim, (self.padded, -1))
        frame_dim = dim if dim >= 0 else dim - 1
        return full.narrow(frame_dim, 0, self.frames).flatten(frame_dim, frame_dim + 1)

    def key_mask(self, device: torch.device) -> torch.Tensor | None:
        """[1, 1, 1, Tp] True for the real frames (None without padding): temporal attention's key mask."""
        if self.padded == self.frames:
            return None
        return (torch.arange(self.padded, device=device) < self.frames)[None, None, None]


def temporal_attention(attn: SelfAttention, x: torch.Tensor, rope: RotaryEmbedding | None,
                       shard: FrameShard) -> torch.Tensor:
    """``attn(x_all, rope=rope)`` for this rank's frames: what self-attention over the T frames of each
    spatial position gives for the local ones.

    Args:
        attn: a temporal block's attention (its weights are used; its forward is not).
        x: [B·S, Tl, C], this rank's frames of every spatial position.
        rope: rotates queries and keys by their global frame position.
        shard: the frame layout.

    Returns:
        [B·S, Tl, C].
    """
    from javisdit.models.layers.attention import attention

    N, Tl, C = x.shape
    H, D, sp = attn.num_heads, attn.head_dim, shard.sp
    q, k, v = attn.qkv(x).view(N, Tl, 3, H, D).permute(2, 0, 3, 1, 4)  # each [N, H, Tl, D]
    q, k = attn.q_norm(q), attn.k_norm(k)
    if rope is not None:
        q, k = rope(q, shard.start, shard.padded), rope(k, shard.start, shard.padded)
    mask = shard.key_mask(x.device)
    if H % sp.size == 0:  # Ulysses: heads sharded, all frames
        q, k, v = sp.all_to_all(torch.stack((q, k, v)), scatter_dim=2, gather_dim=3).unbind(0)  # [N, H/P, Tp, D]
        out = attention(q, k, v, mask=mask, backend=attn.backend)
        out = sp.all_to_all(out, scatter_dim=2, gather_dim=1)  # [N, H, Tl, D]
    else:  # local queries, every frame's keys and values
        k, v = sp.all_gather(torch.stack((k, v)), dim=3).unbind(0)  # [N, H, Tp, D]
        out = attention(q, k, v, mask=mask, backend=attn.backend)
    return attn.proj(out.transpose(1, 2).reshape(N, Tl, C))


def token_gatherer(shard: FrameShard | None) -> Callable[[torch.Tensor], torch.Tensor] | None:
    """A function gathering every rank's video tokens along dim -2 ([..., Tl·S, E] -> [..., T·S, E]), or
    None without SP; what ``BiCrossAttention`` needs for the audio queries."""
    if shard is None:
        return None
    return lambda x: shard.gather(x, dim=-2)


# ----- set-up ------------------------------------------------------------------------------------------------


def new_groups(size: int, device: torch.device | str = "cpu") -> SequenceParallel:
    """Split the default process group into groups of ``size`` consecutive ranks; this rank's context.

    Collective: every rank must call it at the same point (each group is made by every rank).

    Raises:
        ValueError: ``size`` does not divide the number of processes.
    """
    world, rank = dist.get_world_size(), dist.get_rank()
    if size < 1 or world % size:
        raise ValueError(f"sequence-parallel size {size} does not divide the {world} processes")
    mine = None
    for first in range(0, world, size):
        group = dist.new_group(list(range(first, first + size)))
        if first <= rank < first + size:
            mine = group
    return SequenceParallel(mine, rank % size, size, torch.device(device))


def configured_size(cfg: Mapping, audio_only_run: str) -> int:
    """The config's ``sp_size``, checked before anything is built: above 1 it needs a VASTDiT3 that runs
    video. ``audio_only_run`` names an ``audio_only`` run in the error (e.g. ``audio-only generation``).

    Raises:
        ConfigError: not a positive integer, or a model or run that has no video frames to shard.
    """
    size = int(cfg.get("sp_size", 1))
    if size < 1:
        raise ConfigError(f"sp_size must be a positive integer, got {size}")
    if size > 1:
        model_type = str(cfg["model"]["type"])
        if not model_type.startswith("VASTDiT3-") or cfg.get("audio_only", False):
            what = audio_only_run if cfg.get("audio_only", False) else f"model {model_type}"
            raise ConfigError(f"--sp-size {size}: sequence parallelism shards the video frames of a VASTDiT3; "
                              f"{what} cannot use it")
    return size


def groups_of(size: int, world_size: int, device: torch.device | str = "cpu") -> SequenceParallel | None:
    """This process's SP group of ``size`` (None for 1); collective over every process.

    Raises:
        ConfigError: ``size`` does not divide ``world_size``.
    """
    if size == 1:
        return None
    if world_size % size:
        raise ConfigError(f"--sp-size {size} must divide the number of processes ({world_size})")
    return new_groups(size, device)


def enable_sequence_parallel(model: nn.Module, sp: SequenceParallel | None) -> None:
    """Make ``model`` (a VASTDiT3 with video blocks) shard its video frames over ``sp``'s group in every
    forward; None turns it off. Every rank of the group must hold the same weights and get the same inputs
    (in training: the same batch, noise and timesteps).

    Raises:
        TypeError: the model is not a VASTDiT3 that generates video.
    """
    from javisdit.models.stdit.vastdit3 import VASTDiT3  # the model module imports this one

    if not isinstance(model, VASTDiT3) or not model.has_video_blocks:
        raise TypeError(f"sequence parallelism needs a VASTDiT3 with video blocks, got {type(model).__name__}")
    model.sequence_parallel = sp
