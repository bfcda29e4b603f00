# JavisDiT-mini, stage 0b (1 of 2): the trained spatial VAE's latents of one random 17-frame window of every
# training clip, computed once, so that the temporal VAE (vae_video.py) trains without running it:
#   python scripts/misc/extract_feat.py configs/mini/spatial_latents.py --save-dir runs/mini/spatial_latents
_base_ = ["./_base_/vaes.py"]

vae = dict(from_pretrained="./runs/mini/vae_video_spatial/model")
audio_vae = None  # video only
video_latents = "spatial"
dtype = "fp32"
seed = 42
num_workers = 2
dataset = dict(
    type="VariableVideoAudioTextDataset",
    data_path="./data/mini/vae.csv",
    transform_name="resize_crop",
    audio_transform_name="mel_spec_audioldm2",
)
bucket_config = {"64": {17: (1.0, 8)}}
bin_size = 16
