# Video + audio + caption clips, read window by window, in multi-resolution buckets (stages 2 and 3).
dataset = dict(
    type="VariableVideoAudioTextDataset",
    data_path=None,
    direct_load_video_clip=True,
    transform_name="resize_crop",
    audio_transform_name="mel_spec_audioldm2",
)

# {resolution: {num_frames: (accept probability, batch size per GPU)}}; a probability may be a pair
# (resolution, frame count).
bucket_config = {
    "144p": {51: (1.0, 16), 102: ((1.0, 0.5), 12), 204: ((1.0, 0.5), 6), 408: (1.0, 3)},
    "256": {51: (0.5, 10), 102: ((0.5, 0.5), 4), 204: ((0.5, 0.5), 2), 408: (1.0, 1)},
    "240p": {51: (0.5, 10), 102: ((0.5, 0.5), 4), 204: ((0.5, 0.5), 2), 408: (1.0, 1)},
    "360p": {51: (0.3, 4), 102: ((0.3, 0.5), 2), 204: ((0.3, 0.5), 1)},
    "512": {51: (0.2, 4), 102: ((0.2, 0.5), 2), 204: ((0.2, 0.4), 1)},
    "480p": {51: (0.2, 2), 102: ((0.2, 0.5), 1)},
    "720p": {51: (0.03, 1)},
    "1024": {51: (0.03, 1)},
}
