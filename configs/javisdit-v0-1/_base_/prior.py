# The frozen ST-prior estimator used at inference and in stage 3 (published as JavisVerse/JavisDiT-v0.1-prior).
# Its ImageBind text tower is read from <imagebind_ckpt_path>/imagebind_huge.pth.
prior_encoder = dict(
    type="STIBPrior",
    imagebind_ckpt_path="./checkpoints",
    from_pretrained="JavisVerse/JavisDiT-v0.1-prior",
    spatial_token_num=32,
    temporal_token_num=32,
    out_dim=128,
    hidden_size=512,
    apply_sampling=True,
    encode_va=False,
    qk_norm=True,
    enable_layernorm_kernel=True,
)
