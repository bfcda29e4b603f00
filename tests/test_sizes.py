import pytest

from javisdit.errors import ConfigError
from javisdit.sizes import (
    ASPECT_RATIO_NAMES,
    ASPECT_RATIOS,
    get_clip_size,
    get_closest_ratio,
    get_image_size,
    parse_num_frames,
)


@pytest.mark.parametrize(
    "value, frames",
    [("2s", 51), ("4s", 102), ("8s", 204), ("16s", 408), ("32s", 816), ("1x", 51), ("4x", 204),
     ("17", 17), (" 4S ", 102), (1, 1), (102, 102)],
)
def test_num_frames(value, frames):
    assert parse_num_frames(value) == frames


@pytest.mark.parametrize("value", ["0", "-3", "abc", "4.5", "", 0, True])
def test_num_frames_rejects(value):
    with pytest.raises(ConfigError, match="2s, 4s, 8s, 16s, 32s|invalid number of frames"):
        parse_num_frames(value)


@pytest.mark.parametrize(
    "resolution, aspect_ratio, size",
    [
        ("240p", "9:16", (240, 426)),
        ("240p", "16:9", (426, 240)),
        ("240p", "0.56", (240, 426)),
        ("144p", "9:16", (144, 256)),
        ("144p", "1:1", (192, 192)),
        ("360p", "9:16", (360, 640)),
        ("480p", "9:16", (480, 854)),
        ("480p", "4:3", (740, 555)),
        ("720p", "9:16", (720, 1280)),
        ("720p", "3:8", (588, 1568)),
        ("1080p", "9:16", (1080, 1920)),
        ("1080p", "50:27", (2078, 998)),
        ("2k", "9:16", (1440, 2560)),
        ("4k", "9:16", (2160, 3840)),
        ("256", "0.57", (192, 336)),
        ("256", "0.52", (176, 336)),
        ("512", "1:1", (512, 512)),
        ("1024", "1.00", (1024, 1024)),
    ],
)
def test_image_size(resolution, aspect_ratio, size):
    assert get_image_size(resolution, aspect_ratio) == size


def test_tables_shape():
    video = ["144p", "240p", "360p", "480p", "720p", "1080p", "2k", "4k"]
    assert all(len(ASPECT_RATIOS[name][1]) == 17 for name in video)
    assert all(len(ASPECT_RATIOS[name][1]) == 40 for name in ["64", "256", "512", "1024", "2048", "2880"])
    assert ASPECT_RATIOS["64"][1]["1.00"] == (64, 64) and ASPECT_RATIOS["64"][1]["0.50"] == (44, 88)
    # every H:W name maps to a key of every video-style table
    assert all(key in ASPECT_RATIOS[name][1] for name in video for key in ASPECT_RATIO_NAMES.values())
    # each table's frames stay near its pixel budget
    for name, (budget, table) in ASPECT_RATIOS.items():
        for h, w in table.values():
            assert 0.75 * budget < h * w < 1.25 * budget, (name, h, w)


def test_clip_sizes():
    assert get_clip_size("4s", "240p", "9:16") == (102, 240, 426)
    assert get_clip_size("2s", "720p", "16:9") == (51, 1280, 720)
    assert get_clip_size(17, image_size=[64, 96]) == (17, 64, 96)
    # an explicit image size wins over the tables
    assert get_clip_size("2s", "240p", "9:16", image_size=(128, 128)) == (51, 128, 128)


def test_unknown_resolution_lists_valid():
    with pytest.raises(ConfigError, match=r"unknown resolution '300p'; valid: 64, 144p, 256, 240p"):
        get_image_size("300p", "9:16")


def test_unknown_aspect_ratio_lists_valid():
    with pytest.raises(ConfigError, match=r"unknown aspect ratio '7:5' for resolution '240p'; valid: 3:8, 9:21"):
        get_image_size("240p", "7:5")
    # a key of the PixArt tables is not a key of the video tables
    with pytest.raises(ConfigError, match="unknown aspect ratio '0.57'"):
        get_image_size("240p", "0.57")


def test_clip_size_needs_resolution_or_size():
    with pytest.raises(ConfigError, match="--image-size H W, or both --resolution and --aspect-ratio"):
        get_clip_size("4s", resolution="240p")


def test_closest_ratio():
    table = ASPECT_RATIOS["240p"][1]
    assert get_closest_ratio(240, 426, table) == "0.56"
    assert get_closest_ratio(1080, 1920, table) == "0.56"
    assert get_closest_ratio(100, 100, table) == "1.00"
    assert get_closest_ratio(720, 1280, ASPECT_RATIOS["256"][1]) == "0.57"
