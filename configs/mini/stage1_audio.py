# JavisDiT-mini, stage 1: the audio branch trained text-to-audio, initialised from the video branch (as v0.1
# from Open-Sora's STDiT-v3), the video branch frozen: scripts/train.py configs/mini/stage1_audio.py
_base_ = ["./_base_/train.py", "./_base_/encoders.py", "./_base_/model.py",
          "./_base_/rflow_train.py", "../javisdit-v0-1/_base_/dit_optim.py"]

audio_only = True
load_text_features = False
dataset = dict(data_path="./data/mini/stage1_audio.csv", audio_only=True)
bucket_config = {"144p": {51: (1.0, 16)}}  # audio only (the size is a placeholder)
model = dict(
    weight_init_from=["./runs/mini/video_branch/model"],
    only_train_audio=True,
    freeze_video_branch=True,
    freeze_y_embedder=False,
    train_st_prior_attn=False,
    train_va_cross_attn=False,
)
lr = 5e-4
warmup_steps = 100
ema_decay = 0.995
max_steps = 600
ckpt_every = 300
