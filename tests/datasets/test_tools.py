"""The data-preparation commands on small folders: each writes the expected CSV columns."""

import shutil

import numpy as np
import pandas as pd
import pytest
import soundfile

from javisdit.datasets.datautil_cli import main
from javisdit.registry import DATASETS, build_module


@pytest.fixture
def video_folder(synthetic_data, tmp_path):
    root = tmp_path / "videos"
    shutil.copytree(synthetic_data["stage3_jav"].parent / "videos", root)
    return root


def _csv(path):
    return pd.read_csv(path, keep_default_na=False)


def test_video_recipe(video_folder, tmp_path):
    out = tmp_path / "meta"
    assert main(["scan", "video", str(video_folder), "--output", str(out / "meta.csv")]) == 0
    assert list(_csv(out / "meta.csv").columns) == ["path", "id", "relpath"]
    assert main(["info", str(out / "meta.csv"), "--fmin", "10", "--output", str(out / "info.csv")]) == 0
    info = _csv(out / "info.csv")
    assert info[["num_frames", "height", "width", "fps"]].values.tolist()[0] == [53, 144, 256, 24]
    assert info["aspect_ratio"][0] == pytest.approx(0.5625) and info["resolution"][0] == 36864
    assert main(["extract-audio", str(out / "info.csv"), "--output", str(out / "au.csv")]) == 0
    au = _csv(out / "au.csv")
    data, rate = soundfile.read(au["audio_path"][0])
    assert rate == 16000 and data.ndim == 1 and abs(len(data) - 53 / 24 * 16000) < 1100
    captions = tmp_path / "captions.txt"
    captions.write_text("clip_0000.mp4 a red ball bounces\nclip_0001.mp4 a green ball bounces\n")
    assert main(["captions", str(out / "au.csv"), "--captions", str(captions), "--output", str(out / "jav.csv")]) == 0
    jav = _csv(out / "jav.csv")
    assert jav["text"].tolist() == ["a red ball bounces", "a green ball bounces"]  # clip_0002 had no caption
    assert main(["unpaired", str(out / "jav.csv"), "--output", str(out / "prior.csv")]) == 0
    prior = _csv(out / "prior.csv")
    assert (prior["unpaired_audio_path"] != prior["audio_path"]).all()
    assert sorted(prior["unpaired_audio_path"]) == sorted(prior["audio_path"])
    ds = build_module(dict(type="VariableVideoAudioTextDataset", data_path=str(out / "prior.csv"), neg_aug=1), DATASETS)
    assert ds[(0, 17, 144, 256, 1)]["neg_audios"]["spatial"].shape == (1, 1, 96, 64)


def test_audio_recipe(tmp_path):
    root = tmp_path / "sounds"
    root.mkdir()
    t = np.arange(44100 * 3) / 44100
    soundfile.write(root / "bell.wav", np.stack([np.sin(2 * np.pi * 440 * t)] * 2, axis=1) * 0.3, 44100)  # stereo 44.1k
    soundfile.write(root / "rain.flac", np.random.default_rng(0).normal(0, 0.1, 16000 * 2), 16000)
    out = tmp_path / "meta"
    assert main(["scan", "audio", str(root), "--output", str(out / "a.csv")]) == 0
    assert main(["audio-info", str(out / "a.csv"), "--output", str(out / "b.csv")]) == 0
    b = _csv(out / "b.csv")
    assert b[["audio_fps", "audio_channels"]].values.tolist() == [[44100, 2], [16000, 1]]
    assert main(["trim-audio", str(out / "b.csv"), "--seconds", "2.5", "--output", str(out / "c.csv")]) == 0
    assert main(["resample-audio", str(out / "c.csv"), "--output", str(out / "d.csv")]) == 0
    d = _csv(out / "d.csv")
    data, rate = soundfile.read(d["audio_path"][0])
    assert rate == 16000 and data.ndim == 1 and len(data) == 40000  # 2.5 s, mono, 16 kHz
    captions = tmp_path / "captions.csv"
    pd.DataFrame(dict(audio_path=d["audio_path"], caption=["a bell rings", "rain falls"])).to_csv(captions, index=False)
    assert main(["captions", str(out / "d.csv"), "--captions", str(captions), "--key", "audio_path",
                 "--column", "audio_text", "--output", str(out / "e.csv")]) == 0
    assert main(["dummy-video", str(out / "e.csv"), "--output", str(out / "train_audio.csv")]) == 0
    stage1 = _csv(out / "train_audio.csv")
    assert list(stage1.columns) == ["path", "id", "relpath", "num_frames", "height", "width", "aspect_ratio", "fps",
                                    "resolution", "audio_path", "audio_fps", "text", "audio_text"]
    assert stage1["num_frames"].tolist() == [60, 48] and stage1["audio_text"].tolist() == ["a bell rings", "rain falls"]
    ds = build_module(dict(type="VariableVideoAudioTextDataset", data_path=str(out / "train_audio.csv"),
                           audio_only=True), DATASETS)
    assert ds[(0, 51, 144, 256, 0)]["audio"].shape == (1, 224, 64)


def test_filter_split_merge(synthetic_data, tmp_path):
    src = str(synthetic_data["stage3_jav"])
    assert main(["filter", src, "--fmin", "54", "--output", str(tmp_path / "none.csv")]) == 0
    assert len(_csv(tmp_path / "none.csv")) == 0
    assert main(["split", src, "--fraction", "0.67", "--output", str(tmp_path / "a.csv"), "--rest",
                 str(tmp_path / "b.csv")]) == 0
    assert (len(_csv(tmp_path / "a.csv")), len(_csv(tmp_path / "b.csv"))) == (2, 1)
    assert main(["merge", str(tmp_path / "a.csv"), str(tmp_path / "b.csv"), "--output", str(tmp_path / "m.csv")]) == 0
    assert sorted(_csv(tmp_path / "m.csv")["id"]) == sorted(_csv(src)["id"])


def test_errors(tmp_path, capsys):
    assert main(["scan", "video", str(tmp_path / "nothing"), "--output", str(tmp_path / "x.csv")]) == 2
    assert "error: no such folder" in capsys.readouterr().err
    (tmp_path / "t.csv").write_text("id\nx\n")
    assert main(["info", str(tmp_path / "t.csv"), "--output", str(tmp_path / "y.csv")]) == 2
    assert "the CSV lacks column(s) path" in capsys.readouterr().err


def test_unpaired_audio_generated_by_an_audio_config(synthetic_data, tmp_path):
    from conftest import REPO

    config = tmp_path / "voice.py"
    config.write_text(f'_base_ = ["{REPO}/configs/tiny/inference.py"]\naudio_only = True\nnum_frames = 9\n'
                      'image_size = [32, 48]\nmodel = dict(only_infer_audio=True, train_st_prior_attn=False, '
                      'train_va_cross_attn=False)\n')
    out = tmp_path / "prior.csv"
    assert main(["unpaired", str(synthetic_data["stage3_jav"]), "--config", str(config), "--output", str(out)]) == 0
    table = _csv(out)
    assert len(table) == 3
    for path in table["unpaired_audio_path"]:
        data, rate = soundfile.read(path)
        assert rate == 16000 and data.shape == (6000,)  # 9 frames at 24 fps
