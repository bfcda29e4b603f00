"""Each negative changes what it should, and only that."""

import random
from pathlib import Path

import torch

from javisdit.datasets import augment


def _video(T=20, H=24, W=36):
    return torch.linspace(-1, 1, T)[None, :, None, None].expand(3, T, H, W).clone()


def test_random_mask_greys_the_same_cells_on_every_frame():
    video = _video()
    out = augment.random_mask(video, random.Random(0))
    changed = (out != video).any(dim=0)  # [T, H, W]
    assert changed.any() and (changed == changed[0:1]).all() | (video[:, 10] == 0).all()
    assert (out[:, :, changed[5]] == 0).all()


def test_video_temporal_ops():
    video = _video(T=20)
    shifted = augment.video_temporal_shift(video, random.Random(1))
    k = int(((shifted[0, 0, 0, 0] - video[0, 0, 0, 0]) / (video[0, 1, 0, 0] - video[0, 0, 0, 0])).round())
    assert 2 <= k <= 9 and torch.equal(shifted, torch.roll(video, -k, dims=1))
    stalled = augment.video_stall(video, random.Random(2))
    assert stalled.shape == video.shape
    repeats = (stalled[:, 1:] == stalled[:, :-1]).all(dim=(0, 2, 3)).sum()
    assert repeats >= 11  # one frame held for at least 12 frames


def test_audio_ops_change_only_their_window():
    wave = torch.linspace(-0.5, 0.5, 1000)
    stalled = augment.audio_stall(wave, 100, 50)
    assert torch.equal(stalled[:100], wave[:100]) and (stalled[100:150] == 0).all()
    assert torch.equal(stalled[150:], wave[100:950])
    repeated = augment.audio_repeat(wave, 100, 50)
    assert torch.equal(repeated[150:200], wave[100:150]) and torch.equal(repeated[200:250], wave[150:200])
    scaled = augment.scale_volume(wave, 300, 200, random.Random(0))
    assert torch.equal(scaled[:300], wave[:300]) and torch.equal(scaled[500:], wave[500:])
    assert not torch.equal(scaled[300:500], wave[300:500])
    fast = augment.scale_speed(torch.randn(16000) * 0.1, 4000, 4000, random.Random(3))
    assert fast.shape == (16000,)


def test_audio_temporal_shift_takes_another_part_of_the_recording():
    full = torch.arange(2000, dtype=torch.float32)
    out = augment.audio_temporal_shift(full, (500, 1500), random.Random(0))
    assert out.shape == (1000,) and out[0] != 500 and torch.equal(out, full[int(out[0]) : int(out[0]) + 1000])
    assert augment.audio_temporal_shift(full[:1000], (0, 1000), random.Random(0)) is None


def test_silence_aware_start():
    wave = torch.zeros(1000)
    wave[600:800] = 0.5
    start, silent = augment.silence_aware_start(wave, 150, random.Random(0))
    assert not silent and 600 <= start <= 650
    assert augment.silence_aware_start(torch.zeros(1000), 100, random.Random(0))[1]


def test_augmentor_with_unpaired_audio(tmp_path):
    import soundfile

    soundfile.write(tmp_path / "other.wav", torch.full((500,), 0.25).numpy(), 16000)
    aug = augment.NegativeAugmentor(1)
    video, wave = _video(), torch.randn(1000) * 0.3
    hits = 0
    for seed in range(8):
        videos, audios = aug(video, wave, torch.cat([wave, wave]), (0, 1000), random.Random(seed), tmp_path / "other.wav")
        assert len(videos["spatial"]) == len(audios["temporal"]) == 1
        unpaired = [a for a in audios["spatial"] + audios["temporal"] if torch.allclose(a[:500], torch.full((500,), 0.25))]
        hits += len(unpaired)
        for a in unpaired:
            assert a.shape == (1000,) and (a[500:] == 0).all()  # padded to the clip's length
    assert 0 < hits <= 8


def test_add_sound_source_mixes_in_another_recording(tmp_path):
    import soundfile

    pool = tmp_path / "pool"
    pool.mkdir()
    soundfile.write(pool / "other.wav", (torch.ones(4000) * 0.5).numpy(), 16000)
    aug = augment.NegativeAugmentor(1, audio_augmentation_pool=str(pool))
    wave = torch.sin(torch.arange(3000) / 5.0) * 0.4  # loud everywhere: a real start is found
    for seed in range(20):
        rng = random.Random(seed)
        if rng.choice(augment.AUDIO_SPATIAL) == "add_sound_source":
            out = aug.audio_spatial(wave, random.Random(seed), audio_name="clip.wav")
            added = out - wave
            assert added.abs().max() > 0.4 and torch.allclose(added[added != 0], torch.full_like(added[added != 0], 0.5), atol=2e-4)
            break
    else:
        raise AssertionError("no seed drew add_sound_source")


def test_masklet_is_pasted_where_its_mask_is(tmp_path):
    import json

    import numpy as np

    from javisdit.inference.media import write_mp4

    T, h, w = 16, 16, 16
    content = np.zeros((T, h, w, 3), np.uint8)
    content[..., 0] = 250  # a red object
    mask = np.zeros((T, h, w, 3), np.uint8)
    mask[:, 4:12, 4:12] = 255
    write_mp4(tmp_path / "v1_masklet_000.mp4", content, 24)
    write_mp4(tmp_path / "v1_mask_000.mp4", mask, 24)
    meta = dict(video_frame_height=64, video_frame_width=64, visible=[True] * T, crop_bbox=[[10, 10, 16, 16]] * T)
    (tmp_path / "v1_meta_000.json").write_text(json.dumps(meta))
    aug = augment.NegativeAugmentor(1, video_augmentation_pool=str(tmp_path))
    assert len(aug.masklets) == 1 and augment.usable_frames([True, False, False, True], carry=1) == [0, 1, 3]
    video = torch.full((3, 20, 48, 48), -0.5)
    out = aug.masklets.paste(video, random.Random(4))
    changed = (out != video).any(dim=0)  # [T, H, W]
    frames = changed.flatten(1).any(dim=1)
    assert frames.sum() >= 12  # at least 12 frames (one run)
    assert torch.allclose(out[0][changed], torch.tensor(250 / 127.5 - 1), atol=0.1)  # red where pasted
    assert (out[2][changed] < -0.8).all()
    assert changed[frames].float().mean() < 0.5  # only the masked part of the box


def test_del_sound_source_removes_the_stem(tmp_path):
    import json

    import soundfile

    mix_path = tmp_path / "clip.wav"
    dog, rain = torch.sin(torch.arange(8000) / 3.0) * 0.3, torch.full((8000,), 0.1)
    soundfile.write(mix_path, (dog + rain).numpy(), 16000, subtype="FLOAT")
    soundfile.write(f"{mix_path}__sep__000_001_dog.wav", dog.numpy(), 16000, subtype="FLOAT")
    Path(f"{mix_path}.json").write_text(json.dumps({"dog_000_001": [[0, 8000]]}))
    aug = augment.NegativeAugmentor(1)
    full = dog + rain
    for seed in range(40):
        if random.Random(seed).choice(augment.AUDIO_SPATIAL) == "del_sound_source":
            out = aug.audio_spatial(full[1000:7000].clone(), random.Random(seed), str(mix_path), full, 1000)
            removed = out != full[1000:7000]
            assert removed.any() and torch.allclose(out[removed], torch.full_like(out[removed], 0.1), atol=1e-5)
            break
    else:
        raise AssertionError("no seed drew del_sound_source")
