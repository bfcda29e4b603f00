# What every JavisDiT-mini training stage shares: fp32 on the CPU (DDP; ZeRO-2 on CUDA), logged every 20
# steps. The clips are 54 frames at 64x64 (2.25 s; data/mini.md); the stages train on random windows of 51
# frames (2.125 s), since a bucket of T frames takes the clips longer than T.
_base_ = ["../../javisdit-v0-1/_base_/run.py", "../../javisdit-v0-1/_base_/audio.py"]

dtype = "fp32"
grad_checkpoint = False
num_workers = 2
log_every = 20
save_total_limit = 1
outputs = "runs/mini"
dataset = dict(
    type="VariableVideoAudioTextDataset",
    data_path="./data/mini/stage3_jav.csv",
    transform_name="resize_crop",
    audio_transform_name="mel_spec_audioldm2",
)
