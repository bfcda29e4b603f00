"""Step caching and the cosine spacing of the rectified-flow sampler, against hand-computed decisions and
the exact sampler."""

import json
import logging
import math

import pytest
import torch
import torch.nn.functional as F

from conftest import TINY_VA
from javisdit.models.stdit.blocks import CrossModalityBiAttentionBlock, CrossSTDiT3Block, FinalLayer, STDiT3Block
from javisdit.registry import MODELS, SCHEDULERS, build_module
from javisdit.schedulers.rflow import RFlow
from javisdit.schedulers.step_cache import StepCache, relative_l1

CLIP = (9, 64, 64)


pytestmark = pytest.mark.usefixtures("one_thread")


class VelocityStub:
    """A denoiser whose k-th call returns velocity k (conditional half; 0 unconditional); it records
    what it was asked. It has no ``cache_signal`` (as JavisDiT++'s WanModel)."""

    def __init__(self):
        self.calls = []

    def __call__(self, x, timestep, **kwargs):
        self.calls.append(dict(timestep=timestep.clone(), x_mask=kwargs.get("x_mask")))
        value = float(len(self.calls))
        out = {}
        for k, v in x.items():
            half = v.shape[0] // 2
            velocity = torch.cat([torch.full_like(v[:half], value), torch.zeros_like(v[half:])])
            out[k] = torch.cat([velocity, velocity], dim=1)  # plus a "sigma" half
        return out


class SignalStub(VelocityStub):
    """The same denoiser with a cache signal equal to ``signals[i]`` everywhere at step i."""

    def __init__(self, signals):
        super().__init__()
        self.signals, self.signal_calls = signals, 0

    def cache_signal(self, x, timestep, **kwargs):
        value = self.signals[self.signal_calls]
        self.signal_calls += 1
        return torch.full((2, 3, 4), value)


def euler(velocities, dts):
    """z after Euler steps from 0 with per-step velocities and step sizes, in the sampler's fp32 order."""
    z = torch.zeros(())
    for v, dt in zip(velocities, dts):
        z = z + torch.tensor(v) * dt
    return z


# ----- the decision rule ---------------------------------------------------------------------------------


def test_relative_l1_by_hand():
    assert relative_l1(torch.tensor([1.0, -3.0]), torch.tensor([2.0, -2.0])) == pytest.approx(2 / 4)
    assert relative_l1(torch.zeros(3), torch.zeros(3)) == 0.0
    assert relative_l1(torch.ones(3), torch.zeros(3)) == math.inf


def test_accumulated_threshold_rule_by_hand():
    cache = StepCache(0.1)
    cache.start(8)
    signals = [1.0, 1.05, 1.10, 1.5, 1.52, 1.53, 1.54, 2.0]
    decisions = [cache.compute(i, torch.full((3,), s)) for i, s in enumerate(signals)]
    # changes: 0.05, 0.0476 (sum 0.0976 < 0.1: skip), 0.364 (call), 0.0133, 0.0066, 0.0065 (sum 0.026), last
    assert decisions == [True, False, False, True, False, False, False, True]
    assert (cache.calls, cache.skipped) == (3, 5)
    assert cache.changes[2] == pytest.approx(0.05 / 1.05, rel=1e-5)
    cache.start(3)  # a new run forgets the last signal and the sum
    assert [cache.compute(i, torch.full((3,), 5.0)) for i in range(3)] == [True, False, True]
    assert cache.changes == [0.0, 0.0, 0.0]


def test_force_and_order():
    cache = StepCache(10.0)
    cache.start(4)
    assert [cache.compute(0, torch.ones(2)), cache.compute(1, torch.ones(2), force=True)] == [True, True]
    with pytest.raises(ValueError, match="expects steps in order"):
        cache.compute(3, torch.ones(2))
    with pytest.raises(ValueError, match="threshold must be > 0"):
        StepCache(0.0)


# ----- the sampler ---------------------------------------------------------------------------------------


def test_sampler_follows_the_rule_and_reuses_the_last_output():
    s = RFlow(num_sampling_steps=8, cfg_scale=1.0, cache_threshold=0.1)  # t = 1000, 875, ..., 125: dt = 1/8
    model = SignalStub([1.0, 1.05, 1.10, 1.5, 1.52, 1.53, 1.54, 2.0])
    out = s.sample(model, {"audio": torch.zeros(1, 8, 4, 2)}, {}, clip_size=CLIP)
    assert s.last_computed == [True, False, False, True, False, False, False, True]
    assert s.last_calls == len(model.calls) == 3 and model.signal_calls == 8
    assert [c["timestep"][0].item() for c in model.calls] == [1000.0, 625.0, 125.0]
    # the calls return velocities 1, 2, 3; skipped steps integrate the last one again
    expected = euler([1.0, 1.0, 1.0, 2.0, 2.0, 2.0, 2.0, 3.0], [torch.tensor([0.125])] * 8)
    assert torch.equal(out["audio"], expected.expand(1, 8, 4, 2)) and expected.item() == 1.75


