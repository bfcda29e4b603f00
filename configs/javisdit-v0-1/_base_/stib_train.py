# The ST-prior estimator as trained in stage 2, with its video/audio encoders for the contrastive loss.
model = dict(
    type="STIBPrior",
    imagebind_ckpt_path="./checkpoints",
    hidden_size=512,
    apply_sampling=True,
    encode_va=True,
    qk_norm=True,
    enable_layernorm_kernel=True,
    spatial_token_num=32,
    temporal_token_num=32,
    out_dim=128,
)
