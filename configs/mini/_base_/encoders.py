# JavisDiT-mini's encoders, as shipped in assets/javisdit-mini: the two autoencoders trained by
# configs/mini/vae_video.py and vae_audio.py (Griffin-Lim vocoder), and a frozen random T5 over the
# captions' words (javisdit/models/text/words.py). scripts/train_mini.py points these at its own.
_base_ = ["./vaes.py"]

text_encoder = dict(
    type="t5",
    from_pretrained="./assets/javisdit-mini/text_encoder",
    model_max_length=32,
)
