# The video autoencoder at test size: a tiny OpenSoraVAE_V1_2 (spatial + temporal VAE) trained from
# scratch for a few steps on CPU (scripts/train_vae.py).
_base_ = ["../javisdit-v0-1/_base_/run.py", "../javisdit-v0-1/_base_/jav_data.py"]

autoencoder = "video"
vae = dict(type="OpenSoraVAE_V1_2", from_pretrained=None, preset="tiny")
kl_weight = 1e-6

dtype = "fp32"
grad_checkpoint = False
bucket_config = {"_delete_": True, "144p": {5: (1.0, 1)}}  # replaces the whole table; 5 frames: 2 latent
num_workers = 0
lr = 1e-3
epochs = 1
log_every = 1
ckpt_every = 2
latent_stats_batches = 2
