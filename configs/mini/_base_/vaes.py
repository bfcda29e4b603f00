# JavisDiT-mini's two autoencoders, as shipped in assets/javisdit-mini (trained by configs/mini/vae_video.py
# and vae_audio.py; Griffin-Lim inverts the mels). scripts/train_mini.py points them at its own.
vae = dict(
    type="OpenSoraVAE_V1_2",
    from_pretrained="./assets/javisdit-mini/vae_video",
    preset="mini",
    micro_frame_size=17,
    micro_batch_size=4,
    sample_posterior=False,  # trained as a deterministic autoencoder (javisdit/training/autoencoder.py)
)
audio_vae = dict(
    type="AudioLDM2",
    from_pretrained="./assets/javisdit-mini/vae_audio",
    preset="mini",
    vocoder="griffin_lim",
    sample_posterior=False,
)
