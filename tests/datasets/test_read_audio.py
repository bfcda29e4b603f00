"""The audio reader on the files the pipeline writes: 16 kHz stereo AAC, planar in the decoder.

Upstream JavisDiT++'s PyAV reader concatenated planar (channels, samples) frames and reshaped them as
interleaved, so column 0 held every other left sample, then every other right one: the sound of its own
generated DPO candidates came back twice as fast (spec MODEL_V1.md §14.12). Ours keeps the channels apart.
"""

from fractions import Fraction

import av
import numpy as np

from javisdit.datasets.read import read_audio

RATE = 16000


def _write_stereo_aac(path, left, right):
    with av.open(str(path), mode="w", format="mp4") as container:
        video = container.add_stream("libx264", rate=Fraction(16))
        video.width, video.height, video.pix_fmt = 32, 32, "yuv420p"
        audio = container.add_stream("aac", rate=RATE)
        audio.layout = "stereo"
        for _ in range(16):
            for packet in video.encode(av.VideoFrame.from_ndarray(np.zeros((32, 32, 3), np.uint8), format="rgb24")):
                container.mux(packet)
        for packet in video.encode():
            container.mux(packet)
        stereo = np.stack([left, right]).astype(np.float32)
        for start in range(0, stereo.shape[1], 1024):
            frame = av.AudioFrame.from_ndarray(np.ascontiguousarray(stereo[:, start : start + 1024]), format="fltp",
                                               layout="stereo")
            frame.sample_rate, frame.pts = RATE, start
            for packet in audio.encode(frame):
                container.mux(packet)
        for packet in audio.encode():
            container.mux(packet)


def _correlation(a, b):
    n = min(len(a), len(b))
    a, b = a[:n] - a[:n].mean(), b[:n] - b[:n].mean()
    return float(a @ b / np.sqrt((a @ a) * (b @ b)))


def test_planar_stereo_aac_keeps_time_and_channels(tmp_path):
    t = np.arange(RATE) / RATE  # 1 s: a rising tone on the left, a steady one on the right
    left, right = 0.3 * np.sin(2 * np.pi * (200 + 300 * t) * t), 0.3 * np.sin(2 * np.pi * 1000 * t)
    _write_stereo_aac(tmp_path / "clip.mp4", left, right)
    data, rate = read_audio(tmp_path / "clip.mp4")
    assert rate == RATE and data.shape[0] == 2 and abs(data.shape[1] - RATE) <= 2048  # AAC priming/padding
    got_left, got_right = data[0].numpy(), data[1].numpy()
    lag = max(range(2048), key=lambda k: _correlation(got_left[k:], left))  # the encoder's delay
    assert _correlation(got_left[lag:], left) > 0.95 and _correlation(got_right[lag:], right) > 0.95
    assert abs(_correlation(got_left[lag:], right)) < 0.1
    scrambled = np.concatenate([left[::2], right[::2]])  # what upstream's reader made of the left channel
    assert abs(_correlation(got_left[lag:], scrambled)) < 0.5
