# Extract video/audio latents for stage 3 (train/stage3_jav_feat.py) with scripts/misc/extract_feat.py.
_base_ = ["../_base_/jav_data.py", "../_base_/vaes.py", "../_base_/audio.py", "../_base_/extract.py"]

num_workers = 8
bin_size = 64
