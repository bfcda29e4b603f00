# Stage 2 at test size: the prior's contrastive objective for a few steps on CPU.
_base_ = ["../javisdit-v0-1/train/stage2_prior.py"]

dtype = "fp32"
bucket_config = {"_delete_": True, "144p": {17: (1.0, 2)}}  # replaces the whole table
num_workers = 0
# tiny random VAEs, built locally (no download)
vae = dict(from_pretrained=None, preset="tiny")
audio_vae = dict(from_pretrained=None, preset="tiny")
model = dict(
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
