# JavisDiT-mini, stage 0a: the video autoencoder's spatial VAE (OpenSoraVAE_V1_2, "mini" size) trained from
# scratch as an image autoencoder on pairs of frames from 16 clips a step (varied batches leave the
# mean-frame plateau early; the temporal VAE waits for stage 0b, vae_video.py):
# scripts/train_vae.py configs/mini/vae_video_spatial.py
_base_ = ["./_base_/train.py"]

autoencoder = "video"
autoencoder_parts = "spatial"
vae = dict(type="OpenSoraVAE_V1_2", from_pretrained=None, preset="mini", micro_frame_size=17, micro_batch_size=4,
           sample_posterior=False)  # a deterministic autoencoder: far faster to train from scratch
kl_weight = 1e-6
reconstruction_loss = "l2"  # small balls and short impacts on flat backgrounds: learned far sooner than with L1
# Each pixel's error weighs 1 + 5·d/mean(d), d its distance from the clip's background (the temporal VAE of
# vae_video.py inherits it, on its latents): the balls are ~3 % of the pixels. The spatial VAE alone found
# the ball's colour in 0.944 of the frames of 30 held-out clips without it, 0.975 with it (1200 steps each).
foreground_weight = 5.0
dataset = dict(data_path="./data/mini/vae.csv")
bucket_config = {"64": {2: (1.0, 16)}}
lr = 1e-3
warmup_steps = 20
max_steps = 1200
ckpt_every = 200
latent_stats_batches = 4
