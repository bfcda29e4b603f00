# The backbone as trained in stage 3 and used for joint generation: towers and text embedders frozen,
# ST-prior cross-attention and video-audio cross-attention trainable.
_base_ = ["./vastdit3.py"]

model = dict(
    freeze_y_embedder=True,
    freeze_video_branch=True,
    freeze_audio_branch=True,
    train_st_prior_attn=True,
    train_va_cross_attn=True,
    spatial_prior_len=32,
    temporal_prior_len=32,
    st_prior_channel=128,
    audio_patch_size=(4, 1),
)
