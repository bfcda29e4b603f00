"""OpenAI CLIP ViT-B/32 through ``open_clip``: the network of the CLIP score (``EVAL.md`` §1.3 "CLIP score").

The model is open_clip's own ``CLIP`` class with its ``ViT-B-32-quickgelu`` configuration (the OpenAI
weights were trained with QuickGELU); nothing here re-implements a layer. The published file is the
``open_clip_model.safetensors`` (or ``open_clip_pytorch_model.bin``) of the hub repo
``timm/vit_base_patch32_clip_224.openai``: a flat state dict of the open_clip module, 302 tensors and
151,277,313 values, loaded strictly.

The score of one sample, as upstream computes it (``src/metrics.py:241-277``, ``src/utils.py``
``read_video_cv2``):

* 48 frames at ``round(linspace(0, N - 1, 48))`` (float32 ``torch.linspace``, ``torch.round``: ties to
  even), so a video of fewer than 48 frames repeats frames;
* each frame through CLIP's preprocessing: PIL, resize of the short side to 224 (bicubic), centre crop
  224, RGB, ``ToTensor``, CLIP mean/std;
* the prompt through CLIP's BPE with ``truncate=True``: 77 tokens, a longer prompt cut to 77 with its last
  kept token replaced by the end-of-text token;
* score = mean over the 48 frames of the cosine of frame and text embeddings (both divided by their
  norms), with no x100 and no clamp at 0.

Faithful mode reproduces one quirk: upstream's reader already turns OpenCV's BGR into RGB and its frame
transform converts "BGR to RGB" again, so CLIP sees every frame with red and blue swapped. Corrected mode
gives CLIP the RGB frames. (Upstream's ``clip.load`` also runs the model in float16 on a GPU; here it is
float32 in both modes.)

Shape legend: N frames, H x W pixels, S the model's image size (224), E the embedding width (512).
"""

from __future__ import annotations

import logging
import os
from pathlib import Path

import numpy as np
import open_clip
import torch
from open_clip.constants import OPENAI_DATASET_MEAN, OPENAI_DATASET_STD
from PIL import Image
from torch import nn
from torchvision import transforms

from javisdit.eval.checkpoints import DEFAULT_CHECKPOINT_DIR, SOURCES, find_checkpoint
from javisdit.eval.protocol import MODES
from javisdit.models.loading import load_state_dict_checked, read_state_dict

logger = logging.getLogger(__name__)

__all__ = ["CLIP_FRAMES", "PRESETS", "build_clip", "clip_frame_indices", "clip_images", "clip_score",
           "clip_tokens", "load_clip", "write_random_clip"]

CLIP_FRAMES = 48  # frames per video (upstream's num_frames default of calc_clip_score)

# open_clip model configurations (the keyword arguments of ``open_clip.CLIP``).
PRESETS: dict[str, dict] = {
    # = open_clip.get_model_config("ViT-B-32-quickgelu"): the OpenAI ViT-B/32.
    "full": dict(
        embed_dim=512, quick_gelu=True,
        vision_cfg=dict(image_size=224, layers=12, width=768, patch_size=32),
        text_cfg=dict(context_length=77, vocab_size=49408, width=512, heads=8, layers=12),
    ),
    # Same key names, 2 layers per tower, narrow; the same image size, patch, context and BPE vocabulary, so
    # the real preprocessing and tokenizer feed it.
    "tiny": dict(
        embed_dim=32, quick_gelu=True,
        vision_cfg=dict(image_size=224, layers=2, width=64, head_width=32, patch_size=32),
        text_cfg=dict(context_length=77, vocab_size=49408, width=32, heads=2, layers=2),
    ),
}


def _preset(size: str) -> dict:
    if size not in PRESETS:
        raise ValueError(f"unknown CLIP size {size!r}; valid: {', '.join(PRESETS)}")
    return PRESETS[size]


def build_clip(size: str = "full") -> open_clip.CLIP:
    """A randomly initialised open_clip ``CLIP`` of preset ``size``, eval mode, float32 (built on the
    current default device, so ``with torch.device("meta")`` gives a model without memory)."""
    return open_clip.CLIP(**_preset(size)).eval()


def load_clip(checkpoint_dir: str | os.PathLike = DEFAULT_CHECKPOINT_DIR, size: str = "full",
              device: torch.device | str = "cpu") -> open_clip.CLIP:
    """CLIP with the weights of ``open_clip_model.safetensors`` (or ``open_clip_pytorch_model.bin``, read
    with ``weights_only=True``) in ``checkpoint_dir``, loaded strictly, in eval mode on ``device``.

    Raises:
        MissingWeightsError: neither file is there (the message says what to download).
        WeightsMismatchError: keys are missing, unexpected or mis-shaped (named, with the file).
    """
    path = find_checkpoint("clip", checkpoint_dir)
    state = read_state_dict(path)
    model = build_clip(size)
    load_state_dict_checked(model, state, source=str(path))
    return model.to(device).eval()


