# JavisDiT-mini, stage 0b: the audio autoencoder (AudioLDM2's mel VAE, "mini" size) trained from scratch on
# the 2 s sounds; Griffin-Lim inverts its mels: scripts/train_vae.py configs/mini/vae_audio.py
_base_ = ["./_base_/train.py"]

autoencoder = "audio"
audio_vae = dict(type="AudioLDM2", from_pretrained=None, preset="mini", vocoder="griffin_lim",
                 sample_posterior=False)  # a deterministic autoencoder, as the video one
kl_weight = 1e-6
reconstruction_loss = "l2"  # small balls and short impacts on flat backgrounds: learned far sooner than with L1
dataset = dict(data_path="./data/mini/stage1_audio.csv", audio_only=True)
bucket_config = {"144p": {51: (1.0, 8)}}  # audio only (the size is a placeholder); 2.125 s: 212 mel frames, padded to 224
lr = 1e-3
warmup_steps = 50
max_steps = 400
ckpt_every = 100
latent_stats_batches = 16
