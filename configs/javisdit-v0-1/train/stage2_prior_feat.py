# Stage 2 from pre-extracted latents (scripts/misc/extract_feat.py with misc/extract_st_prior_va.py):
# no VAE is loaded.
_base_ = ["../_base_/run.py", "../_base_/stage2.py"]

dataset = dict(type="BatchFeatureDataset", data_path=None)
load_va_features = True
