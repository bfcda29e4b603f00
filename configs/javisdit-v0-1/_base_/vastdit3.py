# The joint audio-video backbone; each config adds the flags of its stage.
model = dict(
    type="VASTDiT3-XL/2",
    qk_norm=True,
    enable_flash_attn=True,
    enable_layernorm_kernel=True,
)
