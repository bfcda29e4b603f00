# Stage 3 at test size from pre-extracted latents (scripts/misc/extract_feat.py with
# configs/tiny/extract_va.py): no VAE is built; the tiny T5 and prior still encode the captions.
_base_ = ["../javisdit-v0-1/train/stage3_jav_feat.py"]

dtype = "fp32"
num_workers = 0
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
prior_encoder = dict(
    from_pretrained=None,
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