def write_random_clip(checkpoint_dir: str | os.PathLike, size: str = "tiny", seed: int = 0) -> Path:
    """Write a random CLIP of preset ``size`` as ``checkpoint_dir/open_clip_model.safetensors`` (the
    published layout: the flat open_clip state dict); returns the path."""
    from safetensors.torch import save_file

    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        model = build_clip(size)
    state = {key: tensor.detach().contiguous() for key, tensor in model.state_dict().items()}
    path = Path(checkpoint_dir) / SOURCES["clip"].name
    path.parent.mkdir(parents=True, exist_ok=True)
    save_file(state, str(path))
    return path


# ----------------------------------------------------------------------------------------------- inputs


def clip_frame_indices(num_frames: int, count: int = CLIP_FRAMES) -> list[int]:
    """The frames upstream's OpenCV reader picks: ``torch.linspace(0, num_frames - 1, count)`` in float32,
    rounded half to even (``torch.round``). With fewer than ``count`` frames, indices repeat."""
    if num_frames < 1 or count < 1:
        raise ValueError(f"need at least one frame and one index, got num_frames={num_frames}, count={count}")
    return torch.linspace(0, num_frames - 1, count, dtype=torch.float32).round().long().tolist()


def clip_images(frames: np.ndarray, image_size: int = 224) -> torch.Tensor:
    """CLIP's eval preprocessing of RGB frames, the steps of OpenAI's ``_transform`` (and of open_clip's
    ``image_transform``): PIL image, short side resized to ``image_size`` (bicubic, PIL), centre crop, RGB,
    ``ToTensor``, normalised with the OpenAI CLIP mean/std. The last two run on the whole batch at once
    (the same float32 operations, so the same bits as per image).

    Args:
        frames: uint8 [N, H, W, 3] RGB.

    Returns:
        float32 [N, 3, S, S].
    """
    frames = np.asarray(frames)
    if frames.ndim != 4 or frames.shape[-1] != 3 or frames.dtype != np.uint8:
        raise ValueError(f"clip_images wants uint8 frames [N, H, W, 3], got {frames.dtype} {list(frames.shape)}")
    resize = transforms.Resize(image_size, interpolation=transforms.InterpolationMode.BICUBIC)
    crop = transforms.CenterCrop(image_size)
    pixels = np.stack([np.asarray(crop(resize(Image.fromarray(np.ascontiguousarray(frame)))).convert("RGB"))
                       for frame in frames])  # [N, S, S, 3] uint8
    images = torch.from_numpy(pixels).permute(0, 3, 1, 2).contiguous().float().div(255)  # ToTensor
    mean = torch.tensor(OPENAI_DATASET_MEAN, dtype=torch.float32)[:, None, None]
    std = torch.tensor(OPENAI_DATASET_STD, dtype=torch.float32)[:, None, None]
    return images.sub_(mean).div_(std)  # [N, 3, S, S]


def clip_tokens(text: str, context_length: int = 77) -> torch.Tensor:
    """CLIP's BPE of ``text`` as ``clip.tokenize(text, truncate=True)`` gives it: [1, context_length] int64
    (start token, the prompt cut so that the end token is the last of ``context_length``, zeros after)."""
    return open_clip.tokenize([text], context_length=context_length)


@torch.no_grad()
def clip_score(model: nn.Module, frames: np.ndarray, text: str, device: torch.device | str = "cpu",
               mode: str = "faithful") -> float:
    """The CLIP score of one video: mean over its 48 sampled frames of cos(frame embedding, text embedding).

    Args:
        model: an open_clip ``CLIP`` (``load_clip``) on ``device``.
        frames: uint8 [N, H, W, 3] RGB, every frame of the video.
        text: the prompt (the CSV's ``text``).
        mode: ``faithful`` (CLIP gets the frames with red and blue swapped, as upstream's double
            conversion gives them) or ``corrected`` (RGB).
    """
    if mode not in MODES:
        raise ValueError(f"unknown CLIP score mode {mode!r}; valid: {', '.join(MODES)}")
    frames = np.asarray(frames)[clip_frame_indices(len(frames))]  # [48, H, W, 3]
    if mode == "faithful":
        frames = frames[..., ::-1]
    images = clip_images(frames, model.visual.image_size[0]).to(device)  # [48, 3, S, S]
    tokens = clip_tokens(text, model.context_length).to(device)  # [1, 77]
    image = model.encode_image(images).float()  # [48, E]
    caption = model.encode_text(tokens).float()  # [1, E]
    image = image / image.norm(dim=-1, keepdim=True)
    caption = caption / caption.norm(dim=-1, keepdim=True)
    return float((image @ caption.T).mean())
