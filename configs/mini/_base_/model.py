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
    patch_size=(1, 4, 4),  # a 64x64 clip's 8x8 latent frames as 2x2 tokens
    audio_patch_size=(4, 1),
    enable_flash_attn=False,
    enable_layernorm_kernel=False,
)
