# JavisDiT-mini, stage 3: the synchronisation modules (ST-prior cross-attention, video-audio cross-attention)
# on top of the frozen video branch and stage-1 audio branch, conditioned on the frozen stage-2 prior:
# scripts/train.py configs/mini/stage3_jav.py
_base_ = ["./_base_/train.py", "./_base_/encoders.py", "./_base_/model.py", "./_base_/prior.py",
          "./_base_/rflow_train.py", "../javisdit-v0-1/_base_/dit_optim.py",
          "../javisdit-v0-1/_base_/stage3_masks.py"]  # v0.1's conditioning tasks (X-conditional generation)

load_text_features = False
# from the latents of configs/mini/extract_va.py (the VAEs do not run here)
dataset = dict(_delete_=True, type="BatchFeatureDataset", data_path="./runs/mini/features")
load_va_features = True
bucket_config = None
vae = None
audio_vae = None
model = dict(
    weight_init_from=["./runs/mini/stage1_audio/model", "./runs/mini/video_branch/model"],
    freeze_y_embedder=True,
    freeze_video_branch=True,
    freeze_audio_branch=True,
    train_st_prior_attn=True,
    train_va_cross_attn=True,
)
lr = 2e-3
# Mostly clean-picture (video-to-audio) samples, not v0.1's 5 %: there the video-audio cross-attention
# learns where a sound belongs (with both latents equally noisy, the audio's own latent tells about as
# much, and the module stayed idle: README, JavisDiT-mini); the other tasks as v0.1, 0.15 plain joint
# generation. The averaged weights follow the last ~50 steps: the module learns late in the 600.
mask_ratios = dict(video_to_audio=0.6)
warmup_steps = 100
ema_decay = 0.98
max_steps = 600
ckpt_every = 300
