"""STDiT3: Open-Sora 1.2's spatial-temporal video DiT, the video tower JavisDiT starts from.

Each depth runs a spatial block (attention within a frame) and a temporal block (attention across
frames, with RoPE). Shape legend: ``B`` batch, video latent [B, Cin, Tx, Hx, Wx]; tokens [B, T·S, C]
with ``T`` frames and ``S = H·W`` patches per frame after patching (odd sizes padded).
"""

from __future__ import annotations

import math
from collections.abc import Mapping

import torch
from torch import nn
from torch.utils.checkpoint import checkpoint

from javisdit.models.layers.embeddings import (
    CaptionEmbedder,
    PatchEmbed3D,
    SizeEmbedder,
    TimestepEmbedder,
    sincos_2d,
)
from javisdit.models.layers.memo import ConditionMemo
from javisdit.models.layers.rope import RotaryEmbedding, rope_frequencies
from javisdit.models.stdit.blocks import FinalLayer, STDiT3Block
from javisdit.models.stdit.config import STDiT3Config, config_dict


def check_shape(name: str, tensor: torch.Tensor | None, expected: tuple, described: str) -> None:
    """Raise a ValueError naming ``name`` unless ``tensor`` matches ``expected`` (None entries are free)."""
    if tensor is None:
        raise ValueError(f"{name} is required: expected {described}")
    shape = tuple(tensor.shape)
    if len(shape) != len(expected) or any(e is not None and e != s for e, s in zip(expected, shape)):
        raise ValueError(f"{name} must be {described}, got {list(shape)}")


