# Stage-2 feature extraction at test size: clips, their asynchronous negatives (the default pools are
# absent, so the pool-based operations fall back, as in tiny/stage2_prior.py) and onsets, one batch a bin.
_base_ = ["../javisdit-v0-1/misc/extract_st_prior_va.py"]

dtype = "fp32"
bucket_config = {"_delete_": True, "144p": {17: (1.0, 2)}}  # replaces the whole table
num_workers = 0
bin_size = 1
# tiny random VAEs, built locally (no download)
vae = dict(from_pretrained=None, preset="tiny")
audio_vae = dict(from_pretrained=None, preset="tiny")
