# JavisDiT++'s DiT: Wan2.1-T2V-1.3B with audio tokens, the dual FFN and TA-RoPE (spec MODEL_V1.md §3); the
# original constructor kwargs. from_pretrained: the published checkpoint (model/ + lora/; --model-path wins).
model = dict(
    type="Wan2_1_T2V_1_3B",
    model_type="t2av",
    patch_size=(1, 2, 2),
    dim=1536,
    ffn_dim=8960,
    freq_dim=256,
    num_heads=12,
    num_layers=30,
    window_size=(-1, -1),
    qk_norm=True,
    cross_attn_norm=True,
    audio_patch_size=(2, 2),
    audio_in_dim=8,
    audio_out_dim=8,
    audio_special_token=False,
    dual_ffn=True,
    class_drop_prob=0.1,
    audio_pe_type="interleave_offset",
    from_pretrained="JavisVerse/JavisDiT-v1.0-jav",
)
