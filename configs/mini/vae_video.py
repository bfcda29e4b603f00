# JavisDiT-mini, stage 0b: the video autoencoder's temporal VAE trained through the whole chain (pixels ->
# spatial -> temporal -> back to pixels) with the spatial VAE of vae_video_spatial.py frozen:
# scripts/train_vae.py configs/mini/vae_video.py
_base_ = ["./vae_video_spatial.py"]

autoencoder_parts = "temporal"
vae = dict(from_pretrained="./runs/mini/vae_video_spatial/model")
bucket_config = {"_delete_": True, "64": {17: (1.0, 4)}}
max_steps = 250
ckpt_every = 100
latent_stats_batches = 16
