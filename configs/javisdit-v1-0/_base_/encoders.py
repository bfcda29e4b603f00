# JavisDiT++'s frozen parts: the Wan2.1 video VAE and umT5-XXL encoder from a local copy of the hub repository
# Wan-AI/Wan2.1-T2V-1.3B (huggingface-cli download Wan-AI/Wan2.1-T2V-1.3B Wan2.1_VAE.pth
# models_t5_umt5-xxl-enc-bf16.pth 'google/umt5-xxl/*' --local-dir ./checkpoints/Wan2.1-T2V-1.3B), and v0.1's
# AudioLDM2 mel VAE + HiFi-GAN vocoder.
vae = dict(
    type="Wan2_1_T2V_1_3B_VAE",
    from_pretrained="./checkpoints/Wan2.1-T2V-1.3B",
    vae_checkpoint="Wan2.1_VAE.pth",
    vae_stride=(4, 8, 8),
    dit_patch_size=(1, 2, 2),
)
audio_vae = dict(type="AudioLDM2", from_pretrained="cvssp/audioldm2")
text_encoder = dict(
    type="Wan2_1_T2V_1_3B_t5_umt5",
    from_pretrained="./checkpoints/Wan2.1-T2V-1.3B",
    t5_checkpoint="models_t5_umt5-xxl-enc-bf16.pth",
    t5_tokenizer="google/umt5-xxl",
    text_len=512,
)
