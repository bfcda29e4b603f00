"""Stage-3 training masks: the X-conditional generation tasks of JavisDiT.

In stage 3 some samples of a batch keep part of their latents clean as a condition, so that the model
learns video-to-audio, audio-to-video, image animation, extension (``quarter_*``) and interpolation
alongside plain joint generation. A mask is one boolean per latent frame: ``True`` = generate (noised),
``False`` = clean condition. The audio mask follows the video mask in time, then a task may override it.

Unlike the original (python ``random`` shared by the process, ``torch.rand`` on the training device), every
draw here comes from a CPU ``torch.Generator`` owned by the sample, so a sample's masks do not depend on
which other samples share its batch or which process it lands on.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

import torch
import torch.nn.functional as F

from javisdit.errors import ConfigError

VALID_STRATEGIES: tuple[str, ...] = (
    "identity", "quarter_random", "quarter_head", "quarter_tail", "quarter_head_tail",
    "image_random", "image_head", "image_tail", "image_head_tail",
    "random", "intepolate", "video_to_audio", "audio_to_video", "sound_image_animate",
)  # "intepolate" is the original's spelling; configs use it


def _randint(low: int, high: int, generator: torch.Generator) -> int:
    """Uniform integer in ``[low, high]`` (both ends included, like ``random.randint``)."""
    return int(torch.randint(low, high + 1, (1,), generator=generator).item())


class VAMaskGenerator:
    """Draws a conditioning task per sample and builds its video and audio frame masks.

    Args:
        mask_ratios: Strategy name -> probability, in the order used for the cumulative draw. ``identity``
            (plain joint generation) gets ``1 - sum(others)`` when absent and is always drawn last.

    Raises:
        ConfigError: An unknown strategy, a ratio outside ``[0, 1]``, or ratios not summing to 1.
    """

    def __init__(self, mask_ratios: Mapping[str, float]):
        ratios: dict[str, float] = {}
        for name, value in mask_ratios.items():
            if name not in VALID_STRATEGIES:
                raise ConfigError(f"unknown mask strategy {name!r}; valid: {', '.join(VALID_STRATEGIES)}")
            try:
                ratios[name] = float(value)
            except (TypeError, ValueError):
                raise ConfigError(f"mask ratio of {name!r} is not a number: {value!r}") from None
        if "identity" not in ratios:
            # Float rounding of e.g. 1 - (0.3 + 0.7) must not read as a negative ratio.
            rest = 1.0 - sum(ratios.values())
            ratios["identity"] = 0.0 if -1e-6 < rest < 0.0 else rest
        ratios["identity"] = ratios.pop("identity")  # identity last, as the original appends it
        for name, value in ratios.items():
            if not 0.0 <= value <= 1.0:
                raise ConfigError(f"mask ratio of {name!r} must be in [0, 1], got {value}")
        total = sum(ratios.values())
        if abs(total - 1.0) > 1e-6:
            raise ConfigError(f"mask ratios must sum to 1, got {total}")
        self.ratios = ratios

    def pick(self, generator: torch.Generator) -> str:
        """One strategy name, from a single uniform draw against the cumulative ratios."""
        u = float(torch.rand(1, generator=generator).item())
        cumulative = 0.0
        for name, ratio in self.ratios.items():
            cumulative += ratio
            if u < cumulative:  # strict, so a zero-ratio strategy is never drawn
                return name
        # u beyond a total that rounded just below 1: the last strategy that can be drawn at all
        return [name for name, ratio in self.ratios.items() if ratio > 0][-1]

    def sample_masks(
        self, num_video_frames: int, num_audio_frames: int, generator: torch.Generator
    ) -> tuple[torch.Tensor, torch.Tensor, str]:
        """Masks of one sample.

        With ``num_video_frames <= 1`` the video mask is all ``True`` whatever the strategy (the original
        crashes there; buckets never produce it); the audio mask is then all ``True`` before the
        strategy's audio override. With fewer than 4 frames the ``quarter_*`` tasks condition one frame
        per end, where the original's ``randint(1, Tv // 4)`` would fail.

        Args:
            num_video_frames: Tv, latent video frames.
            num_audio_frames: Ta, latent audio frames.
            generator: The sample's CPU generator; every draw comes from it.

        Returns:
            Video mask ``[Tv]`` bool, audio mask ``[Ta]`` bool, and the strategy name.
        """
        name = self.pick(generator)
        tv, ta = num_video_frames, num_audio_frames
        if tv > 1:
            video = self._video_mask(name, tv, generator)
            audio = F.interpolate(video.float()[None, None], size=ta, mode="nearest")[0, 0] > 0
        else:
            video, audio = torch.ones(tv, dtype=torch.bool), torch.ones(ta, dtype=torch.bool)
        if name in ("sound_image_animate", "audio_to_video"):
            audio[:] = False
        elif name.startswith("image_") or name == "video_to_audio":
            audio[:] = True
        return video, audio, name

    def get_masks(
        self,
        num_video_frames: int,
        num_audio_frames: int,
        generators: Sequence[torch.Generator],
        device: torch.device | str | None = None,
    ) -> tuple[torch.Tensor, torch.Tensor, list[str]]:
        """Masks of a batch, one generator per sample.

        Returns:
            Video masks ``[B, Tv]`` bool, audio masks ``[B, Ta]`` bool (on ``device``), and the B strategy
            names, where ``B = len(generators)``.
        """
        tv, ta = num_video_frames, num_audio_frames
        samples = [self.sample_masks(tv, ta, generator) for generator in generators]
        if not samples:
            empty = torch.ones(0, tv, dtype=torch.bool, device=device)
            return empty, torch.ones(0, ta, dtype=torch.bool, device=device), []
        videos, audios, names = zip(*samples)
        return torch.stack(videos).to(device), torch.stack(audios).to(device), list(names)

    @staticmethod
    def _video_mask(name: str, tv: int, generator: torch.Generator) -> torch.Tensor:
        """``[Tv]`` bool video mask of strategy ``name`` for ``Tv >= 2``."""
        mask = torch.ones(tv, dtype=torch.bool)
        if name.startswith("quarter_"):
            n = _randint(1, max(1, tv // 4), generator)
            if name == "quarter_random":
                start = _randint(0, tv - n, generator)
                mask[start : start + n] = False
            if name in ("quarter_head", "quarter_head_tail"):
                mask[:n] = False
            if name in ("quarter_tail", "quarter_head_tail"):
                mask[-n:] = False
        elif name == "image_random":
            mask[_randint(0, tv - 1, generator)] = False
        elif name in ("image_head", "image_head_tail", "sound_image_animate"):
            mask[0] = False
            if name == "image_head_tail":
                mask[-1] = False
        elif name == "image_tail":
            mask[-1] = False
        elif name == "intepolate":
            mask[_randint(0, 1, generator) :: 2] = False
        elif name == "random":
            ratio = 0.1 + 0.8 * float(torch.rand(1, generator=generator).item())  # uniform(0.1, 0.9)
            mask = torch.rand(tv, generator=generator) > ratio
            if not mask.any():  # at least one frame to generate, so the loss is never empty
                mask[-1] = True
        elif name == "video_to_audio":
            mask[:] = False
        return mask  # identity, audio_to_video: everything generated
