"""Rectified flow against values worked out by hand."""

import math

import pytest
import torch

from javisdit.errors import ConfigError
from javisdit.registry import SCHEDULERS, build_module
from javisdit.schedulers.rflow import RFlow, foreground_weights, timestep_transform


def test_registered():
    s = build_module(dict(type="rflow", use_timestep_transform=True, num_sampling_steps=30, cfg_scale=7.0), SCHEDULERS)
    assert isinstance(s, RFlow) and s.num_sampling_steps == 30 and s.cfg_scale == 7.0


def test_add_noise():
    s = RFlow()
    x0, noise = torch.ones(2, 3), torch.zeros(2, 3)
    out = s.add_noise(x0, noise, torch.tensor([250.0, 1000.0]))
    torch.testing.assert_close(out, torch.tensor([[0.75] * 3, [0.0] * 3]))


@pytest.mark.parametrize(
    "h, w, frames, t, expected_ratio",
    [(240, 426, 102, 500.0, math.sqrt(240 * 426) / 512 * math.sqrt(30)),
     (144, 256, 51, 300.0, math.sqrt(144 * 256) / 512 * math.sqrt(15)),
     (720, 1280, 102, 800.0, math.sqrt(720 * 1280) / 512 * math.sqrt(30)),
     (512, 512, 1, 400.0, 1.0)],
)
def test_timestep_transform(h, w, frames, t, expected_ratio):
    tau = t / 1000
    expected = 1000 * expected_ratio * tau / (1 + (expected_ratio - 1) * tau)
    assert timestep_transform(torch.tensor([t]), h, w, frames).item() == pytest.approx(expected, rel=1e-6)
    assert timestep_transform(torch.tensor([1000.0]), h, w, frames).item() == pytest.approx(1000.0)
    assert timestep_transform(torch.tensor([0.0]), h, w, frames).item() == 0.0


def test_schedule_with_and_without_shift():
    plain = RFlow(num_sampling_steps=4)
    assert [round(t.item(), 4) for t in plain.timesteps(240, 426, 102)] == [1000.0, 750.0, 500.0, 250.0]
    shifted = RFlow(num_sampling_steps=4, use_timestep_transform=True)
    r = math.sqrt(240 * 426) / 512 * math.sqrt(30)
    assert shifted.timesteps(240, 426, 102)[2].item() == pytest.approx(1000 * r * 0.5 / (1 + (r - 1) * 0.5))


