# Share of training samples per conditioning task (the rest, 0.70, is plain joint generation). The
# order matters: a task is drawn by comparing one uniform number with the cumulative ratios.
mask_ratios = dict(
    random=0.01,
    video_to_audio=0.05,
    audio_to_video=0.05,
    sound_image_animate=0.03,
    intepolate=0.03,  # sic: the original's name
    quarter_random=0.005,
    quarter_head=0.05,
    quarter_tail=0.005,
    quarter_head_tail=0.005,
    image_random=0.005,
    image_head=0.05,
    image_tail=0.005,
    image_head_tail=0.005,
)
