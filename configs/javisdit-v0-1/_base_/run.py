# What every training and feature-extraction config shares.
dtype = "bf16"
plugin = "zero2"
grad_checkpoint = True
seed = 42
outputs = "runs"  # the original configs say "outputs"; its README (and ours) expect runs/
wandb = False
log_every = 10
save_total_limit = 2
