# JavisDiT-mini's training timesteps: uniform on (0, 1000) without v0.1's resolution shift. The shift
# (0.48 at 64x64 with 51 frames) leaves the noisiest quarter of the schedule, where the background and the
# ball's colour are decided, with few samples; the mini trains few steps, so it covers every level evenly.
# The video loss is weighted towards the balls (``foreground_weight``, not in v0.1: a ball covers a few of a
# frame's 64 latent pixels, so its colour weighs little in the plain mean). Video branch alone, 3,300 steps,
# colour found in the frames of 20 captions at cfg 7 (2026-12-02): weight 0 / 4 / 20 / 100 gave 0.535 /
# 0.568 / 0.622 / 0.618 on training captions and 0.265 / - / 0.332 / 0.317 on held-out ones (past ~20 the
# constant 1 hardly counts, and Adam's steps do not depend on the loss's scale).
scheduler = dict(
    type="rflow",
    use_timestep_transform=False,
    sample_method="uniform",
    foreground_weight=20.0,
)
