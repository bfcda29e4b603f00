# Stage-2 model and optimisation, shared by stage2_prior*.py.
_base_ = ["./stib_train.py"]

num_workers = 4

epochs = 2
ckpt_every = 200
load = None
lr = 1e-5
warmup_steps = 100
grad_clip = 1.0
