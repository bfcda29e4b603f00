# JavisDiT-mini, stage 2: the ST-prior estimator, contrastive against the negatives of PIPELINE.md §4.10
# (each clip's unpaired sound plus the generated shifts/swaps): scripts/train_prior.py configs/mini/stage2_prior.py
_base_ = ["./_base_/train.py", "./_base_/vaes.py", "../javisdit-v0-1/_base_/stib_train.py"]

model = dict(
    _delete_=True,
    type="STIBPrior",
    imagebind_ckpt_path="./assets/javisdit-mini/imagebind_text_tiny.safetensors",
    text_tower="tiny",
    spatial_token_num=32,
    temporal_token_num=32,
    out_dim=128,
    hidden_size=128,
    num_encoder_layers=2,
    num_decoder_layers=2,
    apply_sampling=True,
    encode_va=True,
    qk_norm=True,
    enable_layernorm_kernel=False,
)
dataset = dict(data_path="./data/mini/stage2_prior.csv", neg_aug=1,
               neg_aug_kwargs=dict(video_augmentation_pool=None, audio_augmentation_pool=None))
bucket_config = {"64": {51: (1.0, 8)}}
lr = 5e-4
warmup_steps = 50
max_steps = 125  # 4.3-4.8 s a step here (the VAEs encode each clip and its negatives): the slowest DiT-side stage
ckpt_every = 125
grad_clip = 1.0