class ConstantVelocity:
    """A fake model: velocity c·(1 + is_conditional) for every element, plus a 'sigma' half."""

    def __init__(self, value=1.0):
        self.value, self.calls = value, []

    def __call__(self, x, timestep, y, **kwargs):
        self.calls.append(dict(x={k: v.clone() for k, v in x.items()}, timestep=timestep.clone(), y=y, **kwargs))
        B = next(iter(x.values())).shape[0]
        scale = torch.ones(B)
        scale[: B // 2] = 2.0  # conditional half: velocity 2c, unconditional: c
        return {k: torch.cat([v * 0 + self.value * scale.view(-1, *[1] * (v.dim() - 1))] * 2, dim=1)
                for k, v in x.items()}


def test_one_sampling_step_by_hand():
    s = RFlow(num_sampling_steps=1, cfg_scale=3.0)
    model = ConstantVelocity(0.5)
    z = {"video": torch.zeros(1, 4, 2, 2, 2), "audio": torch.full((1, 8, 4, 2), 1.0)}
    out = s.sample(model, z, dict(y=torch.zeros(2, 1, 3, 5)), clip_size=(17, 64, 64))
    # one Euler step from t=1000 with dt=1: v = vu + 3(vc - vu) = 0.5 + 3·0.5 = 2.0
    torch.testing.assert_close(out["video"], torch.full((1, 4, 2, 2, 2), 2.0))
    torch.testing.assert_close(out["audio"], torch.full((1, 8, 4, 2), 3.0))
    call = model.calls[0]
    assert call["x"]["video"].shape[0] == 2 and call["timestep"].tolist() == [1000.0, 1000.0]
    assert "x_mask" not in call  # no masks: no t0 modulation work


def test_guidance_scale_per_modality_by_hand():
    s = RFlow(num_sampling_steps=1, cfg_scale={"video": 1.0, "audio": 3.0})
    z = {"video": torch.zeros(1, 4, 2, 2, 2), "audio": torch.zeros(1, 8, 4, 2)}
    out = s.sample(ConstantVelocity(0.5), z, dict(y=None), clip_size=(17, 64, 64))
    # video: the conditional velocity 1.0; audio: 0.5 + 3·0.5 = 2.0
    torch.testing.assert_close(out["video"], torch.full_like(z["video"], 1.0))
    torch.testing.assert_close(out["audio"], torch.full_like(z["audio"], 2.0))
    with pytest.raises(ValueError, match="cfg_scale names audio but the sampler generates audio, video"):
        s.sample(ConstantVelocity(), z, dict(y=None), clip_size=(17, 64, 64), cfg_scale={"audio": 2.0})


def test_guidance_interval_by_hand():
    # 4 steps at t = 1000, 750, 500, 250, each dt = 0.25; guidance 3 only where 0.3 <= t/1000 <= 0.6 (t = 500):
    # velocities 1 (conditional alone: 2·0.5), 1, 2 (0.5 + 3·0.5), 1
    s = RFlow(num_sampling_steps=4, cfg_scale=3.0, cfg_interval=(0.3, 0.6))
    out = s.sample(ConstantVelocity(0.5), {"audio": torch.zeros(1, 8, 4, 2)}, dict(y=None), clip_size=(17, 64, 64))
    torch.testing.assert_close(out["audio"], torch.full((1, 8, 4, 2), 0.25 * (1 + 1 + 2 + 1)))
    every = RFlow(num_sampling_steps=4, cfg_scale=3.0, cfg_interval=(0.0, 1.0))
    out = every.sample(ConstantVelocity(0.5), {"audio": torch.zeros(1, 8, 4, 2)}, dict(y=None), clip_size=(17, 64, 64))
    torch.testing.assert_close(out["audio"], torch.full((1, 8, 4, 2), 2.0))
    # one interval per modality; audio, not named, is guided at every step
    apart = RFlow(num_sampling_steps=4, cfg_scale=3.0, cfg_interval={"video": (0.3, 0.6)})
    z = {"video": torch.zeros(1, 4, 2, 2, 2), "audio": torch.zeros(1, 8, 4, 2)}
    out = apart.sample(ConstantVelocity(0.5), z, dict(y=None), clip_size=(17, 64, 64))
    torch.testing.assert_close(out["video"], torch.full_like(z["video"], 0.25 * (1 + 1 + 2 + 1)))
    torch.testing.assert_close(out["audio"], torch.full_like(z["audio"], 2.0))


class SyncVelocity:
    """A fake VASTDiT3 for sync guidance: velocity 2 for a conditional sample (y = 1), 1 for an
    unconditional one (y = 0), and 0.5 less for a conditional one while ``skip_sync`` names va_cross."""

    has_va_cross = True

    def __init__(self):
        self.skip_sync, self.calls = frozenset(), []

    def __call__(self, x, timestep, y, **kwargs):
        self.calls.append((next(iter(x.values())).shape[0], timestep.shape[0], y.shape[0], self.skip_sync))
        v = 1.0 + y - 0.5 * y * ("va_cross" in self.skip_sync)
        return {k: t * 0 + v.view(-1, *[1] * (t.dim() - 1)) for k, t in x.items()}


def test_sync_guidance_by_hand():
    # velocity = uncond + s·(cond - uncond) + g·(cond - cond without the cross-attention):
    # audio 1 + 3·1 + 2·0.5 = 5, video (g = 0) 1 + 3·1 = 4; two steps, dt 0.5 each
    s = RFlow(num_sampling_steps=2, cfg_scale=3.0, sync_guidance={"audio": 2.0})
    z = {"video": torch.zeros(2, 4, 2, 2, 2), "audio": torch.zeros(2, 8, 4, 2)}
    model = SyncVelocity()
    out = s.sample(model, z, dict(y=torch.tensor([1.0, 1.0, 0.0, 0.0])), clip_size=(17, 64, 64))
    torch.testing.assert_close(out["audio"], torch.full_like(z["audio"], 5.0))
    torch.testing.assert_close(out["video"], torch.full_like(z["video"], 4.0))
    # per step: the guided 2B call, then the same batch without the cross-attention; restored after
    assert model.calls == [(4, 4, 4, frozenset()), (4, 4, 4, frozenset({"va_cross"}))] * 2
    assert model.skip_sync == frozenset()
    # one scale for both modalities
    out = RFlow(num_sampling_steps=2, cfg_scale=3.0, sync_guidance=2.0).sample(
        SyncVelocity(), z, dict(y=torch.tensor([1.0, 1.0, 0.0, 0.0])), clip_size=(17, 64, 64))
    torch.testing.assert_close(out["video"], torch.full_like(z["video"], 5.0))
    # with the cross-attention already skipped (an ablation) there is nothing to guide with: the plain sampler
    model = SyncVelocity()
    model.skip_sync = frozenset({"va_cross"})
    out = s.sample(model, z, dict(y=torch.tensor([1.0, 1.0, 0.0, 0.0])), clip_size=(17, 64, 64))
    assert len(model.calls) == 2
    torch.testing.assert_close(out["audio"], torch.full_like(z["audio"], 1 + 3 * 0.5))
    # the sound given (all its frames kept, as in a2v): nothing to guide, one call per step
    model, keep_sound = SyncVelocity(), {"video": torch.ones(2, 2), "audio": torch.zeros(2, 4)}
    out = s.sample(model, dict(z), dict(y=torch.tensor([1.0, 1.0, 0.0, 0.0])), clip_size=(17, 64, 64),
                   masks=keep_sound, generator=torch.Generator().manual_seed(0))
    assert len(model.calls) == 2
    plain = RFlow(num_sampling_steps=2, cfg_scale=3.0).sample(
        SyncVelocity(), dict(z), dict(y=torch.tensor([1.0, 1.0, 0.0, 0.0])), clip_size=(17, 64, 64),
        masks=keep_sound, generator=torch.Generator().manual_seed(0))
    torch.testing.assert_close(out["audio"], z["audio"])
    torch.testing.assert_close(out["video"], plain["video"])
    # 0 (the default) is the plain sampler: one call per step
    model = SyncVelocity()
    RFlow(num_sampling_steps=2, cfg_scale=3.0).sample(model, z, dict(y=torch.tensor([1.0, 1.0, 0.0, 0.0])),
                                                      clip_size=(17, 64, 64))
    assert len(model.calls) == 2


def test_sync_guidance_refused_where_it_cannot_work():
    with pytest.raises(ConfigError, match="sync_guidance must be a finite number or one per modality"):
        RFlow(sync_guidance={"sound": 1.0})
    with pytest.raises(ConfigError, match="sync_guidance must be a finite number"):
        RFlow(sync_guidance=float("nan"))
    s = RFlow(num_sampling_steps=2, sync_guidance={"audio": 1.0})
    with pytest.raises(ConfigError, match="which ConstantVelocity does not have"):
        s.sample(ConstantVelocity(), {"video": torch.zeros(1, 4, 2, 2, 2), "audio": torch.zeros(1, 8, 4, 2)},
                 dict(y=None), clip_size=(17, 64, 64))
    # audio-only generation: no picture to guide towards, so the plain sampler (one call per step)
    model = SyncVelocity()
    out = s.sample(model, {"audio": torch.zeros(1, 8, 4, 2)}, dict(y=torch.tensor([1.0, 0.0])),
                   clip_size=(17, 64, 64))
    assert len(model.calls) == 2
    torch.testing.assert_close(out["audio"], torch.full((1, 8, 4, 2), 5.0))  # the default scale 4: 1 + 4·1


def test_two_steps_use_the_schedule_differences():
    s = RFlow(num_sampling_steps=2, cfg_scale=1.0)  # guidance 1: the conditional velocity
    out = s.sample(ConstantVelocity(1.0), {"audio": torch.zeros(1, 8, 4, 2)}, dict(y=None), clip_size=(17, 64, 64))
    torch.testing.assert_close(out["audio"], torch.full((1, 8, 4, 2), 2.0 * (0.5 + 0.5)))


def test_all_ones_masks_are_free_and_identical():
    s = RFlow(num_sampling_steps=3)
    z = {"video": torch.randn(1, 4, 3, 2, 2), "audio": torch.randn(1, 8, 4, 2)}
    plain, masked = ConstantVelocity(), ConstantVelocity()
    a = s.sample(plain, dict(z), dict(y=None), clip_size=(17, 64, 64))
    b = s.sample(masked, dict(z), dict(y=None), clip_size=(17, 64, 64),
                 masks={"video": torch.ones(1, 3), "audio": torch.ones(1, 4)})
    for k in z:
        torch.testing.assert_close(a[k], b[k])
    assert all("x_mask" not in c for c in masked.calls)


def test_kept_frames_stay_the_reference():
    s = RFlow(num_sampling_steps=3)
    reference = torch.randn(1, 4, 3, 2, 2)
    mask = torch.tensor([[0.0, 1.0, 1.0]])  # keep frame 0
    model = ConstantVelocity()
    out = s.sample(model, {"video": reference.clone()}, dict(y=None), clip_size=(17, 64, 64), masks={"video": mask})
    torch.testing.assert_close(out["video"][:, :, 0], reference[:, :, 0])
    assert not torch.allclose(out["video"][:, :, 1], reference[:, :, 1])
    assert model.calls[0]["x_mask"].tolist() == [[False, True, True]] * 2


def test_partial_masks_renoise_each_row_from_its_own_generator():
    # a half-kept frame is re-noised from the sample's generator: row 1 does not depend on row 0
    s = RFlow(num_sampling_steps=3)
    reference = torch.randn(2, 4, 3, 2, 2, generator=torch.Generator().manual_seed(3))
    mask = torch.tensor([[0.5, 1.0, 1.0]] * 2)

    def run(rows, seeds):
        gens = [torch.Generator().manual_seed(seed) for seed in seeds]
        return s.sample(ConstantVelocity(), {"video": reference[rows].clone()}, dict(y=None), clip_size=(17, 64, 64),
                        masks={"video": mask[rows]}, generator=gens)["video"]

    both = run([0, 1], [10, 11])
    torch.testing.assert_close(both[1:], run([1], [11]))
    torch.testing.assert_close(both[:1], run([0], [10]))
    assert not torch.allclose(both[:, :, 0], reference[:, :, 0])  # the half-kept frame was re-noised


def test_training_loss_by_hand():
    s = RFlow()
    x0 = {"video": torch.ones(2, 1, 2, 1, 1), "audio": torch.zeros(2, 1, 4, 1)}
    noise = {"video": torch.zeros(2, 1, 2, 1, 1), "audio": torch.ones(2, 1, 4, 1)}

    def model(x, timestep, **kw):  # predicts 0 everywhere (plus a sigma half)
        return {k: torch.zeros(v.shape[0], 2 * v.shape[1], *v.shape[2:]) for k, v in x.items()}

    t = torch.tensor([100.0, 900.0])
    losses = s.training_losses(model, x0, {}, t, noise=noise)
    # target x0 - noise: video 1, audio -1 -> squared error 1 everywhere
    torch.testing.assert_close(losses["video"], torch.ones(2))
    torch.testing.assert_close(losses["loss"], torch.full((2,), 2.0))
    audio_only = s.training_losses(model, x0, {}, t, noise=noise, modalities=("audio",))
    torch.testing.assert_close(audio_only["loss"], torch.ones(2))


def test_training_loss_masks_conditioning_frames():
    s = RFlow()
    x0 = {"video": torch.ones(1, 1, 2, 1, 1)}
    noise = {"video": torch.zeros(1, 1, 2, 1, 1)}
    seen = {}

    def model(x, timestep, x_mask=None, ax_mask=None):
        seen.update(x=x["video"].clone(), x_mask=x_mask)
        pred = torch.tensor([0.0, 3.0]).view(1, 1, 2, 1, 1)  # errors 1 (frame 0) and 4 (frame 1)
        return {"video": torch.cat([pred, pred], dim=1)}

    losses = s.training_losses(model, x0, {}, torch.tensor([500.0]), noise=noise,
                               masks={"video": torch.tensor([[False, True]])})
    assert losses["video"].item() == pytest.approx(4.0)  # only the generated frame counts
    torch.testing.assert_close(seen["x"][0, 0, :, 0, 0], torch.tensor([1.0, 0.5]))  # clean frame stays x0
    assert seen["x_mask"].tolist() == [[False, True]]
    all_clean = s.training_losses(model, x0, {}, torch.tensor([500.0]), noise=noise,
                                  masks={"video": torch.tensor([[False, False]])})
    assert all_clean["video"].item() == 0.0


def test_foreground_weights_by_hand():
    # one clip of 4 latent pixels, 2 channels: background (0, 0) three times, a "ball" at (2, -1) once
    x0 = torch.zeros(1, 2, 1, 2, 2)
    x0[0, :, 0, 1, 1] = torch.tensor([2.0, -1.0])
    w = foreground_weights(x0, strength=4.0)
    assert w.shape == (1, 1, 1, 2, 2)
    # d = L1 distance from the per-channel median (0, 0): 0, 0, 0, 3; mean(d) = 0.75 -> 1 + 4·d/0.75
    torch.testing.assert_close(w.flatten(), torch.tensor([1.0, 1.0, 1.0, 17.0]))
    torch.testing.assert_close(foreground_weights(torch.full((1, 2, 1, 2, 2), 3.0), 4.0), torch.ones(1, 1, 1, 2, 2))


def test_foreground_weighted_video_loss_by_hand():
    x0 = torch.zeros(1, 1, 1, 1, 4)
    x0[..., 3] = 1.0  # the one foreground pixel: d = (0, 0, 0, 1), mean 0.25 -> weights 1, 1, 1, 1 + 2·4 = 9
    noise = torch.zeros_like(x0)
    audio = torch.zeros(1, 1, 4, 1)

    def model(x, timestep, **kw):  # squared errors 1, 0, 0, 4 on video (target x0 - noise = x0), 1 on audio
        pred = torch.tensor([1.0, 0.0, 0.0, 3.0]).view(1, 1, 1, 1, 4)
        return {"video": torch.cat([pred, pred], dim=1), "audio": torch.ones(1, 2, 4, 1)}

    t = torch.tensor([500.0])
    plain = RFlow().training_losses(model, {"video": x0, "audio": audio}, {}, t, noise={"video": noise, "audio": audio})
    assert plain["video"].item() == pytest.approx(5 / 4)
    weighted = RFlow(foreground_weight=2.0).training_losses(model, {"video": x0, "audio": audio}, {}, t,
                                                            noise={"video": noise, "audio": audio})
    assert weighted["video"].item() == pytest.approx((1 + 9 * 4) / 12)  # sum(w·err) / sum(w)
    assert weighted["audio"].item() == plain["audio"].item() == 1.0  # audio keeps the plain mean
    masked = RFlow(foreground_weight=2.0).training_losses(model, {"video": x0.expand(1, 1, 2, 1, 4).clone()}, {},
                                                          t, noise={"video": noise.expand(1, 1, 2, 1, 4).clone()},
                                                          masks={"video": torch.tensor([[True, False]])})
    # two identical frames, d = (0,0,0,1) each: mean 0.25 over the clip -> the same weights; frame 1 is clean
    assert masked["video"].item() == pytest.approx((1 + 9 * 4) / 12)


def test_bad_arguments():
    with pytest.raises(ValueError, match="sample_method must be 'uniform' or 'logit-normal'"):
        RFlow(sample_method="cosine")
    with pytest.raises(ValueError, match="num_sampling_steps must be >= 1"):
        RFlow(num_sampling_steps=0)
    for bad in (-1.0, math.inf, True, "2"):
        with pytest.raises(ValueError, match="foreground_weight must be a finite number >= 0"):
            RFlow(foreground_weight=bad)
    for bad in ("7", math.nan, True, {"video": "1"}, {}):
        with pytest.raises(ValueError, match="cfg_scale must be a finite number or a mapping of modality"):
            RFlow(cfg_scale=bad)
    for bad in ((0.6, 0.3), (-0.1, 0.5), (0.0, 1.5), (0.5,), "ab", {"video": (0.0, 2.0)}):
        with pytest.raises(ValueError, match=r"cfg_interval must be \(low, high\) with 0 <= low <= high <= 1"):
            RFlow(cfg_interval=bad)


def test_training_timesteps_in_range():
    s = RFlow(sample_method="logit-normal", use_timestep_transform=True)
    t = s.sample_timesteps(1000, 240, 426, 102, generator=torch.Generator().manual_seed(0))
    assert t.shape == (1000,) and (t > 0).all() and (t < 1000).all()
    assert t.median() > 500  # the shift pushes towards noise for a 240p clip


def test_short_clips_get_a_finite_shift():
    # fewer than 17 frames: 3 latent frames (the original's formula gave 0 and NaN at t = 1000)
    t = timestep_transform(torch.tensor([1000.0, 500.0]), 32, 48, 9)
    r = math.sqrt(32 * 48) / 512 * math.sqrt(3)
    torch.testing.assert_close(t, torch.tensor([1000.0, 1000 * r * 0.5 / (1 + (r - 1) * 0.5)]))
