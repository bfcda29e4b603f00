# What JavisDiT++ inference shares: 16 fps, 240p 9:16, 50 Euler steps with guidance 5 against a fixed negative
# prompt (Wan2.1's, followed by an audio part), one scale for both modalities; the prompt is read as written.
resolution = "240p"
aspect_ratio = "9:16"
num_frames = "65"  # 4.06 s at 16 fps (the Wan VAE encodes 1 + 4k frames); "4s" and "5s" give 65 and 81
fps = 16
frame_interval = 1
save_fps = 16
save_dir = "./samples/javisdit-v1-0/"
seed = 42
batch_size = 1
dtype = "bf16"
verbose = 2
aes = None
flow = None
use_text_preprocessing = False

scheduler = dict(
    type="rflow",
    use_timestep_transform=True,
    num_sampling_steps=50,
    cfg_scale=5.0,
    transform_scale=5.0,  # training's shift scale; sampling uses 1, as upstream (spec §9.4, §14.1)
    shift_formula="upstream",  # the original's bf16 ratio with num_frames // 17 * 5 latent frames (§9.4)
)
neg_prompt = (
    "色调艳丽，过曝，静态，细节模糊不清，字幕，风格，作品，画作，画面，静止，整体发灰，最差质量，低质量，JPEG压缩残留，丑陋的，"
    "残缺的，多余的手指，画得不好的手部，画得不好的脸部，畸形的，毁容的，形态畸形的肢体，手指融合，静止不动的画面，杂乱的背景，"
    "三条腿，背景人很多，倒着走，低音质，差音质，最差音质，噪音，失真的，破音，削波失真，数字瑕疵，声音故障，不自然的，刺耳的，"
    "尖锐的，底噪，过多混响，过多回声，突兀的剪辑，不自然的淡出，录音质量差，业余录音"
)
