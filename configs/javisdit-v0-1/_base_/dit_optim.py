# Optimisation of the diffusion transformer (stages 1 and 3): AdamW with a tiny eps, linear warm-up,
# gradient clipping, EMA of the weights.
load = None
lr = 1e-4
warmup_steps = 1000
ema_decay = 0.99
adam_eps = 1e-15
grad_clip = 1.0
