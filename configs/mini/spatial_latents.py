# JavisDiT-mini, stage 0b (1 of 2): the trained spatial VAE's latents of one random 17-frame window of every
# training clip, computed once, so that the temporal VAE (vae_video.py) trains without running it:
#   python scripts/misc/extract_feat.py configs/mini/spatial_latents.py --save-dir runs/mini/spatial_latents
_base_ = ["./extract_va.py"]

vae = dict(from_pretrained="./runs/mini/vae_video_spatial/model")
audio_vae = None  # video only
video_latents = "spatial"
dataset = dict(data_path="./data/mini/vae.csv")
bucket_config = {"_delete_": True, "64": {17: (1.0, 8)}}
