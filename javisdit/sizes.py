"""Clip sizes: the ``--num-frames`` shorthands and the resolution / aspect-ratio tables.

Every table maps an aspect-ratio key (``H/W`` rounded to two decimals, as a string) to the frame size
``(H, W)`` in pixels, for one pixel budget ``S``. The video-style tables (``144p`` ... ``4k``) come from
Open-Sora 1.2; the square-budget tables (``256`` ... ``2880``) from PixArt, and ``64``
(PixArt's layout at 64x64, JavisDiT-mini's size). Note that aspect ratios are
written ``H:W``, so ``"9:16"`` (``0.56``) is a landscape frame, e.g. 240x426 at 240p.
"""

from __future__ import annotations

from javisdit.errors import ConfigError

# ---------------------------------------------------------------------------------------------------------
# --num-frames
# ---------------------------------------------------------------------------------------------------------

NUM_FRAMES_SHORTHANDS: dict[str, int] = {
    "1x": 51, "2s": 51,
    "2x": 102, "4s": 102,
    "4x": 204, "8s": 204,
    "8x": 408, "16s": 408,
    "16x": 816, "32s": 816,
}


def parse_num_frames(value: int | str, fps: int = 24) -> int:
    """Frame count of ``value``: a shorthand or a positive integer.

    At 24 fps (v0.1) the shorthands are Open-Sora's table (``"4s"`` -> 102 frames, 4.25 s). At any other
    rate ``"Ns"`` is ``N·fps + 1`` frames (JavisDiT++ at 16 fps: ``"4s"`` -> 65, ``"5s"`` -> 81): the
    Wan VAE's 1 + 4k frames, N seconds and one frame. Upstream JavisDiT++ read the 24-fps table at 16 fps,
    so its ``"4s"`` gave 102 frames, 6.4 s (spec MODEL_V1.md §14.3); that is fixed here.

    Raises:
        ConfigError: ``value`` is neither a known shorthand nor a positive integer.
    """
    if isinstance(value, bool):  # bool is an int subclass; True frames is never meant
        raise ConfigError(f"invalid number of frames {value!r}")
    if isinstance(value, int):
        frames = value
    else:
        text = str(value).strip().lower()
        if fps != 24 and text.endswith("s") and text[:-1].isdigit() and int(text[:-1]) > 0:
            return int(text[:-1]) * fps + 1
        if text in NUM_FRAMES_SHORTHANDS:
            return NUM_FRAMES_SHORTHANDS[text]
        try:
            frames = int(text)
        except ValueError:
            frames = 0
    if frames < 1:
        valid = ", ".join(k for k in NUM_FRAMES_SHORTHANDS if k.endswith("s"))
        raise ConfigError(f"invalid number of frames {value!r}: use one of {valid} or a positive integer")
    return frames


# ---------------------------------------------------------------------------------------------------------
# Aspect-ratio tables: resolution -> (pixel budget S, {ar_key: (H, W)})
# ---------------------------------------------------------------------------------------------------------

# The 17 aspect-ratio keys of the video-style tables, in table order.
_VIDEO_KEYS = ("0.38", "0.43", "0.48", "0.50", "0.53", "0.54", "0.56", "0.62", "0.67", "0.75",
               "1.00", "1.33", "1.50", "1.78", "1.89", "2.00", "2.08")


def _video_table(sizes: str) -> dict[str, tuple[int, int]]:
    pairs = [tuple(int(v) for v in hw.split("x")) for hw in sizes.split()]
    assert len(pairs) == len(_VIDEO_KEYS)
    return dict(zip(_VIDEO_KEYS, pairs))


