"""Per-prompt seeding: a prompt's random draws, and (without the batch-union prior) its files, do not
depend on how the prompt list is split into batches."""

from pathlib import Path

import av
import numpy as np
import pytest
import torch

from conftest import REPO, randomise_sync_modules
from javisdit import cli
from javisdit.inference import pipeline
from javisdit.schedulers.rflow import RFlow

TINY = str(REPO / "configs" / "tiny" / "inference.py")
SMALL = ["--image-size", "32", "48", "--num-frames", "9", "--verbose", "0"]
PROMPTS = ["a dog barks at a train", "rain on a tin roof", "a bell rings"]
NAMES = ["sample_0000.mp4", "sample_0001.mp4", "sample_0002.mp4"]
PER_SAMPLE = ["--cfg-options", "model.prior_attn_batch_union=False"]


def _run(save_dir, batch_size: int, *argv):
    return cli.main("inference", [TINY, *SMALL, "--prompt", *PROMPTS, "--batch-size", str(batch_size),
                                  "--save-dir", str(save_dir), *argv])


@pytest.fixture
def acting_prior(monkeypatch):
    """The tiny DiT with weights in its (zero-initialised) ST-prior and video-audio modules, so that the
    prior's sample and the batch union change the output."""
    build = pipeline.build_models

    def build_acting(*args, **kwargs):
        models = build(*args, **kwargs)
        randomise_sync_modules(models.model)
        return models

    monkeypatch.setattr(pipeline, "build_models", build_acting)


def _read(path):
    """uint8 frames [T, H, W, 3] and the decoded audio track [S] of an mp4."""
    with av.open(str(path)) as container:
        frames = np.stack([f.to_ndarray(format="rgb24") for f in container.decode(video=0)])
    with av.open(str(path)) as container:
        audio = np.concatenate([f.to_ndarray().reshape(-1) for f in container.decode(audio=0)])
    return frames.astype(int), audio


@pytest.fixture
def encoded(monkeypatch):
    """What the pipeline hands to the mp4 writer: file name -> (uint8 frames [T, H, W, 3], waveform [S])."""
    seen: dict[str, tuple[np.ndarray, np.ndarray]] = {}
    write_mp4 = pipeline.write_mp4

    def record(path, frames, fps, audio, *args, **kwargs):
        seen[f"{Path(path).parent.name}/{Path(path).name}"] = (frames.astype(int), np.array(audio))
        return write_mp4(path, frames, fps, audio, *args, **kwargs)

    monkeypatch.setattr(pipeline, "write_mp4", record)
    return seen


def test_files_do_not_depend_on_the_batch_size(tmp_path, acting_prior, encoded):
    """Three prompts in batches of 2 and of 1 give the same samples, to float rounding: batched matmuls
    round differently (~1e-5), which moves a few pixels by one grey level before H.264. The encoder
    amplifies such differences (and on some CPUs x264 is not even deterministic run to run), so the
    decoded files are compared loosely, against the difference between two samples."""
    for batch_size in (2, 1):
        assert _run(tmp_path / f"bs{batch_size}", batch_size, *PER_SAMPLE) == 0
    for name in NAMES:
        (frames2, wave2), (frames1, wave1) = encoded[f"bs2/{name}"], encoded[f"bs1/{name}"]
        assert frames2.shape == frames1.shape == (9, 32, 48, 3)
        assert np.abs(frames2 - frames1).max() <= 1, name
        peak = np.abs(wave1).max()  # the tiny random vocoder is quiet (~1e-3): tolerances relative to it
        assert peak > 0 and np.abs(wave2 - wave1).max() <= 1e-4 * peak, name
        (decoded2, audio2), (decoded1, audio1) = _read(tmp_path / "bs2" / name), _read(tmp_path / "bs1" / name)
        diff = np.abs(decoded2 - decoded1)
        assert diff.mean() < 0.5, name  # two different samples differ by > 5 on average (below)
        assert audio2.shape == audio1.shape and np.abs(audio2 - audio1).max() <= 1e-2 * np.abs(audio1).max(), name
    # the samples are not all alike (the comparisons above would say little otherwise)
    (first, wave_first), (second, wave_second) = encoded[f"bs1/{NAMES[0]}"], encoded[f"bs1/{NAMES[1]}"]
    assert np.abs(first - second).mean() > 5
    assert np.abs(wave_first - wave_second).max() > 1e-2 * np.abs(wave_first).max()


def test_batch_union_prior_keeps_the_draws_but_not_the_outputs(tmp_path, monkeypatch, acting_prior, encoded):
    """With the default ``prior_attn_batch_union=True`` every prompt still draws the same noise and prior
    sample whatever its batch, but a sample's ST-prior cross-attention sees the prior tokens of its
    whole batch: the outputs of prompts that shared a batch change with the batch size, those of a
    prompt alone in its batch in both runs do not."""
    draws: list[dict[str, torch.Tensor]] = []
    sample = RFlow.sample

    def record(self, model, z, model_kwargs, *args, **kwargs):
        B = z["audio"].shape[0]
        draws.append(dict(video=z["video"].clone(), audio=z["audio"].clone(),
                          spatial=model_kwargs["spatial_prior"][:B].float().clone(),  # the conditional rows
                          temporal=model_kwargs["temporal_prior"][:B].float().clone()))
        return sample(self, model, z, model_kwargs, *args, **kwargs)

    monkeypatch.setattr(RFlow, "sample", record)
    rows = {}
    for batch_size in (2, 1):
        draws.clear()
        assert _run(tmp_path / f"bs{batch_size}", batch_size) == 0
        assert [d["audio"].shape[0] for d in draws] == ([2, 1] if batch_size == 2 else [1, 1, 1])
        rows[batch_size] = {k: torch.cat([d[k] for d in draws]) for k in draws[0]}
    for key in ("video", "audio"):
        assert torch.equal(rows[2][key], rows[1][key]), key  # row i's noise comes from prompt i's generator
    for key in ("spatial", "temporal"):
        torch.testing.assert_close(rows[2][key], rows[1][key], rtol=1e-5, atol=1e-5)
    assert not torch.allclose(rows[1]["audio"][0], rows[1]["audio"][1])

    def frames(batch_size, name):  # as handed to the mp4 writer
        return encoded[f"bs{batch_size}/{name}"][0]

    # prompts 0 and 1 shared a batch of 2: their outputs depend on the batch
    for name in NAMES[:2]:
        assert np.abs(frames(2, name) - frames(1, name)).max() > 1, name
    # prompt 2 was alone in its batch in both runs
    assert np.abs(frames(2, NAMES[2]) - frames(1, NAMES[2])).max() <= 1


def test_generate_needs_one_generator_per_prompt():
    with pytest.raises(ValueError, match=r"generate needs one generator per prompt \(2\)"):
        pipeline.generate(None, ["a", "b"], (9, 32, 48), 24, torch.float32, [torch.Generator()], device="cpu")
    with pytest.raises(ValueError, match=r"one generator per prompt \(1\)"):
        pipeline.generate(None, ["a"], (9, 32, 48), 24, torch.float32, torch.Generator(), device="cpu")
