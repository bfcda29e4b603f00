# JavisDiT-mini, stage 0b: the video autoencoder's temporal VAE (stride 2) trained to reconstruct the frozen
# latents of the spatial VAE of vae_video_spatial.py, 17-frame chunks of 8 clips a step:
# scripts/train_vae.py configs/mini/vae_video.py
_base_ = ["./vae_video_spatial.py"]

autoencoder_parts = "temporal"
vae = dict(from_pretrained="./runs/mini/vae_video_spatial/model")
bucket_config = {"_delete_": True, "64": {17: (1.0, 8)}}
max_steps = 1500  # ~1 s a step here (frozen spatial encoder on 136 frames + loading): the slowest stage
ckpt_every = 100
latent_stats_batches = 16
