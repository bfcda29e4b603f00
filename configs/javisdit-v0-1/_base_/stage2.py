# Stage-2 model and optimisation, shared by stage2_prior*.py.
_base_ = ["./stib_train.py"]

load_text_features = False
num_workers = 4
num_bucket_build_workers = 16

epochs = 2
ckpt_every = 200
load = None
lr = 1e-5
warmup_steps = 100
grad_clip = 1.0
