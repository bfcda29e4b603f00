"""VASTDiT3: JavisDiT's joint audio-video DiT (VA-STDiT, arXiv 2503.23377 §3).

A video tower (Open-Sora STDiT3) and an audio tower of the same shape run side by side. At each depth,
after the spatial and temporal blocks of both towers, each tower cross-attends to the ST-prior tokens
(spatial then temporal), then the towers exchange information through bidirectional video-audio
cross-attention. Shape legend: video latent [B, 4, Tx, Hx, Wx] -> tokens [B, T·S, C]; audio latent
[B, 8, Ta, Mx] (Mx mel bins) -> tokens [B, R·M, C] with ``R = Ta / 4`` time and ``M = Mx`` frequency
tokens; priors [B, Ns | Nt, Cp]. Over several processes (inference and training) the video frames can be sharded
(``javisdit.distributed.sequence_parallel``); the model then holds this rank's ``Tv`` of the ``T`` frames.
"""

from __future__ import annotations

import math
from collections.abc import Mapping

import torch
from torch import nn

from javisdit.distributed.sequence_parallel import FrameShard, SequenceParallel
from javisdit.models.layers.embeddings import CaptionEmbedder, PatchEmbed2D, sincos_1d
from javisdit.models.layers.attention import TokenTimes
from javisdit.models.stdit.blocks import CrossModalityBiAttentionBlock, CrossSTDiT3Block, FinalLayer
from javisdit.models.stdit.config import VASTDiT3Config
from javisdit.models.stdit.stdit3 import STDiT3, check_shape, zero_output_weights


#: the synchronisation modules ``VASTDiT3.skip_sync`` may name: ST-prior cross-attention, video-audio cross-attention
SYNC_MODULES = ("st_prior", "va_cross")


