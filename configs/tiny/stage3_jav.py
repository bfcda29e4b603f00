# Stage 3 at test size: the synchronisation modules of a tiny joint model for a few steps on CPU.
_base_ = ["../javisdit-v0-1/train/stage3_jav.py"]

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
# a random ST-prior estimator with a tiny ImageBind text tower (no imagebind_huge.pth needed)
prior_encoder = dict(
    from_pretrained=None,
    imagebind_ckpt_path=None,
    text_tower="tiny",
    hidden_size=64,
    num_encoder_layers=1,
    num_decoder_layers=1,
    enable_layernorm_kernel=False,
)
epochs = 1
log_every = 1
ckpt_every = 2
warmup_steps = 2
