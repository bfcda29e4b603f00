# Stage 1: train the audio branch on audio-caption pairs, initialised from Open-Sora's STDiT-v3 video
# branch (audio blocks are copied from the video blocks). Video inputs are placeholders.
_base_ = ["../_base_/run.py", "../_base_/encoders.py", "../_base_/audio.py", "../_base_/vastdit3.py",
          "../_base_/rflow_train.py", "../_base_/dit_optim.py"]

audio_only = True
load_text_features = False
dataset = dict(
    type="VariableVideoAudioTextDataset",
    data_path=None,
    transform_name="resize_crop",
    audio_transform_name="mel_spec_audioldm2",
    audio_only=True,
)
# Audio only, so one small video size; the batch sizes fill about 45 GB per GPU.
bucket_config = {
    "144p": {51: (1.0, 256), 102: ((1.0, 0.7), 128), 204: ((1.0, 0.3), 64), 408: ((1.0, 0.5), 32)},
}
num_workers = 16

model = dict(
    weight_init_from=["./checkpoints/OpenSora-STDiT-v3/model.safetensors"],
    only_train_audio=True,
    freeze_video_branch=True,
    freeze_y_embedder=False,
    train_st_prior_attn=False,
    train_va_cross_attn=False,
)

epochs = 50
ckpt_every = 250
