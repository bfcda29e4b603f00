# Stage-3 feature extraction at test size: tiny random VAEs encode a few clips on CPU, one batch a bin.
_base_ = ["../javisdit-v0-1/misc/extract_va.py"]

dtype = "fp32"
bucket_config = {"_delete_": True, "144p": {17: (1.0, 2)}}  # replaces the whole table
num_workers = 0
bin_size = 1
# tiny random VAEs, built locally (no download)
vae = dict(from_pretrained=None, preset="tiny")
audio_vae = dict(from_pretrained=None, preset="tiny")
