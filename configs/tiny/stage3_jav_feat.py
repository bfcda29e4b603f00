# Stage 3 at test size from pre-extracted latents (scripts/misc/extract_feat.py with
# configs/tiny/extract_va.py), like train/stage3_jav_feat.py: no VAE is built; the tiny T5 and prior
# still encode the captions.
_base_ = ["./stage3_jav.py"]

dataset = dict(_delete_=True, type="BatchFeatureDataset", data_path=None)
load_va_features = True
vae = None
audio_vae = None
bucket_config = None
