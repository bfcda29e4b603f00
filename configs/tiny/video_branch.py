# The video branch at test size: a tiny STDiT3 trained text-to-video for a few steps on CPU from random
# weights (the role Open-Sora's STDiT-v3 plays for v0.1; stage 1 starts from what it saves).
_base_ = ["./stage1_audio.py"]

audio_only = False
video_only = True
dataset = dict(audio_only=False)
model = dict(
    _delete_=True,
    type="STDiT3-XL/2",
    qk_norm=True,
    depth=2,
    hidden_size=64,
    num_heads=4,
    caption_channels=32,
    model_max_length=8,
    enable_flash_attn=False,
    enable_layernorm_kernel=False,
)
