# The T5-XXL text encoder (frozen); captions are padded/truncated to 300 tokens.
text_encoder = dict(
    type="t5",
    from_pretrained="DeepFloyd/t5-v1_1-xxl",
    model_max_length=300,
)
