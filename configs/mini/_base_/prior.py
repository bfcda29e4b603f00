# JavisDiT-mini's ST-prior estimator: STIBPrior (32 spatial + 32 temporal tokens) reading the captions with
# a frozen random ImageBind text tower of the "tiny" size, shipped beside it.
prior_encoder = dict(
    type="STIBPrior",
    from_pretrained="./assets/javisdit-mini/prior",
    imagebind_ckpt_path="./assets/javisdit-mini/imagebind_text_tiny.safetensors",
    text_tower="tiny",
    spatial_token_num=32,
    temporal_token_num=32,
    out_dim=128,
    hidden_size=128,
    num_encoder_layers=2,
    num_decoder_layers=2,
    apply_sampling=True,
    encode_va=False,
    qk_norm=True,
    enable_layernorm_kernel=False,
)
