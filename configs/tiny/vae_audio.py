# The audio autoencoder at test size: a tiny AudioLDM2 mel VAE trained from scratch for a few steps on
# CPU (scripts/train_vae.py); the log-mels of the 16 kHz audio come from the dataset's mel front-end.
_base_ = ["../javisdit-v0-1/_base_/run.py", "../javisdit-v0-1/_base_/audio.py"]

autoencoder = "audio"
audio_vae = dict(type="AudioLDM2", from_pretrained=None, preset="tiny")
kl_weight = 1e-6

dataset = dict(
    type="VariableVideoAudioTextDataset",
    data_path=None,
    transform_name="resize_crop",
    audio_transform_name="mel_spec_audioldm2",
    audio_only=True,
)
dtype = "fp32"
grad_checkpoint = False
bucket_config = {"144p": {51: (1.0, 1)}}  # 2.125 s of audio: 224 mel frames
num_workers = 0
lr = 1e-3
epochs = 1
log_every = 1
ckpt_every = 2
latent_stats_batches = 2
