# Stage 2 at test size from pre-extracted latents (scripts/misc/extract_feat.py with
# configs/tiny/extract_st_prior_va.py): no VAE is built.
_base_ = ["../javisdit-v0-1/train/stage2_prior_feat.py"]

dtype = "fp32"
num_workers = 0
model = dict(
    imagebind_ckpt_path=None,
    text_tower="tiny",
    hidden_size=64,
    num_encoder_layers=1,
    num_decoder_layers=1,
    enable_flash_attn=False,
    enable_layernorm_kernel=False,
)
epochs = 1
log_every = 1
ckpt_every = 2
warmup_steps = 2