def test_first_and_last_steps_are_always_computed():
    s = RFlow(num_sampling_steps=5, cache_threshold=1e6)
    model = SignalStub([1.0] * 5)
    s.sample(model, {"audio": torch.zeros(1, 8, 4, 2)}, {}, clip_size=CLIP)
    assert s.last_computed == [True, False, False, False, True] and s.last_calls == 2
    one = RFlow(num_sampling_steps=1, cache_threshold=0.5)
    one.sample(SignalStub([1.0]), {"audio": torch.zeros(1, 8, 4, 2)}, {}, clip_size=CLIP)
    assert one.last_computed == [True]


def test_steps_where_the_masks_change_are_computed():
    # frame 0 is kept until t = 500 (mask 0.5): steps t = 1000, 833, 667 generate frames 1-2 only, t = 500 all
    s = RFlow(num_sampling_steps=6, cache_threshold=1e6)
    model = SignalStub([1.0] * 6)
    s.sample(model, {"video": torch.zeros(1, 4, 3, 2, 2)}, {}, clip_size=CLIP,
             masks={"video": torch.tensor([[0.5, 1, 1]])}, generator=torch.Generator().manual_seed(0))
    assert s.last_computed == [True, False, False, True, False, True]
    assert model.calls[0]["x_mask"].tolist() == [[False, True, True]] * 2
    assert model.calls[1]["x_mask"].tolist() == [[True, True, True]] * 2


def test_model_without_cache_signal_follows_the_timestep(caplog):
    # t = 1000, 800, 600, 400, 200: changes 0.2, 0.25 (sum 0.45 >= 0.4: call), 0.333, then the last step
    s = RFlow(num_sampling_steps=5, cache_threshold=0.4)
    with caplog.at_level(logging.INFO, logger="javisdit.schedulers.rflow"):
        for _ in range(2):
            model = VelocityStub()
            s.sample(model, {"audio": torch.zeros(1, 8, 4, 2)}, {}, clip_size=CLIP)
            assert s.last_computed == [True, False, True, False, True] and len(model.calls) == 3
    said = [r.getMessage() for r in caplog.records if "has no cache_signal" in r.getMessage()]
    assert said == ["VelocityStub has no cache_signal: step caching follows the relative change of the timestep"]


@pytest.fixture(scope="module")
def tiny_va():
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(0)
        return build_module(TINY_VA, MODELS).eval()


def _tiny_case():
    """Noise for one clip (3 latent frames of 8x8, 8 audio frames) and the model's 2B conditioning."""
    g = torch.Generator().manual_seed(0)
    kwargs = dict(y=torch.randn(2, 1, 8, 32, generator=g), mask=torch.ones(2, 8, dtype=torch.long),
                  fps=torch.full((2,), 24.0), height=torch.full((2,), 64.0), width=torch.full((2,), 64.0),
                  spatial_prior=torch.randn(2, 32, 128, generator=g),
                  temporal_prior=torch.randn(2, 32, 128, generator=g))
    z = {"video": torch.randn(1, 4, 3, 8, 8, generator=g), "audio": torch.randn(1, 8, 8, 16, generator=g)}
    return z, kwargs


def test_threshold_zero_is_the_exact_sampler(tiny_va, monkeypatch):
    z, kwargs = _tiny_case()
    calls = []
    hook = tiny_va.register_forward_pre_hook(lambda module, args: calls.append(1))
    monkeypatch.setattr(tiny_va, "cache_signal", lambda **kw: pytest.fail("caching is off: no signal"), raising=False)
    s = RFlow(num_sampling_steps=4, cfg_scale=4.0, cache_threshold=0.0, use_timestep_transform=True)
    try:
        out = s.sample(tiny_va, dict(z), kwargs, clip_size=CLIP)
    finally:
        hook.remove()
    assert len(calls) == s.last_calls == 4 and s.last_computed == [True] * 4
    # the sampler before the options existed, written out: one call per step, guidance, Euler
    ts = s.timesteps(64, 64, 9)
    expected = {k: v.float() for k, v in z.items()}
    for i, t in enumerate(ts):
        raw = tiny_va(x={k: torch.cat([v, v]) for k, v in expected.items()}, timestep=t.expand(2), **kwargs)
        dt = (t - ts[i + 1] if i + 1 < len(ts) else t) / 1000
        for k, v in expected.items():
            cond, uncond = raw[k][:, : v.shape[1]].float().chunk(2)
            expected[k] = v + (uncond + 4.0 * (cond - uncond)) * dt
    assert all(torch.equal(out[k], expected[k]) for k in z)


