# JavisDiT-mini, the video branch: an STDiT3 of the mini size trained text-to-video from scratch (the role
# Open-Sora's STDiT-v3 plays for v0.1; stage 1 starts from it): scripts/train.py configs/mini/video_branch.py
_base_ = ["./_base_/train.py", "./_base_/encoders.py", "./_base_/model.py",
          "./_base_/rflow_train.py", "../javisdit-v0-1/_base_/dit_optim.py"]

video_only = True
load_text_features = False
# from the latents of configs/mini/extract_va.py (the VAEs do not run here)
dataset = dict(_delete_=True, type="BatchFeatureDataset", data_path="./runs/mini/features")
load_va_features = True
bucket_config = None
vae = None
audio_vae = None
model = dict(
    _delete_=True,
    type="STDiT3-XL/2",
    depth=4,
    hidden_size=128,
    num_heads=4,
    patch_size=(1, 2, 2),  # as the joint model's (_base_/model.py)
    caption_channels=64,
    model_max_length=32,
    qk_norm=True,
    enable_flash_attn=False,
    enable_layernorm_kernel=False,
)
lr = 5e-4
warmup_steps = 100
ema_decay = 0.995
max_steps = 3300
ckpt_every = 400
