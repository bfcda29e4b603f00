# JavisDiT-mini's denoiser: VASTDiT3 (the v0.1 architecture) at hidden 128, depth 4.
model = dict(
    type="VASTDiT3-XL/2",
    depth=4,
    hidden_size=128,
    num_heads=4,
    caption_channels=64,  # the mini T5's width
    model_max_length=32,
    qk_norm=True,
    spatial_prior_len=32,
    temporal_prior_len=32,
    st_prior_channel=128,
    # a 64x64 clip's 8x8 latent frames as 4x4 tokens. At (1,4,4) (2x2 tokens, 3x faster) the video branch drew
    # the ball's colour in 0.54 of the frames on 40 training captions, here 0.73 (README, JavisDiT-mini)
    patch_size=(1, 2, 2),
    # the sound's tokens one latent frame (40 ms, about a video frame) by 4 mel bins: 56 x 4 tokens, as many as
    # v0.1's (4, 1), whose 160 ms tokens drew the impacts at the start of a token (their onsets locked to a
    # 160 ms grid, up to 4 video frames from the bounce; README, JavisDiT-mini)
    audio_patch_size=(1, 4),
    # the video-audio cross-attention on one clock (not in v0.1; VASTDiT3Config): time RoPE, and each token
    # sees the other tower's tokens within 2 latent frames (167 ms)
    va_cross_time_rope=True,
    va_cross_time_window=2.0,
    enable_flash_attn=False,
    enable_layernorm_kernel=False,
)
