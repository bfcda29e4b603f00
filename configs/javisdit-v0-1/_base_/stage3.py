# Stage-3 model, its initialisation and frozen prior, conditioning masks and optimisation (stage3_jav*.py).
_base_ = ["./jav_model.py", "./dit_optim.py", "./prior.py"]

model = dict(
    only_train_audio=False,
    # Later files override overlapping keys: the stage-1 audio branch, then Open-Sora's video branch.
    weight_init_from=["./checkpoints/JavisDiT-v0.1-audio", "./checkpoints/OpenSora-STDiT-v3/model.safetensors"],
)

# The stage-2 result, where the README moves it; the published one is JavisVerse/JavisDiT-v0.1-prior.
prior_encoder = dict(from_pretrained="./checkpoints/JavisDiT-v0.1-prior")

# Share of training samples per conditioning task (the rest, 0.70, is plain joint generation). The
# order matters: a task is drawn by comparing one uniform number with the cumulative ratios.
mask_ratios = dict(
    random=0.01,
    video_to_audio=0.05,
    audio_to_video=0.05,
    sound_image_animate=0.03,
    intepolate=0.03,  # sic: the original's name
    quarter_random=0.005,
    quarter_head=0.05,
    quarter_tail=0.005,
    quarter_head_tail=0.005,
    image_random=0.005,
    image_head=0.05,
    image_tail=0.005,
    image_head_tail=0.005,
)

epochs = 2
ckpt_every = 50
