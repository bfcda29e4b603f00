# JavisDiT-mini's training timesteps: uniform on (0, 1000) without v0.1's resolution shift. The shift
# (0.48 at 64x64 with 51 frames) leaves the noisiest quarter of the schedule, where the background and the
# ball's colour are decided, with few samples; the mini trains few steps, so it covers every level evenly.
scheduler = dict(
    type="rflow",
    use_timestep_transform=False,
    sample_method="uniform",
)