def test_moderate_threshold_on_the_tiny_model(tiny_va):
    z, kwargs = _tiny_case()
    exact = RFlow(num_sampling_steps=20, cfg_scale=4.0).sample(tiny_va, dict(z), kwargs, clip_size=CLIP)
    calls, errors = [], []
    for threshold in (0.2, 0.5):
        s = RFlow(num_sampling_steps=20, cfg_scale=4.0, cache_threshold=threshold)
        out = s.sample(tiny_va, dict(z), kwargs, clip_size=CLIP)
        calls.append(s.last_calls)
        errors.append(max(float((out[k] - exact[k]).norm() / exact[k].norm()) for k in z))
    # measured (random weights, 20 steps): 14 calls at 0.2 with relative L2 0.077; 8 calls at 0.5 with 0.18
    assert 10 <= calls[0] <= 17 and 5 <= calls[1] < calls[0]
    assert errors[0] < 0.15 and errors[1] < 0.3 and errors[0] > 0


# ----- the cache signal of the v0.1 denoisers ------------------------------------------------------------


def _no_blocks(model, monkeypatch):
    def refuse(*args, **kwargs):
        raise AssertionError("cache_signal ran a block")

    for module in model.modules():
        if isinstance(module, (STDiT3Block, CrossSTDiT3Block, CrossModalityBiAttentionBlock, FinalLayer)):
            monkeypatch.setattr(module, "forward", refuse)


def _first_block_input(block, tokens, t_mlp):
    """modulate(LN(tokens), shift, scale) with shift, scale = rows 0 and 1 of the block's 6-row modulation."""
    C = tokens.shape[-1]
    shift = block.scale_shift_table[0] + t_mlp[:, :C]
    scale = block.scale_shift_table[1] + t_mlp[:, C : 2 * C]
    return F.layer_norm(tokens, (C,), eps=1e-6) * (1 + scale[:, None]) + shift[:, None]


def test_vastdit3_cache_signal_by_hand(tiny_va, tiny_inputs, monkeypatch):
    inputs = tiny_inputs(B=2, T=3, H=8, W=8)
    t_mlp = tiny_va.t_block(tiny_va._embed_time(inputs["timestep"], inputs["fps"], 2, torch.float32))
    video, _ = tiny_va._video_tokens(inputs["x"]["video"], inputs["height"], inputs["width"])
    audio, _ = tiny_va._audio_tokens(inputs["x"]["audio"])
    expected = torch.cat([_first_block_input(tiny_va.spatial_blocks[0], video, t_mlp),
                          _first_block_input(tiny_va.audio_spatial_blocks[0], audio, t_mlp)], dim=1)
    _no_blocks(tiny_va, monkeypatch)
    signal = tiny_va.cache_signal(**inputs)
    assert signal.shape == (2, 3 * 4 * 4 + 2 * 16, 64)
    torch.testing.assert_close(signal, expected, rtol=1e-5, atol=1e-6)
    # the timestep moves it; the text does not
    later = tiny_va.cache_signal(**{**inputs, "timestep": inputs["timestep"] - 100})
    assert relative_l1(later, signal) > 0.01
    torch.testing.assert_close(tiny_va.cache_signal(**{**inputs, "y": inputs["y"] + 1}), signal)


def test_audio_only_cache_signal(tiny_inputs, monkeypatch):
    torch.manual_seed(0)
    model = build_module(dict(TINY_VA, only_infer_audio=True), MODELS).eval()
    inputs = tiny_inputs(B=2)
    inputs["x"] = {"audio": inputs["x"]["audio"]}
    t_mlp = model.t_block(model._embed_time(inputs["timestep"], inputs["fps"], 2, torch.float32))
    audio, _ = model._audio_tokens(inputs["x"]["audio"])
    _no_blocks(model, monkeypatch)
    expected = _first_block_input(model.audio_spatial_blocks[0], audio, t_mlp)
    torch.testing.assert_close(model.cache_signal(**inputs), expected)


