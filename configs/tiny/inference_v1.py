# A tiny, randomly initialised JavisDiT++ (v1.0) for CPU tests and offline demos: the v1.0 sampling recipe
# (16 fps, guidance against the negative prompt, the upstream timestep shift) at a size that runs in seconds.
# No weights are downloaded.
_base_ = ["../javisdit-v1-0/inference/sample.py"]

resolution = "144p"
num_frames = 17  # 1 + 4k frames for the Wan VAE (and >= 17 for the upstream shift): 1.06 s at 16 fps
save_dir = "./samples/tiny-v1/"
dtype = "fp32"
verbose = 1

vae = dict(from_pretrained=None, preset="tiny")
audio_vae = dict(from_pretrained=None, preset="tiny")
text_encoder = dict(from_pretrained=None, preset="tiny", text_len=16)
model = dict(from_pretrained=None, preset="tiny", dim=64, ffn_dim=128, freq_dim=32, num_heads=2, num_layers=2,
             text_dim=32)
scheduler = dict(num_sampling_steps=4)
