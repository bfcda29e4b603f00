# Stage 2: train the ST-prior estimator contrastively against spatially/temporally asynchronous
# negatives built online from each clip.
_base_ = ["../_base_/run.py", "../_base_/prior_negatives.py", "../_base_/vaes.py",
          "../_base_/audio.py", "../_base_/stib_train.py"]

load_text_features = False
num_workers = 4
num_bucket_build_workers = 16

epochs = 2
ckpt_every = 200
load = None
lr = 1e-5
warmup_steps = 100
grad_clip = 1.0