class STDiT3(nn.Module):
    def __init__(self, config: STDiT3Config, video_blocks: bool = True):
        super().__init__()
        self.config = config
        C = config.hidden_size
        self.attn_backend = "flash" if config.enable_flash_attn else "sdpa"
        self.rope = RotaryEmbedding(config.head_dim)
        self.x_embedder = PatchEmbed3D(config.patch_size, config.in_channels, C)
        self.t_embedder = TimestepEmbedder(C)
        self.fps_embedder = SizeEmbedder(C)
        self.t_block = nn.Sequential(nn.SiLU(), nn.Linear(C, 6 * C))
        self.y_embedder = CaptionEmbedder(config.caption_channels, C, config.class_dropout_prob, config.model_max_length)
        if video_blocks:
            self.spatial_blocks = self._dit_blocks(temporal=False)
            self.temporal_blocks = self._dit_blocks(temporal=True)
        self.final_layer = FinalLayer(C, math.prod(config.patch_size), config.out_channels,
                                      layernorm_kernel=config.enable_layernorm_kernel)
        self.grad_checkpointing = False
        self._memo = ConditionMemo()  # the text (and prior) embeddings of a sampling run's steps
        self._init_video_weights()
        self._register_load_state_dict_pre_hook(_fill_derived_keys, with_module=True)

    @property
    def has_video_blocks(self) -> bool:
        return hasattr(self, "spatial_blocks")

    def config_json(self) -> dict:
        """The ``config.json`` written beside saved weights."""
        return {"model_type": type(self).__name__, **config_dict(self.config)}

    def _dit_blocks(self, temporal: bool) -> nn.ModuleList:
        cfg = self.config
        return nn.ModuleList(
            STDiT3Block(cfg.hidden_size, cfg.num_heads, cfg.mlp_ratio, temporal=temporal, qk_norm=cfg.qk_norm,
                        attn_backend=self.attn_backend, layernorm_kernel=cfg.enable_layernorm_kernel)
            for _ in range(cfg.depth)
        )

    # ----- initialisation (training from scratch; loading a checkpoint overwrites all of it) ---------------

    def _init_video_weights(self) -> None:
        video = [self.t_embedder, self.fps_embedder, self.t_block, self.y_embedder, self.final_layer]
        if self.has_video_blocks:
            video += [self.spatial_blocks, self.temporal_blocks]
        for module in video:
            for layer in module.modules():
                if isinstance(layer, nn.Linear):
                    nn.init.xavier_uniform_(layer.weight)
                    nn.init.zeros_(layer.bias)
        nn.init.normal_(self.fps_embedder.mlp[0].weight, std=0.02)
        nn.init.zeros_(self.fps_embedder.mlp[2].weight)
        if self.has_video_blocks:
            for block in self.temporal_blocks:
                zero_output_weights(block.attn.proj, block.cross_attn.proj, block.mlp.fc2)

    def fill_derived_keys(self, state_dict: dict, prefix: str = "") -> None:
        """Add the entries a checkpoint may lack because they are derived: ``rope.freqs``."""
        state_dict.setdefault(prefix + "rope.freqs", rope_frequencies(self.config.head_dim, self.rope.theta))

    # ----- shared pieces of the forward pass ---------------------------------------------------------------

    def _run(self, block: nn.Module, *args, **kwargs):
        if self.grad_checkpointing and self.training and torch.is_grad_enabled():
            return checkpoint(block, *args, use_reentrant=False, **kwargs)
        return block(*args, **kwargs)

    def _embed_time(self, timestep: torch.Tensor, fps: torch.Tensor, B: int, dtype: torch.dtype) -> torch.Tensor:
        """[B] timesteps in [0, 1000] (rounded to the model dtype, as the original) + fps -> [B, C]."""
        return self.t_embedder(timestep.to(dtype)) + self.fps_embedder(fps, B)

    def _embed_text(self, embedder: CaptionEmbedder, y: torch.Tensor, mask: torch.Tensor | None,
                    drop: torch.Tensor | None = None):
        """y [B, 1, L, Cy], mask [B, L] -> text tokens [B, L, C] and a bool key mask (or None). ``drop``
        [B] says which captions become the null caption; None draws it at random when training. Computed
        once per sampling run (``ConditionMemo``)."""
        drop = self.training if drop is None else drop
        if drop is True:  # a random draw: never reused
            tokens = embedder(y, drop=True).squeeze(1)
        else:
            inputs = (y, drop) if isinstance(drop, torch.Tensor) else (y,)
            tokens = self._memo(str(id(embedder)), embedder, inputs, lambda: embedder(y, drop=drop).squeeze(1))
        return tokens, (mask.bool() if mask is not None else None)

    def _video_tokens(self, vx: torch.Tensor, height: torch.Tensor, width: torch.Tensor):
        """Patchify [B, Cin, Tx, Hx, Wx] and add 2-D positions -> ([B, T·S, C], (T, H, W))."""
        pt, ph, pw = self.config.patch_size
        Tx, Hx, Wx = vx.shape[-3:]
        T, H, W = -(-Tx // pt), -(-Hx // ph), -(-Wx // pw)
        tokens = self.x_embedder(vx)
        # Pixel size in the model dtype, as the original read it (854 becomes 856 in bf16).
        h_px, w_px = (float(v.reshape(-1)[0].to(vx.dtype)) for v in (height, width))
        scale = math.sqrt(h_px * w_px) / self.config.input_sq_size
        pos = sincos_2d(H, W, self.config.hidden_size, scale, round(math.sqrt(H * W)), vx.dtype, vx.device)
        B, _, C = tokens.shape
        tokens = (tokens.view(B, T, H * W, C) + pos[:, None]).view(B, T * H * W, C)
        return tokens, (T, H, W)

    def _unpatchify_video(self, x: torch.Tensor, THW: tuple[int, int, int], size: tuple[int, int, int]) -> torch.Tensor:
        """[B, T·H·W, pt·ph·pw·Cout] -> [B, Cout, Tx, Hx, Wx] (patch dims outer, channels inner; cropped)."""
        (T, H, W), (pt, ph, pw) = THW, self.config.patch_size
        B, Cout = x.shape[0], self.config.out_channels
        x = x.view(B, T, H, W, pt, ph, pw, Cout).permute(0, 7, 1, 4, 2, 5, 3, 6)
        x = x.reshape(B, Cout, T * pt, H * ph, W * pw)
        return x[:, :, : size[0], : size[1], : size[2]]

    def _check_video(self, vx: torch.Tensor, x_mask: torch.Tensor | None, name: str = "x") -> None:
        cin = self.config.in_channels
        check_shape(name, vx, (None, cin, None, None, None), f"[B, {cin}, T, H, W]")
        if x_mask is not None:
            check_shape("x_mask", x_mask, (vx.shape[0], vx.shape[2]), f"[B, T] = [{vx.shape[0]}, {vx.shape[2]}]")

    def _check_text(self, y: torch.Tensor, mask: torch.Tensor | None, B: int) -> torch.Tensor | None:
        cy = self.config.caption_channels
        check_shape("y", y, (B, 1, None, cy), f"[B, 1, L, {cy}] with B = {B}")
        if mask is None:
            return None
        if mask.shape[0] != B and mask.dim() == 2 and B % mask.shape[0] == 0:
            mask = mask.repeat(B // mask.shape[0], 1)  # one mask for a CFG-doubled batch
        check_shape("mask", mask, (B, y.shape[2]), f"[B, L] = [{B}, {y.shape[2]}]")
        return mask

    # ----- forward -----------------------------------------------------------------------------------------

    def forward(self, x: torch.Tensor, timestep: torch.Tensor, y: torch.Tensor, mask: torch.Tensor | None = None,
                x_mask: torch.Tensor | None = None, fps: torch.Tensor | None = None,
                height: torch.Tensor | None = None, width: torch.Tensor | None = None,
                condition_drop: Mapping[str, torch.Tensor] | None = None) -> torch.Tensor:
        """Predict [B, Cout, Tx, Hx, Wx] (first ``in_channels`` = velocity) for a video latent x [B, Cin, Tx, Hx, Wx].

        Args:
            timestep: [B] in [0, 1000]. y: [B, 1, L, Cy] text features; mask: [B, L] their validity.
            x_mask: [B, Tx] True for frames to generate, False for clean conditioning frames.
            fps: [B] frame rate; height, width: [B] pixel size of the clip (element 0 sets the
                position-embedding scale).
            condition_drop: ``{"y_embedder": [B] bool}``, the captions replaced by the null caption
                (training); without it they are drawn at random in training mode.
        """
        dtype = self.x_embedder.proj.weight.dtype
        self._check_video(x, x_mask)
        B = x.shape[0]
        mask = self._check_text(y, mask, B)
        for name, value in (("timestep", timestep), ("fps", fps), ("height", height), ("width", width)):
            check_shape(name, value, (None,), "[B]")
        vx = x.to(dtype)
        t = self._embed_time(timestep, fps, B, dtype)
        t_mlp = self.t_block(t)
        t0 = t0_mlp = None
        if x_mask is not None:
            t0 = self._embed_time(torch.zeros_like(timestep), fps, B, dtype)
            t0_mlp = self.t_block(t0)
        y_tokens, y_mask = self._embed_text(self.y_embedder, y.to(dtype), mask,
                                            (condition_drop or {}).get("y_embedder"))
        tokens, THW = self._video_tokens(vx, height, width)
        T = THW[0]
        for spatial, temporal in zip(self.spatial_blocks, self.temporal_blocks):
            tokens = self._run(spatial, tokens, y_tokens, y_mask, t_mlp, T, x_mask, t0_mlp)
            tokens = self._run(temporal, tokens, y_tokens, y_mask, t_mlp, T, x_mask, t0_mlp, rope=self.rope)
        out = self.final_layer(tokens, t, T, x_mask, t0)
        return self._unpatchify_video(out, THW, tuple(vx.shape[-3:])).float()

    @torch.no_grad()
    def cache_signal(self, x: torch.Tensor, timestep: torch.Tensor, fps: torch.Tensor | None = None,
                     height: torch.Tensor | None = None, width: torch.Tensor | None = None, **kwargs) -> torch.Tensor:
        """The first spatial block's modulated input ``modulate(norm1(tokens), shift, scale)`` [B, T·S, C]:
        the step cache's cheap stand-in for the output (patch and time embeddings only, no block runs).

        Takes ``forward``'s arguments; those the signal does not depend on (text, masks) are ignored, and
        every frame is modulated with ``timestep``.
        """
        dtype = self.x_embedder.proj.weight.dtype
        t_mlp = self.t_block(self._embed_time(timestep, fps, x.shape[0], dtype))
        return self._video_signal(x, t_mlp, height, width)

    def _video_signal(self, vx: torch.Tensor, t_mlp: torch.Tensor, height: torch.Tensor | None,
                      width: torch.Tensor | None) -> torch.Tensor:
        """The first spatial block's attention input for the video latent [B, Cin, Tx, Hx, Wx] -> [B, T·S, C]."""
        tokens, _ = self._video_tokens(vx.to(t_mlp.dtype), height, width)
        return self.spatial_blocks[0].attention_input(tokens, t_mlp)


def _fill_derived_keys(module: STDiT3, state_dict: dict, prefix: str, *args) -> None:
    module.fill_derived_keys(state_dict, prefix)


def zero_output_weights(*layers: nn.Linear) -> None:
    """Zero weight and bias of output projections, making a residual branch an exact no-op."""
    for layer in layers:
        nn.init.zeros_(layer.weight)
        nn.init.zeros_(layer.bias)
