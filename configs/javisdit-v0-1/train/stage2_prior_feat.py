# Stage 2 from pre-extracted latents (scripts/misc/extract_feat.py with misc/extract_st_prior_va.py):
# no VAE is loaded.
_base_ = ["../_base_/run.py", "../_base_/stib_train.py"]

dataset = dict(type="BatchFeatureDataset", data_path=None)
load_va_features = True
load_text_features = False
num_workers = 4
num_bucket_build_workers = 16

epochs = 2
ckpt_every = 200
load = None
lr = 1e-5
warmup_steps = 100
grad_clip = 1.0
