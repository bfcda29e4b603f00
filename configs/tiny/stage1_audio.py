# Stage 1 at test size: a tiny audio branch trained for a few steps on CPU from random weights.
_base_ = ["../javisdit-v0-1/train/stage1_audio.py"]

dtype = "fp32"
bucket_config = {"_delete_": True, "144p": {17: (1.0, 2)}}  # replaces the whole table
num_workers = 0
# tiny random encoders, built locally (no download)
vae = dict(from_pretrained=None, preset="tiny")
audio_vae = dict(from_pretrained=None, preset="tiny")
text_encoder = dict(from_pretrained=None, preset="tiny", model_max_length=8)
model = dict(
    weight_init_from=[],
    depth=2,
    hidden_size=64,
    num_heads=4,
    caption_channels=32,
    model_max_length=8,
    enable_flash_attn=False,
    enable_layernorm_kernel=False,
)
epochs = 1
log_every = 1
ckpt_every = 2
warmup_steps = 2
