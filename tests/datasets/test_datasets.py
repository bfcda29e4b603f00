"""The datasets on generated sounding videos: shapes per stage, audio-video alignment, bad files."""

import random

import numpy as np
import pandas as pd
import pytest
import torch

from javisdit.datasets import build_dataloader, collate
from javisdit.datasets.read import align_to_video, audio_window, load_waveform, read_video_frames, video_info
from javisdit.errors import ConfigError
from javisdit.models.vae.mel import MelFrontEnd
from javisdit.registry import DATASETS, build_module


def _dataset(path, **kwargs):
    return build_module(dict(type="VariableVideoAudioTextDataset", data_path=str(path), **kwargs), DATASETS)


def test_stage3_sample(synthetic_data):
    ds = _dataset(synthetic_data["stage3_jav"])
    assert ds.clip_sizes() == [(53, 144, 256)] * 3
    sample = ds[(0, 51, 144, 256, 7)]
    assert sample["video"].shape == (3, 51, 144, 256) and sample["video"].dtype == torch.float32
    assert -1 <= sample["video"].min() and sample["video"].max() <= 1
    assert sample["audio"].shape == (1, 224, 64)  # 51/24 s = 212 mel frames, padded to 224
    assert sample["fps"] == 24 and sample["num_frames"] == 51 and sample["text"].startswith("a red ball")
    again = ds[(0, 51, 144, 256, 7)]
    assert torch.equal(sample["video"], again["video"])  # the seed fixes the window


def test_stage1_audio_only(synthetic_data):
    ds = _dataset(synthetic_data["stage1_audio"], audio_only=True)
    sample = ds[(1, 51, 144, 256, 3)]
    assert "video" not in sample and sample["audio"].shape == (1, 224, 64)
    assert sample["text"].startswith("clicks of a bouncing ball")


def test_stage2_negatives(synthetic_data):
    ds = _dataset(synthetic_data["stage2_prior"], neg_aug=1, require_onset=True,
                  neg_aug_kwargs=dict(video_augmentation_pool=None, audio_augmentation_pool=None))
    sample = ds[(0, 51, 144, 256, 11)]
    assert sample["neg_videos"]["spatial"].shape == sample["neg_videos"]["temporal"].shape == (1, 3, 51, 144, 256)
    assert sample["neg_audios"]["spatial"].shape == sample["neg_audios"]["temporal"].shape == (1, 1, 224, 64)
    assert sample["onset"].shape == (224,) and sample["onset"].sum() >= 2  # the clicks are onsets


def test_click_lands_in_its_mel_frame(synthetic_data):
    root = synthetic_data["stage3_jav"].parent
    clips = pd.read_csv(synthetic_data["clips"])
    video = root / clips["path"][0]
    first, second = (int(b) for b in clips["bounce_frames"][0].split()[:2])
    info = video_info(video)
    wave = align_to_video(load_waveform(root / "audios" / "clip_0000.wav"), info.num_frames, info.fps)
    begin, end = first - 10, first - 10 + 34  # a 34-frame window in which the ball lands twice
    a0, a1 = audio_window(wave, info.num_frames, begin, end, 34, 1)
    mel = MelFrontEnd()(wave[a0:a1], duration=34 / 24)[0, 0]
    high = mel[: int(34 / 24 * 100), 30:].mean(dim=1)  # energy above ~1.3 kHz: the clicks
    for bounce, part in ((first, high[:80]), (second, high[80:])):
        expected = round((bounce - begin) / 24 * 100) - (0 if bounce == first else 80)
        assert abs(int(part.argmax()) - expected) <= 2, (bounce, int(part.argmax()), expected)
    frames = read_video_frames(video, np.arange(begin, end))
    assert frames.shape == (34, 144, 256, 3)


def test_window_decoding_matches_full_decoding(synthetic_data):
    video = synthetic_data["stage3_jav"].parent / "videos" / "clip_0001.mp4"
    whole = read_video_frames(video, np.arange(53))
    part = read_video_frames(video, np.array([30, 31, 40, 52]))
    assert torch.equal(part, whole[[30, 31, 40, 52]])


def test_bad_files_are_skipped_and_counted(synthetic_data, tmp_path, caplog):
    table = pd.read_csv(synthetic_data["stage3_jav"])
    table["path"] = [str(synthetic_data["stage3_jav"].parent / p) for p in table["path"]]
    table["audio_path"] = [str(synthetic_data["stage3_jav"].parent / p) for p in table["audio_path"]]
    (tmp_path / "corrupt.mp4").write_bytes(b"\x00not a video" * 100)
    table.loc[1, "path"] = str(tmp_path / "corrupt.mp4")
    table.loc[2, "path"] = str(tmp_path / "missing.mp4")
    table.to_csv(tmp_path / "bad.csv", index=False)
    ds = _dataset(tmp_path / "bad.csv")
    samples = [ds[(i, 17, 144, 256, 0)] for i in range(3)]
    assert samples[0] is not None and samples[1] is None and samples[2] is None
    assert "corrupt.mp4" in caplog.text and "missing.mp4: no such file" in caplog.text
    batch = collate(samples)
    assert batch["skipped"] == 2 and batch["video"].shape[0] == 1
    assert collate([None, None]) is None and "a whole batch of 2 sample(s) could not be read" in caplog.text


def test_table_errors(synthetic_data, tmp_path):
    with pytest.raises(ConfigError, match="no such file"):
        _dataset(tmp_path / "none.csv")
    (tmp_path / "empty.csv").write_text("path,text\n")
    with pytest.raises(ConfigError, match="the table has no rows"):
        _dataset(tmp_path / "empty.csv")
    (tmp_path / "cols.csv").write_text("path,text\nx.mp4,hi\n")
    with pytest.raises(ConfigError, match="lacks column\\(s\\) num_frames, height, width needed for stages 2 and 3"):
        _dataset(tmp_path / "cols.csv")
    with pytest.raises(ConfigError, match="transform_name 'flip' is not supported"):
        _dataset(synthetic_data["stage3_jav"], transform_name="flip")


def test_dataloader_with_workers(synthetic_data):
    ds = _dataset(synthetic_data["stage3_jav"])
    loader, sampler = build_dataloader(ds, {"144p": {17: (1.0, 2)}}, seed=1, num_workers=2, num_replicas=1, rank=0)
    batches = list(loader)
    assert len(batches) == len(sampler) == 1
    assert batches[0]["video"].shape == (2, 3, 17, 144, 256) and batches[0]["audio"].shape == (2, 1, 96, 64)
    assert batches[0]["skipped"] == 0 and len(batches[0]["text"]) == 2


def test_resize_crop_covers_then_centre_crops():
    from javisdit.datasets.transforms import resize_crop

    frames = torch.zeros(2, 100, 300, 3, dtype=torch.uint8)
    frames[:, :, 100:200] = 255  # a white band in the middle third
    out = resize_crop(frames, 50, 50)  # 100x300 -> 50x150 (covers), then the centre 50 columns
    assert out.shape == (3, 2, 50, 50)
    assert torch.allclose(out[:, :, :, 5:45], torch.ones(1)) and out.min() >= -1
    same = resize_crop(frames, 100, 300)
    assert torch.equal(same[0, 0, 0, :3], torch.tensor([-1.0, -1.0, -1.0]))
