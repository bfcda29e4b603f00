# Text to sounding video with the published JavisDiT v0.1 (dynamic resolution) weights.
_base_ = ["../_base_/inference.py", "../_base_/encoders.py", "../_base_/prior.py", "../_base_/jav_model.py"]

model = dict(
    from_pretrained="JavisVerse/JavisDiT-v0.1-jav",
    weight_init_from=[],
)
