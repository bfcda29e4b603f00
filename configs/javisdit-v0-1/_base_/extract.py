# Shared by the feature-extraction configs.
num_bucket_build_workers = 16
epochs = 1000
ckpt_every = 50
log_time = False