class VASTDiT3(STDiT3):
    config: VASTDiT3Config

    def __init__(self, config: VASTDiT3Config):
        super().__init__(config, video_blocks=config.has_video_blocks)
        C = config.hidden_size
        self.ax_embedder = PatchEmbed2D(config.audio_patch_size, config.audio_in_channels, C)
        self.audio_y_embedder = CaptionEmbedder(config.caption_channels, C, config.class_dropout_prob,
                                                config.model_max_length)
        if config.train_st_prior_attn:
            self.st_t_block = nn.Sequential(nn.SiLU(), nn.Linear(C, 9 * C))
            self.st_prior_embedder = CaptionEmbedder(config.st_prior_channel, C, config.class_dropout_prob,
                                                     config.spatial_prior_len + config.temporal_prior_len)
        self.audio_spatial_blocks = self._dit_blocks(temporal=False)
        self.audio_temporal_blocks = self._dit_blocks(temporal=True)
        if config.train_st_prior_attn:
            self.video_st_prior_blocks = self._prior_blocks()
            self.audio_st_prior_blocks = self._prior_blocks()
        if config.train_va_cross_attn:
            self.va_cross_blocks = nn.ModuleList(
                CrossModalityBiAttentionBlock(C, C, config.num_heads, layernorm_kernel=config.enable_layernorm_kernel)
                for _ in range(config.depth)
            )
        self.audio_final_layer = FinalLayer(C, math.prod(config.audio_patch_size), config.audio_out_channels,
                                            layernorm_kernel=config.enable_layernorm_kernel)
        self._init_audio_and_sync_weights()
        # Ablation switch (inference; the sync benchmark's rows): names of ``SYNC_MODULES`` whose blocks the
        # forward skips, as if the model had been built without them. Empty: the model as trained.
        self.skip_sync: frozenset[str] = frozenset()
        # Sequence parallelism (``javisdit.distributed.sequence_parallel.enable_sequence_parallel``):
        # the video frames of each sample are sharded over this group. None: one process computes all.
        self.sequence_parallel: SequenceParallel | None = None
        # The audio null caption starts equal to the video one (two buffers, not an alias).
        self.audio_y_embedder.y_embedding.data.copy_(self.y_embedder.y_embedding.data)

    def _prior_blocks(self) -> nn.ModuleList:
        cfg = self.config
        return nn.ModuleList(
            CrossSTDiT3Block(cfg.hidden_size, cfg.num_heads, cfg.mlp_ratio, layernorm_kernel=cfg.enable_layernorm_kernel)
            for _ in range(cfg.depth)
        )

    @property
    def has_st_prior(self) -> bool:
        return hasattr(self, "st_prior_embedder")

    @property
    def has_va_cross(self) -> bool:
        return hasattr(self, "va_cross_blocks")

    def _init_audio_and_sync_weights(self) -> None:
        # New modules keep PyTorch's default init, except that residual branches which must start
        # neutral get zero output projections: the audio temporal blocks (as the video ones) and the
        # prior blocks, here bias included so that the sync modules are exact no-ops at the start of
        # stage 3 (the original zeroed the weights only). The VA blocks start neutral through gamma = 0.
        for block in self.audio_temporal_blocks:
            zero_output_weights(block.attn.proj, block.cross_attn.proj, block.mlp.fc2)
        if self.has_st_prior:
            for block in (*self.video_st_prior_blocks, *self.audio_st_prior_blocks):
                zero_output_weights(block.spatial_cross_attn.proj, block.temporal_cross_attn.proj, block.mlp.fc2)

    def fill_derived_keys(self, state_dict: dict, prefix: str = "") -> None:
        """Also the audio null caption: checkpoints saved with the original's aliased buffers may hold
        only ``y_embedder.y_embedding``."""
        super().fill_derived_keys(state_dict, prefix)
        video_key = prefix + "y_embedder.y_embedding"
        if video_key in state_dict:
            state_dict.setdefault(prefix + "audio_y_embedder.y_embedding", state_dict[video_key])

    def null_text(self) -> torch.Tensor:
        """The learned null caption [1, 1, L, Cy] used for classifier-free guidance."""
        return self.y_embedder.y_embedding[None, None]

    def null_prior(self) -> tuple[torch.Tensor, torch.Tensor]:
        """The learned null (spatial [1, Ns, Cp], temporal [1, Nt, Cp]) prior used for guidance."""
        if not self.has_st_prior:
            raise ValueError("this model has no ST-prior modules (train_st_prior_attn=False)")
        null = self.st_prior_embedder.y_embedding[None]
        return null[:, : self.config.spatial_prior_len], null[:, self.config.spatial_prior_len :]

    # ----- forward -----------------------------------------------------------------------------------------

    def _audio_tokens(self, ax: torch.Tensor) -> tuple[torch.Tensor, tuple[int, int]]:
        """Patchify [B, 8, Ta, Mx] and add 1-D positions over the mel axis -> ([B, R·M, C], (R, M))."""
        pr, pm = self.config.audio_patch_size
        R, M = ax.shape[2] // pr, ax.shape[3] // pm
        tokens = self.ax_embedder(ax)
        B, _, C = tokens.shape
        pos = sincos_1d(M, C, ax.dtype, ax.device)
        return (tokens.view(B, R, M, C) + pos[:, None]).view(B, R * M, C), (R, M)

    def _unpatchify_audio(self, x: torch.Tensor, RM: tuple[int, int]) -> torch.Tensor:
        """[B, R·M, pr·pm·Cout] -> [B, Cout, R·pr, M·pm]."""
        (R, M), (pr, pm) = RM, self.config.audio_patch_size
        B, Cout = x.shape[0], self.config.audio_out_channels
        x = x.view(B, R, M, pr, pm, Cout).permute(0, 5, 1, 3, 2, 4)
        return x.reshape(B, Cout, R * pr, M * pm)

    def _check_inputs(self, x: dict, x_mask, ax_mask, spatial_prior, temporal_prior) -> tuple[int, bool]:
        cfg = self.config
        if not isinstance(x, dict) or "audio" not in x:
            raise ValueError("x must be a dict with an 'audio' latent (and a 'video' latent)")
        has_video = x.get("video") is not None
        if not has_video and self.has_video_blocks:
            raise ValueError("x['video'] is required: this model generates video and audio")
        ax = x["audio"]
        pr, pm = cfg.audio_patch_size
        check_shape("x['audio']", ax, (None, cfg.audio_in_channels, None, None), f"[B, {cfg.audio_in_channels}, Ta, M]")
        B = ax.shape[0]
        if ax.shape[2] % pr or ax.shape[3] % pm:
            raise ValueError(f"x['audio'] time and mel sizes must be multiples of the audio patch {cfg.audio_patch_size}, "
                             f"got {list(ax.shape[2:])}")
        if has_video:
            self._check_video(x["video"], x_mask, name="x['video']")
            if x["video"].shape[0] != B:
                raise ValueError(f"x['video'] has batch {x['video'].shape[0]} but x['audio'] has batch {B}")
        if ax_mask is not None:
            check_shape("ax_mask", ax_mask, (B, ax.shape[2]), f"[B, Ta] = [{B}, {ax.shape[2]}]")
        if self.has_st_prior:
            cp = cfg.st_prior_channel
            check_shape("spatial_prior", spatial_prior, (B, cfg.spatial_prior_len, cp),
                        f"[B, {cfg.spatial_prior_len}, {cp}] with B = {B}")
            check_shape("temporal_prior", temporal_prior, (B, cfg.temporal_prior_len, cp),
                        f"[B, {cfg.temporal_prior_len}, {cp}] with B = {B}")
        return B, has_video

    def forward(  # type: ignore[override]
        self,
        x: dict[str, torch.Tensor],
        timestep: torch.Tensor,
        y: torch.Tensor,
        mask: torch.Tensor | None = None,
        x_mask: torch.Tensor | None = None,
        ax_mask: torch.Tensor | None = None,
        fps: torch.Tensor | None = None,
        height: torch.Tensor | None = None,
        width: torch.Tensor | None = None,
        spatial_prior: torch.Tensor | None = None,
        temporal_prior: torch.Tensor | None = None,
        condition_drop: Mapping[str, torch.Tensor] | None = None,
    ) -> dict[str, torch.Tensor]:
        """Predict velocities for a video and an audio latent; inputs are never modified.

        Args:
            x: ``{"video": [B, 4, Tx, Hx, Wx], "audio": [B, 8, Ta, M]}``; a model without video blocks
                (stage 1, text-to-audio) also accepts the audio alone.
            timestep: [B] in [0, 1000]. y: [B, 1, L, Cy] T5 features, mask: [B, L] their validity.
            x_mask: [B, Tx], ax_mask: [B, Ta]: True where a frame is generated, False where it is a
                clean condition; leave both None for plain generation.
            fps: [B]. height, width: [B] pixel size of the video (element 0 sets the position scale).
            spatial_prior, temporal_prior: [B, Ns, Cp], [B, Nt, Cp] ST-prior tokens.
            condition_drop: ``{embedder name: [B] bool}`` for ``y_embedder``, ``audio_y_embedder``,
                ``st_prior_embedder``: which samples get the null condition (classifier-free guidance
                training). A missing entry is drawn at random in training mode, as the original does.

        Returns:
            ``{"video": [B, 8, Tx, Hx, Wx], "audio": [B, 16, Ta, M]}`` in fp32 (the first half of the
            channels is the velocity; ``video`` is absent when no video was given).
        """
        cfg = self.config
        B, has_video = self._check_inputs(x, x_mask, ax_mask, spatial_prior, temporal_prior)
        mask = self._check_text(y, mask, B)
        for name, value in (("timestep", timestep), ("fps", fps)) + (
            (("height", height), ("width", width)) if has_video else ()
        ):
            check_shape(name, value, (None,), "[B]")
        dtype = self.x_embedder.proj.weight.dtype
        ax = x["audio"].to(dtype)

        # Conditioning: time (+ t = 0 for clean frames), text for each tower, prior tokens.
        t = self._embed_time(timestep, fps, B, dtype)
        t_mlp = self.t_block(t)
        masked = x_mask is not None or ax_mask is not None
        t0 = self._embed_time(torch.zeros_like(timestep), fps, B, dtype) if masked else None
        t0_mlp = self.t_block(t0) if masked else None
        if ax_mask is not None:
            ax_mask = ax_mask[:, :: cfg.audio_patch_size[0]]  # a time patch follows its first latent frame
        y = y.to(dtype)
        drops = condition_drop or {}
        ay_tokens, ay_mask = self._embed_text(self.audio_y_embedder, y, mask, drops.get("audio_y_embedder"))
        if self.has_st_prior:
            t_st, t0_st = self.st_t_block(t), (self.st_t_block(t0) if masked else None)
            drop = drops.get("st_prior_embedder", self.training)

            def embed_prior() -> torch.Tensor:
                tokens = torch.cat([spatial_prior, temporal_prior], dim=1).to(dtype)[:, None]
                return self.st_prior_embedder(tokens, drop=drop).squeeze(1)

            inputs = (spatial_prior, temporal_prior) + ((drop,) if isinstance(drop, torch.Tensor) else ())
            st_prior = embed_prior() if drop is True else self._memo("st_prior", self.st_prior_embedder, inputs,
                                                                       embed_prior)
            sp, tp = st_prior.split([cfg.spatial_prior_len, cfg.temporal_prior_len], dim=1)

        a_tokens, RM = self._audio_tokens(ax)
        R = RM[0]
        if has_video:
            vx = x["video"].to(dtype)
            v_tokens, THW = self._video_tokens(vx, height, width)
            T = Tv = THW[0]  # Tv: the frames this process holds (all of them without sequence parallelism)
        run_video = has_video and self.has_video_blocks
        if run_video:
            y_tokens, y_mask = self._embed_text(self.y_embedder, y, mask, drops.get("y_embedder"))
        # Sequence parallelism: from here to the final layer the video tower holds this rank's Tv of the
        # T frames ([B, Tv·S, C]) and their x_mask [B, Tv]; the audio tower is whole on every rank.
        shard, vx_mask = None, x_mask
        if run_video and self.sequence_parallel is not None:
            shard, v_tokens, vx_mask = self._shard_video(v_tokens, T, x_mask)
            Tv = shard.local

        va_times = None
        if run_video and self.has_va_cross and (cfg.va_cross_time_rope or cfg.va_cross_time_window is not None):
            va_times = self._va_token_times(T, THW[1] * THW[2], RM, shard, a_tokens.device)
        # Block order per depth: V-spatial, V-temporal, A-spatial, A-temporal, V-prior, A-prior, V<->A.
        for i in range(cfg.depth):
            if run_video:
                v_tokens = self._run(self.spatial_blocks[i], v_tokens, y_tokens, y_mask, t_mlp, Tv, vx_mask, t0_mlp)
                v_tokens = self._run(self.temporal_blocks[i], v_tokens, y_tokens, y_mask, t_mlp, Tv, vx_mask, t0_mlp,
                                     rope=self.rope, shard=shard)
            a_tokens = self._run(self.audio_spatial_blocks[i], a_tokens, ay_tokens, ay_mask, t_mlp, R, ax_mask, t0_mlp)
            a_tokens = self._run(self.audio_temporal_blocks[i], a_tokens, ay_tokens, ay_mask, t_mlp, R, ax_mask,
                                 t0_mlp, rope=self.rope)
            if self.has_st_prior and "st_prior" not in self.skip_sync:
                union = cfg.prior_attn_batch_union
                if run_video:
                    v_tokens = self._run(self.video_st_prior_blocks[i], v_tokens, sp, tp, t_st, Tv, vx_mask, t0_st,
                                         batch_union=union)
                a_tokens = self._run(self.audio_st_prior_blocks[i], a_tokens, sp, tp, t_st, R, ax_mask, t0_st,
                                     batch_union=union)
            if self.has_va_cross and run_video and "va_cross" not in self.skip_sync:
                v_tokens, a_tokens = self._run(self.va_cross_blocks[i], v_tokens, a_tokens, shard=shard,
                                               times=va_times)

        out = {"audio": self._unpatchify_audio(self.audio_final_layer(a_tokens, t, R, ax_mask, t0), RM).float()}
        if has_video:
            video = self.final_layer(v_tokens, t, Tv, vx_mask, t0)
            if shard is not None:
                video = shard.gather(video, dim=1)  # [B, T·S, p·Cout] on every rank
            out["video"] = self._unpatchify_video(video, THW, tuple(vx.shape[-3:])).float()
        return out

    def _va_token_times(self, T: int, S: int, RM: tuple[int, int], shard: FrameShard | None,
                        device: torch.device) -> TokenTimes:
        """The video and audio tokens on one clock in video latent frames, for the video-audio
        cross-attention: frame t sits at t, audio time patch r at the centre of its share of the T frames,
        ``(r + 1/2)·T/R - 1/2``. The window is widened where needed so that every token sees at least the
        other tower's nearest one (half the wider of the two spacings)."""
        cfg, (R, M) = self.config, RM
        video = torch.arange(T, device=device, dtype=torch.float32).repeat_interleave(S)
        local = video
        if shard is not None:  # padding frames (dropped later) take the last frame's time: no empty window
            frames = torch.arange(shard.start, shard.start + shard.local, device=device, dtype=torch.float32)
            local = frames.clamp(max=T - 1).repeat_interleave(S)
        audio = ((torch.arange(R, device=device, dtype=torch.float32) + 0.5) * (T / R) - 0.5).repeat_interleave(M)
        window = cfg.va_cross_time_window
        if window is not None:
            window = max(float(window), 0.5 * max(1.0, T / R))
        return TokenTimes(local, video, audio, self.va_cross_blocks[0].cross_attn.head_dim,
                          rope=cfg.va_cross_time_rope, window=window)

    def _shard_video(self, tokens: torch.Tensor, T: int, x_mask: torch.Tensor | None
                     ) -> tuple[FrameShard, torch.Tensor, torch.Tensor | None]:
        """This rank's frames of the video tokens [B, T·S, C] and of x_mask [B, T] (padding frames: zero
        tokens, True in the mask) -> (shard, [B, Tl·S, C], [B, Tl] or None)."""
        shard = self.sequence_parallel.shard(T)
        return shard, shard.split(tokens), shard.split(x_mask, fill=True)

    @torch.no_grad()
    def cache_signal(self, x: dict[str, torch.Tensor], timestep: torch.Tensor,  # type: ignore[override]
                     fps: torch.Tensor | None = None, height: torch.Tensor | None = None,
                     width: torch.Tensor | None = None, **kwargs) -> torch.Tensor:
        """The step cache's cheap stand-in for the output (patch and time embeddings only, no block
        runs): the first video spatial block's modulated input [B, T·S, C] (when the model runs video)
        followed along the tokens by the first audio spatial block's [B, R·M, C].

        Takes ``forward``'s arguments; those the signal does not depend on (text, priors, masks) are
        ignored, and every frame is modulated with ``timestep``.
        """
        dtype = self.x_embedder.proj.weight.dtype
        t_mlp = self.t_block(self._embed_time(timestep, fps, x["audio"].shape[0], dtype))
        parts = []
        if x.get("video") is not None and self.has_video_blocks:
            parts.append(self._video_signal(x["video"], t_mlp, height, width))
        tokens, _ = self._audio_tokens(x["audio"].to(dtype))
        parts.append(self.audio_spatial_blocks[0].attention_input(tokens, t_mlp))
        return torch.cat(parts, dim=1)

