# Stage 2: one spatially and one temporally asynchronous negative per clip, built online.
_base_ = ["./jav_data.py"]

dataset = dict(
    neg_aug=1,
    neg_aug_kwargs=dict(
        video_augmentation_pool="./data/st_prior/video/SA-V",
        audio_augmentation_pool="./data/st_prior/audio/TAVGBench",
    ),
)
