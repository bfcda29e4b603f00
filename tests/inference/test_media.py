"""Writing mp4 / wav / png, read back."""

import av
import numpy as np
import pytest
import soundfile
import torch

from javisdit.inference.media import to_uint8_frames, write_mp4, write_png, write_wav


def _read(path):
    with av.open(str(path)) as container:
        video, audio = container.streams.video[0], container.streams.audio[0]
        info = dict(codec=video.codec_context.name, size=(video.height, video.width), pix_fmt=video.codec_context.pix_fmt,
                    frames=sum(1 for _ in container.decode(video=0)), audio_codec=audio.codec_context.name,
                    rate=audio.rate, video_s=float(video.duration * video.time_base),
                    audio_s=float(audio.duration * audio.time_base))
    return info


def test_mp4_round_trip(tmp_path):
    frames = np.random.default_rng(0).integers(0, 255, (24, 64, 96, 3), dtype=np.uint8)
    path = write_mp4(tmp_path / "a.mp4", frames, 24, np.zeros(5000, np.float32))  # audio shorter than the video
    info = _read(path)
    assert info["codec"] == "h264" and info["pix_fmt"] == "yuv420p" and info["size"] == (64, 96)
    assert info["frames"] == 24 and info["audio_codec"] == "aac" and info["rate"] == 16000
    assert abs(info["audio_s"] - info["video_s"]) <= 1024 / 16000  # within one AAC frame
    assert sorted(p.name for p in tmp_path.iterdir()) == ["a.mp4"]  # no temporary file left


def test_deterministic_mp4_gives_the_same_bytes(tmp_path):
    """Data sets promise byte-identical files for the same seed: x264 without its assembly kernels."""
    frames = np.random.default_rng(1).integers(0, 255, (12, 64, 64, 3), dtype=np.uint8)
    wave = np.random.default_rng(2).standard_normal(8000).astype(np.float32) * 0.1
    files = [write_mp4(tmp_path / f"{i}.mp4", frames, 24, wave, deterministic=True).read_bytes() for i in range(4)]
    assert all(f == files[0] for f in files[1:])
    assert _read(tmp_path / "0.mp4")["frames"] == 12


def test_odd_sizes_are_padded(tmp_path):
    path = write_mp4(tmp_path / "odd.mp4", np.zeros((3, 33, 45, 3), np.uint8), 12, np.zeros(100, np.float32))
    assert _read(path)["size"] == (34, 46)


def test_failed_write_leaves_nothing(tmp_path):
    with pytest.raises(ValueError, match="fps must be positive"):
        write_mp4(tmp_path / "bad.mp4", np.zeros((2, 8, 8, 3), np.uint8), 0, None)
    with pytest.raises(ValueError, match=r"frames must be uint8 \[T, H, W, 3\]"):
        write_mp4(tmp_path / "bad.mp4", np.zeros((2, 8, 8, 4), np.uint8), 24, None)

    class Exploding(np.ndarray):  # the source dies half-way through the file
        def __iter__(self):
            yield np.asarray(self[0])
            raise RuntimeError("encoder crashed")

    frames = np.zeros((2, 8, 8, 3), np.uint8).view(Exploding)
    with pytest.raises(RuntimeError, match="encoder crashed"):
        write_mp4(tmp_path / "bad.mp4", frames, 24, np.zeros(100, np.float32))
    assert list(tmp_path.iterdir()) == []


def test_wav_and_png(tmp_path):
    wave = np.sin(np.arange(16000) / 10).astype(np.float32) * 0.5
    data, rate = soundfile.read(write_wav(tmp_path / "a.wav", wave))
    assert rate == 16000 and data.shape == (16000,) and np.abs(data - wave).max() <= 1 / 2**15  # 16-bit PCM
    frame = to_uint8_frames(torch.zeros(3, 1, 4, 6))[0]
    from PIL import Image

    assert np.asarray(Image.open(write_png(tmp_path / "a.png", frame))).shape == (4, 6, 3)


def test_frame_conversion():
    video = torch.tensor([-1.0, 0.0, 1.0, 2.0]).view(1, 4, 1, 1).expand(3, 4, 1, 1)
    frames = to_uint8_frames(video)
    assert frames.shape == (4, 1, 1, 3) and frames[:, 0, 0, 0].tolist() == [0, 128, 255, 255]
    assert video.max() == 2.0  # the input is not modified
