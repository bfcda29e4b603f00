# A tiny, randomly initialised joint model for CPU tests and offline demos: the v0.1 sampling
# recipe at a size that runs in seconds. No weights are downloaded.
_base_ = ["../javisdit-v0-1/inference/sample.py"]

resolution = "144p"
num_frames = 17
save_dir = "./samples/tiny/"
dtype = "fp32"
verbose = 1

# tiny random encoders, built locally (no download)
vae = dict(from_pretrained=None, preset="tiny")
audio_vae = dict(from_pretrained=None, preset="tiny")
text_encoder = dict(from_pretrained=None, preset="tiny", model_max_length=8)
model = dict(
    from_pretrained=None,
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
scheduler = dict(num_sampling_steps=4)
