# Text to audio with the stage-1 (audio branch) weights; writes .wav files.
_base_ = ["../_base_/inference.py", "../_base_/encoders.py", "../_base_/jav_model.py"]

audio_only = True

model = dict(
    from_pretrained="JavisVerse/JavisDiT-v0.1-audio",
    weight_init_from=[],
    only_infer_audio=True,
    freeze_video_branch=True,
    freeze_y_embedder=False,
    train_st_prior_attn=False,
    train_va_cross_attn=False,
)
