# JavisDiT-mini, stage 0b (2 of 2): the video autoencoder's temporal VAE (stride 2) trained to reconstruct
# the frozen spatial VAE's latents extracted by spatial_latents.py (17 frames of 8 clips a step):
# scripts/train_vae.py configs/mini/vae_video.py
_base_ = ["./vae_video_spatial.py"]

autoencoder_parts = "temporal"
vae = dict(from_pretrained="./runs/mini/vae_video_spatial/model")
dataset = dict(_delete_=True, type="BatchFeatureDataset", data_path="./runs/mini/spatial_latents")
load_va_features = True
bucket_config = None
max_steps = 6000  # before foreground_weight, 3000 steps: colour found in 0.865 of the balls' frames, 6000: 0.932 (the spatial VAE alone: 0.963)
ckpt_every = 500
latent_stats_batches = 16