def test_stdit3_cache_signal_by_hand(tiny_inputs, monkeypatch):
    torch.manual_seed(0)
    model = build_module(dict(type="STDiT3-tiny"), MODELS).eval()
    inputs = tiny_inputs(B=2)
    x = inputs["x"]["video"]
    t_mlp = model.t_block(model._embed_time(inputs["timestep"], inputs["fps"], 2, torch.float32))
    tokens, _ = model._video_tokens(x, inputs["height"], inputs["width"])
    _no_blocks(model, monkeypatch)
    signal = model.cache_signal(x, inputs["timestep"], y=inputs["y"], fps=inputs["fps"], height=inputs["height"],
                                width=inputs["width"])
    assert signal.shape == (2, 5 * 5 * 6, 64)  # 5 frames of 9x11 latents -> 5x6 patches (padded)
    torch.testing.assert_close(signal, _first_block_input(model.spatial_blocks[0], tokens, t_mlp))


# ----- options -------------------------------------------------------------------------------------------


def test_cosine_spacing_by_hand():
    s = RFlow(num_sampling_steps=4, timestep_spacing="cosine")
    expected = [1000 * (1 + math.cos(math.pi * i / 4)) / 2 for i in range(4)]  # 1000, 853.6, 500, 146.4
    assert [t.item() for t in s.timesteps(64, 64, 9)] == pytest.approx(expected, rel=1e-6)
    assert [t.item() for t in RFlow(num_sampling_steps=4).timesteps(64, 64, 9)] == [1000.0, 750.0, 500.0, 250.0]
    shifted = RFlow(num_sampling_steps=4, timestep_spacing="cosine", use_timestep_transform=True)
    plain = RFlow(num_sampling_steps=4, use_timestep_transform=True)
    assert shifted.timesteps(240, 426, 102)[2].item() == plain.timesteps(240, 426, 102)[2].item()  # both τ = 0.5


@pytest.mark.parametrize("kwargs, message", [
    (dict(cache_threshold=-0.1), "cache_threshold must be a finite number >= 0 (0 turns step caching off), got -0.1"),
    (dict(cache_threshold=float("nan")), "cache_threshold must be a finite number >= 0"),
    (dict(cache_threshold="0.1"), "cache_threshold must be a finite number >= 0"),
    (dict(cache_threshold=True), "cache_threshold must be a finite number >= 0"),
    (dict(timestep_spacing="karras"), "timestep_spacing must be one of linear, cosine, got 'karras'"),
])
def test_bad_option_values(kwargs, message):
    with pytest.raises(ValueError, match=None) as err:
        RFlow(**kwargs)
    assert str(err.value).startswith(message) and "\n" not in str(err.value)


def test_options_are_config_keys(repo):
    from javisdit.config import parse_configs

    cfg = parse_configs("inference", [str(repo / "configs" / "tiny" / "inference.py"), "--prompt", "x", "--cfg-options",
                                      "scheduler.cache_threshold=0.1", "scheduler.timestep_spacing=cosine"])
    s = build_module(cfg.scheduler, SCHEDULERS)
    assert (s.cache_threshold, s.timestep_spacing) == (0.1, "cosine")


def test_benchmark_script(run_script, tmp_path):
    out = tmp_path / "sampling.json"
    done = run_script("benchmarks/sampling.py", "--steps", "4", "--thresholds", "0.3", "--few-steps", "2",
                      "--threads", "1", "--json", str(out), "--cfg-options", "num_frames=9", "resolution=64",
                      "aspect_ratio=1:1")
    assert done.returncode == 0, done.stderr[-2000:]
    header = ("| variant | denoiser calls | sampling s | speed-up (ideal) | rel L2 video | rel L2 audio "
              "| video PSNR dB |")
    assert header in done.stdout
    assert "threads" in done.stdout.splitlines()[0]
    rows = json.loads(out.read_text())["rows"]
    names = ["exact, 4 steps", "cache 0.3, 4 steps", "linear, 2 steps", "cosine, 2 steps"]
    assert [r["variant"] for r in rows] == names
    assert rows[0]["calls"] == 4 and rows[0]["rel_l2_video"] == 0.0 and rows[0]["psnr_video_db"] is None
    assert [r["calls"] for r in rows[2:]] == [2, 2] and all(r["rel_l2_video"] > 0 for r in rows[2:])
    # with the sound sampled again for the finished picture, both passes count
    done = run_script("benchmarks/sampling.py", "--steps", "3", "--thresholds", "0.3", "--few-steps", "2", "--threads", "1",
                      "--json", str(out), "--cfg-options", "num_frames=9", "resolution=64", "aspect_ratio=1:1",
                      "audio_after_video=true")
    assert done.returncode == 0, done.stderr[-2000:]
    rows = json.loads(out.read_text())["rows"]
    assert rows[0]["calls"] == 6 and [r["calls"] for r in rows[2:]] == [4, 4]