_VIDEO_TABLES = {
    "144p": (36864, _video_table(
        "117x312 125x291 133x277 135x270 139x262 141x260 144x256 151x241 156x234 166x221 "
        "192x192 221x165 235x156 256x144 263x139 271x135 277x132")),
    "240p": (102240, _video_table(
        "196x522 210x490 222x462 226x452 232x438 236x436 240x426 252x404 262x393 276x368 "
        "320x320 370x278 392x262 426x240 440x232 452x226 462x222")),
    "360p": (230400, _video_table(
        "294x784 314x732 332x692 340x680 350x662 352x652 360x640 380x608 392x588 416x554 "
        "480x480 554x416 588x392 640x360 660x350 678x340 692x332")),
    "480p": (409920, _video_table(
        "392x1046 420x980 444x925 452x904 466x880 470x870 480x854 506x810 522x784 554x738 "
        "640x640 740x555 784x522 854x480 880x466 906x454 924x444")),
    "720p": (921600, _video_table(
        "588x1568 628x1466 666x1388 678x1356 698x1318 706x1306 720x1280 758x1212 784x1176 832x1110 "
        "960x960 1108x832 1176x784 1280x720 1320x698 1358x680 1386x666")),
    "1080p": (2073600, _video_table(
        "882x2352 942x2198 998x2080 1018x2036 1048x1980 1058x1958 1080x1920 1138x1820 1176x1764 "
        "1248x1664 1440x1440 1662x1246 1764x1176 1920x1080 1980x1048 2036x1018 2078x998")),
    "2k": (3686400, _video_table(
        "1176x3136 1256x2930 1330x2770 1358x2716 1398x2640 1412x2612 1440x2560 1518x2428 1568x2352 "
        "1662x2216 1920x1920 2218x1664 2352x1568 2560x1440 2638x1396 2716x1358 2772x1330")),
    "4k": (8294400, _video_table(
        "1764x4704 1886x4400 1996x4158 2036x4072 2096x3960 2118x3918 2160x3840 2276x3642 2352x3528 "
        "2494x3326 2880x2880 3326x2494 3528x2352 3840x2160 3958x2096 4072x2036 4156x1994")),
}

# PixArt's square-budget tables share one layout: the 1024 table, scaled by budget (256 = /4, 512 = /2,
# 2048 = x2). 2880 has keys of its own.
_PIXART_1024 = {
    "0.25": (512, 2048), "0.26": (512, 1984), "0.27": (512, 1920), "0.28": (512, 1856),
    "0.32": (576, 1792), "0.33": (576, 1728), "0.35": (576, 1664), "0.40": (640, 1600),
    "0.42": (640, 1536), "0.48": (704, 1472), "0.50": (704, 1408), "0.52": (704, 1344),
    "0.57": (768, 1344), "0.60": (768, 1280), "0.68": (832, 1216), "0.72": (832, 1152),
    "0.78": (896, 1152), "0.82": (896, 1088), "0.88": (960, 1088), "0.94": (960, 1024),
    "1.00": (1024, 1024), "1.07": (1024, 960), "1.13": (1088, 960), "1.21": (1088, 896),
    "1.29": (1152, 896), "1.38": (1152, 832), "1.46": (1216, 832), "1.67": (1280, 768),
    "1.75": (1344, 768), "2.00": (1408, 704), "2.09": (1472, 704), "2.40": (1536, 640),
    "2.50": (1600, 640), "2.89": (1664, 576), "3.00": (1728, 576), "3.11": (1792, 576),
    "3.62": (1856, 512), "3.75": (1920, 512), "3.88": (1984, 512), "4.00": (2048, 512),
}
_PIXART_2880 = {
    "0.25": (1408, 5760), "0.26": (1408, 5568), "0.27": (1408, 5376), "0.28": (1408, 5184),
    "0.32": (1600, 4992), "0.33": (1600, 4800), "0.34": (1600, 4672), "0.40": (1792, 4480),
    "0.42": (1792, 4288), "0.47": (1920, 4096), "0.49": (1920, 3904), "0.51": (1920, 3776),
    "0.55": (2112, 3840), "0.59": (2112, 3584), "0.68": (2304, 3392), "0.72": (2304, 3200),
    "0.78": (2496, 3200), "0.83": (2496, 3008), "0.89": (2688, 3008), "0.93": (2688, 2880),
    "1.00": (2880, 2880), "1.07": (2880, 2688), "1.12": (3008, 2688), "1.21": (3008, 2496),
    "1.28": (3200, 2496), "1.39": (3200, 2304), "1.47": (3392, 2304), "1.70": (3584, 2112),
    "1.82": (3840, 2112), "2.03": (3904, 1920), "2.13": (4096, 1920), "2.39": (4288, 1792),
    "2.50": (4480, 1792), "2.92": (4672, 1600), "3.00": (4800, 1600), "3.12": (4992, 1600),
    "3.68": (5184, 1408), "3.82": (5376, 1408), "3.95": (5568, 1408), "4.00": (5760, 1408),
}


