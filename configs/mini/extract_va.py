# JavisDiT-mini: the clips' video and audio latents, computed once by the trained autoencoders (posterior
# samples, seeded), so that the video branch and stage 3 train without running the VAEs:
#   python scripts/misc/extract_feat.py configs/mini/extract_va.py --save-dir runs/mini/features
_base_ = ["../javisdit-v0-1/_base_/audio.py", "./_base_/encoders.py"]

text_encoder = None  # the captions stay text; the stages encode them
dtype = "fp32"
seed = 42
num_workers = 2
dataset = dict(
    type="VariableVideoAudioTextDataset",
    data_path="./data/mini/stage3_jav.csv",
    transform_name="resize_crop",
    audio_transform_name="mel_spec_audioldm2",
)
bucket_config = {"64": {51: (1.0, 8)}}
bin_size = 16
