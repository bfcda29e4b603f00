# Stage-3 model, its initialisation and frozen prior, conditioning masks (stage3_masks.py) and optimisation
# (stage3_jav*.py).
_base_ = ["./jav_model.py", "./dit_optim.py", "./prior.py", "./stage3_masks.py"]

model = dict(
    only_train_audio=False,
    # Later files override overlapping keys: the stage-1 audio branch, then Open-Sora's video branch.
    weight_init_from=["./checkpoints/JavisDiT-v0.1-audio", "./checkpoints/OpenSora-STDiT-v3/model.safetensors"],
)

# The stage-2 result, where the README moves it; the published one is JavisVerse/JavisDiT-v0.1-prior.
prior_encoder = dict(from_pretrained="./checkpoints/JavisDiT-v0.1-prior")

epochs = 2
ckpt_every = 50
