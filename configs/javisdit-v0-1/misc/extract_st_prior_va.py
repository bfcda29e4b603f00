# Extract latents of clips and their asynchronous negatives for stage 2 (train/stage2_prior_feat.py).
_base_ = ["../_base_/prior_negatives.py", "../_base_/vaes.py", "../_base_/audio.py", "../_base_/extract.py"]

dataset = dict(require_onset=True)
num_workers = 4
bin_size = 16
