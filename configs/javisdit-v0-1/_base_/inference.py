# What every inference config shares: clip size, sampling, output.
resolution = "240p"
aspect_ratio = "9:16"
num_frames = "4s"
fps = 24
frame_interval = 1
save_fps = 24

save_dir = "./samples/samples/"
seed = 42
batch_size = 1
dtype = "bf16"
verbose = 2

aes = 6.5
flow = None

scheduler = dict(
    type="rflow",
    use_timestep_transform=True,
    num_sampling_steps=30,
    cfg_scale=7.0,
)
