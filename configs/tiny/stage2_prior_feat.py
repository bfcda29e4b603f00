# Stage 2 at test size from pre-extracted latents (scripts/misc/extract_feat.py with
# configs/tiny/extract_st_prior_va.py), like train/stage2_prior_feat.py: no VAE is built.
_base_ = ["./stage2_prior.py"]

dataset = dict(_delete_=True, type="BatchFeatureDataset", data_path=None)
load_va_features = True
vae = None
audio_vae = None
bucket_config = None
