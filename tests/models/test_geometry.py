"""The shared sizes of the pipeline (PIPELINE.md §3.3, MODEL.md §5-6)."""

import pytest

from javisdit.models import geometry


@pytest.mark.parametrize("frames, latent", [(51, 15), (102, 30), (204, 60), (408, 120), (1, 1), (17, 5), (20, 6)])
def test_video_latent_frames(frames, latent):
    assert geometry.video_latent_frames(frames) == latent


def test_video_latent_size():
    assert geometry.video_latent_size(102, 240, 426) == (30, 30, 53)


@pytest.mark.parametrize(
    "seconds, mel, latent, samples",
    [(4.25, 448, (8, 112, 16), 68000), (2.125, 224, (8, 56, 16), 34000), (8.5, 864, (8, 216, 16), 136000),
     (17.0, 1728, (8, 432, 16), 272000), (0.29, 32, (8, 8, 16), 4640)],
)
def test_audio_sizes(seconds, mel, latent, samples):
    assert geometry.mel_frames(seconds) == mel
    assert geometry.audio_latent_size(seconds) == latent
    assert geometry.audio_samples(seconds) == samples


def test_audio_latents_per_video_latent():
    assert geometry.audio_latents_per_video_latent(24) == pytest.approx(1 / 5 * 17 / 24 / (10.24 / 1024) / 4)