def _scaled(table: dict[str, tuple[int, int]], num: int, den: int) -> dict[str, tuple[int, int]]:
    return {k: (h * num // den, w * num // den) for k, (h, w) in table.items()}


_PIXART_TABLES = {
    "64": (4096, _scaled(_PIXART_1024, 1, 16)),  # JavisDiT-mini's 64x64 (configs/mini)
    "256": (65536, _scaled(_PIXART_1024, 1, 4)),
    "512": (262144, _scaled(_PIXART_1024, 1, 2)),
    "1024": (1048576, _PIXART_1024),
    "2048": (4194304, _scaled(_PIXART_1024, 2, 1)),
    "2880": (8294400, _PIXART_2880),
}

#: resolution name -> (pixel budget, {aspect-ratio key: (H, W)}), smallest budget first.
ASPECT_RATIOS: dict[str, tuple[int, dict[str, tuple[int, int]]]] = dict(
    sorted({**_VIDEO_TABLES, **_PIXART_TABLES}.items(), key=lambda item: item[1][0])
)

#: ``H:W`` names accepted by ``--aspect-ratio``, mapped to table keys.
ASPECT_RATIO_NAMES: dict[str, str] = {
    "3:8": "0.38", "9:21": "0.43", "12:25": "0.48", "1:2": "0.50", "9:17": "0.53", "27:50": "0.54",
    "9:16": "0.56", "5:8": "0.62", "2:3": "0.67", "3:4": "0.75", "1:1": "1.00", "4:3": "1.33",
    "3:2": "1.50", "16:9": "1.78", "17:9": "1.89", "2:1": "2.00", "50:27": "2.08",
}


def check_resolution(resolution: str) -> str:
    """Return ``resolution`` if it names a table, else raise a ConfigError listing the valid names."""
    if resolution not in ASPECT_RATIOS:
        raise ConfigError(f"unknown resolution {resolution!r}; valid: {', '.join(ASPECT_RATIOS)}")
    return resolution


def aspect_ratio_key(aspect_ratio: str, resolution: str) -> str:
    """Table key of ``aspect_ratio`` (an ``H:W`` name or a key such as ``"0.56"``) for ``resolution``."""
    table = ASPECT_RATIOS[check_resolution(resolution)][1]
    key = ASPECT_RATIO_NAMES.get(str(aspect_ratio), str(aspect_ratio))
    if key not in table:
        names = [name for name, k in ASPECT_RATIO_NAMES.items() if k in table]
        raise ConfigError(
            f"unknown aspect ratio {aspect_ratio!r} for resolution {resolution!r}; valid: "
            f"{', '.join(names + list(table))}"
        )
    return key


def get_image_size(resolution: str, aspect_ratio: str) -> tuple[int, int]:
    """Frame size ``(H, W)`` for a resolution name and an aspect ratio, e.g. ("240p", "9:16") -> (240, 426)."""
    key = aspect_ratio_key(aspect_ratio, resolution)
    return ASPECT_RATIOS[resolution][1][key]


def get_closest_ratio(height: float, width: float, table: dict[str, tuple[int, int]]) -> str:
    """The key of ``table`` closest to ``height / width`` (ties go to the first key in table order)."""
    ratio = height / width
    return min(table, key=lambda key: abs(float(key) - ratio))


def get_clip_size(
    num_frames: int | str,
    resolution: str | None = None,
    aspect_ratio: str | None = None,
    image_size: tuple[int, int] | list[int] | None = None,
    fps: int = 24,
) -> tuple[int, int, int]:
    """``(T, H, W)`` of a clip: ``image_size`` wins over the resolution and aspect-ratio tables; ``fps``
    decides what a ``"Ns"`` frame count means (``parse_num_frames``).

    Raises:
        ConfigError: an invalid frame count, resolution or aspect ratio, or neither a size nor a
            resolution/aspect-ratio pair.
    """
    frames = parse_num_frames(num_frames, fps)
    if image_size is not None:
        height, width = (int(v) for v in image_size)
        if height < 1 or width < 1:
            raise ConfigError(f"invalid image size {tuple(image_size)}: both sides must be positive")
        return frames, height, width
    if resolution is None or aspect_ratio is None:
        raise ConfigError("the clip size needs --image-size H W, or both --resolution and --aspect-ratio")
    return (frames, *get_image_size(resolution, aspect_ratio))
