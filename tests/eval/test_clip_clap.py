"""The CLIP score (open_clip OpenAI ViT-B/32) and the CLAP score (transformers ClapModel): architectures on
the meta device, tiny random checkpoints written and read back in the published layouts, the input
pipelines, and the scores against hand computations (EVAL.md §1.3 "CLIP score", "CLAP score").
Offline: tests/conftest.py sets HF_HUB_OFFLINE and every load passes local_files_only."""

from __future__ import annotations

import math
import shutil

import numpy as np
import open_clip
import pytest
import torch
import torch.nn.functional as F
from PIL import Image
from safetensors.torch import load_file, save_file

from javisdit.errors import MissingWeightsError, WeightsMismatchError
from javisdit.eval.networks.clap import (
    CLAP_SAMPLE_RATE,
    build_clap,
    clap_audio,
    clap_score,
    load_clap,
    write_random_clap,
)
from javisdit.eval.networks.clap import (
    PRESETS as CLAP_PRESETS,
)
from javisdit.eval.networks.clip import (
    PRESETS as CLIP_PRESETS,
)
from javisdit.eval.networks.clip import (
    build_clip,
    clip_frame_indices,
    clip_images,
    clip_score,
    clip_tokens,
    load_clip,
    write_random_clip,
)

MEAN = torch.tensor((0.48145466, 0.4578275, 0.40821073))
STD = torch.tensor((0.26862954, 0.26130258, 0.27577711))
SOT, EOT = 49406, 49407


def _frames(n: int, seed: int = 0, h: int = 48, w: int = 80) -> np.ndarray:
    return np.random.default_rng(seed).integers(0, 256, (n, h, w, 3), dtype=np.uint8)


# ------------------------------------------------------------------------------------------------- CLIP


def test_clip_full_preset_is_openai_vit_b32_on_meta():
    assert CLIP_PRESETS["full"] == open_clip.get_model_config("ViT-B-32-quickgelu")
    with torch.device("meta"):
        model = build_clip("full")
    state = model.state_dict()
    assert sum(p.numel() for p in model.parameters()) == 151_277_313
    assert sum(t.numel() for t in state.values()) == 151_277_313 and len(state) == 302
    shapes = {k: tuple(v.shape) for k, v in state.items()}
    assert shapes["visual.conv1.weight"] == (768, 3, 32, 32)
    assert shapes["positional_embedding"] == (77, 512)
    assert shapes["text_projection"] == (512, 512)
    assert shapes["visual.proj"] == (768, 512)
    assert shapes["token_embedding.weight"] == (49408, 512)
    assert shapes["logit_scale"] == ()
    assert "attn_mask" not in state  # a non-persistent buffer: not in the published file either
    assert isinstance(model.transformer.resblocks[0].mlp.gelu, open_clip.transformer.QuickGELU)
    assert not model.training
    with pytest.raises(ValueError, match="unknown CLIP size 'huge'; valid: full, tiny"):
        build_clip("huge")


def test_clip_frame_indices():
    # round(linspace(0, N - 1, 48)), float32, ties to even
    assert clip_frame_indices(96) == [*range(0, 47, 2), *range(49, 96, 2)]
    assert clip_frame_indices(30) == [0, 1, 1, 2, 2, 3, 4, 4, 5, 6, 6, 7, 7, 8, 9, 9, 10, 10, 11, 12, 12, 13, 14,
                                      14, 15, 15, 16, 17, 17, 18, 19, 19, 20, 20, 21, 22, 22, 23, 23, 24, 25, 25, 26,
                                      27, 27, 28, 28, 29]
    assert clip_frame_indices(6, 3) == [0, 2, 5]  # 2.5 rounds to 2 (half to even), not 3
    assert clip_frame_indices(1) == [0] * 48
    with pytest.raises(ValueError, match="at least one frame"):
        clip_frame_indices(0)


def test_clip_images_constant_colour_and_centre_crop():
    colour = (200, 100, 30)
    frame = np.empty((1, 40, 60, 3), np.uint8)
    frame[:] = colour
    out = clip_images(frame, 224)
    assert out.shape == (1, 3, 224, 224) and out.dtype == torch.float32
    expected = (torch.tensor(colour, dtype=torch.float32) / 255 - MEAN) / STD
    assert torch.equal(out[0], expected[:, None, None].expand(3, 224, 224))
    # 224 x 448: the short side is already 224; the centre crop keeps columns 112..335
    halves = np.zeros((1, 224, 448, 3), np.uint8)
    halves[:, :, 224:] = 255
    out = clip_images(halves, 224)
    assert torch.equal(out[0, :, :, :112], ((0 - MEAN) / STD)[:, None, None].expand(3, 224, 112))
    assert torch.equal(out[0, :, :, 112:], ((1 - MEAN) / STD)[:, None, None].expand(3, 224, 112))
    # the same bits as open_clip's own eval transform (= OpenAI's), image by image
    frames = _frames(3, h=120, w=300)
    reference = open_clip.image_transform(224, is_train=False)
    assert torch.equal(clip_images(frames, 224), torch.stack([reference(Image.fromarray(f)) for f in frames]))
    with pytest.raises(ValueError, match=r"uint8 frames \[N, H, W, 3\]"):
        clip_images(np.zeros((2, 8, 8, 3), np.float32))


def test_clip_tokens_truncate_like_openai():
    assert clip_tokens("a dog")[0, :5].tolist() == [SOT, 320, 1929, EOT, 0]  # "a</w>", "dog</w>"
    long_prompt = " ".join(["dog"] * 100)
    tokens = clip_tokens(long_prompt)
    assert tokens.shape == (1, 77) and tokens.dtype == torch.int64
    assert tokens[0, 0] == SOT and tokens[0, 76] == EOT and (tokens[0, 1:76] == 1929).all()


@pytest.fixture(scope="module")
def tiny_clip_dir(tmp_path_factory):
    folder = tmp_path_factory.mktemp("clip")
    write_random_clip(folder, "tiny", seed=0)
    return folder


def test_tiny_clip_round_trip(tiny_clip_dir, tmp_path):
    path = tiny_clip_dir / "open_clip_model.safetensors"
    stored = load_file(path)
    model = load_clip(tiny_clip_dir, "tiny")
    assert not model.training
    assert stored.keys() == model.state_dict().keys()
    assert all(torch.equal(stored[k], v) for k, v in model.state_dict().items())
    # the seed decides the weights; the same seed writes the same file
    again = write_random_clip(tmp_path / "again", "tiny", seed=0)
    other = write_random_clip(tmp_path / "other", "tiny", seed=1)
    assert again.read_bytes() == path.read_bytes() and other.read_bytes() != path.read_bytes()
    # the .bin layout (torch.save of the same state dict) gives the same embeddings
    (tmp_path / "bin").mkdir()
    torch.save(stored, tmp_path / "bin" / "open_clip_pytorch_model.bin")
    from_bin = load_clip(tmp_path / "bin", "tiny")
    images, tokens = clip_images(_frames(2)), clip_tokens("a dog barks")
    with torch.no_grad():
        assert torch.equal(model.encode_image(images), from_bin.encode_image(images))
        assert torch.equal(model.encode_text(tokens), from_bin.encode_text(tokens))


def test_clip_score_is_the_mean_frame_text_cosine(tiny_clip_dir):
    model = load_clip(tiny_clip_dir, "tiny")
    frames, text = _frames(30, seed=3), "a red car drives through the rain"
    for mode, seen in (("faithful", frames[..., ::-1]), ("corrected", frames)):
        with torch.no_grad():
            image = model.encode_image(clip_images(seen[clip_frame_indices(30)]))  # [48, 32]
            caption = model.encode_text(clip_tokens(text))  # [1, 32]
        manual = F.cosine_similarity(image, caption, dim=-1).mean().item()
        assert clip_score(model, frames, text, mode=mode) == pytest.approx(manual, rel=1e-5, abs=1e-6)
    # faithful = corrected on the frames with red and blue swapped
    swapped = clip_score(model, frames[..., ::-1], text, mode="corrected")
    assert clip_score(model, frames, text) == pytest.approx(swapped, abs=1e-7)
    with pytest.raises(ValueError, match="unknown CLIP score mode 'fast'"):
        clip_score(model, frames, text, mode="fast")


class _BrightnessCLIP(torch.nn.Module):
    """A stand-in CLIP: bright frames embed as (3, 0), dark ones as (-1, 1); the text as (2, 0)."""

    context_length = 77

    def __init__(self) -> None:
        super().__init__()
        self.visual = torch.nn.Module()
        self.visual.image_size = (224, 224)
        self.images: torch.Tensor | None = None

    def encode_image(self, images: torch.Tensor) -> torch.Tensor:
        self.images = images
        bright = images.mean(dim=(1, 2, 3)) > 0
        return torch.where(bright[:, None], torch.tensor([3.0, 0.0]), torch.tensor([-1.0, 1.0]))

    def encode_text(self, tokens: torch.Tensor) -> torch.Tensor:
        assert tokens.shape == (1, 77)
        return torch.tensor([[2.0, 0.0]])


def test_clip_score_by_hand():
    frames = np.zeros((96, 32, 32, 3), np.uint8)
    frames[:48] = 255  # 24 of the 48 sampled frames are white (indices 0..46), 24 black (49..95)
    model = _BrightnessCLIP()
    score = clip_score(model, frames, "anything")
    assert model.images.shape == (48, 3, 224, 224)
    # cos = 1 on white, -1/sqrt(2) on black; no x100, no clamp at 0
    assert score == pytest.approx((1 - 1 / math.sqrt(2)) / 2, abs=1e-6)
    # faithful mode hands CLIP red frames as blue ones
    red = np.zeros((5, 32, 32, 3), np.uint8)
    red[..., 0] = 255
    clip_score(model, red, "red")
    assert torch.equal(model.images[0, :, 0, 0], (torch.tensor([0.0, 0.0, 1.0]) - MEAN) / STD)
    clip_score(model, red, "red", mode="corrected")
    assert torch.equal(model.images[0, :, 0, 0], (torch.tensor([1.0, 0.0, 0.0]) - MEAN) / STD)


def test_clip_checkpoint_errors(tiny_clip_dir, tmp_path):
    with pytest.raises(MissingWeightsError, match="open_clip_model.safetensors"):
        load_clip(tmp_path, "tiny")
    state = load_file(tiny_clip_dir / "open_clip_model.safetensors")
    bad = tmp_path / "bad"
    bad.mkdir()
    path = bad / "open_clip_model.safetensors"
    save_file({**state, "visual.extra": torch.zeros(2)}, str(path))
    with pytest.raises(WeightsMismatchError, match=r"open_clip_model\.safetensors.*1 unexpected: visual\.extra"):
        load_clip(bad, "tiny")
    save_file({k: v for k, v in state.items() if k != "ln_final.bias"}, str(path))
    with pytest.raises(WeightsMismatchError, match=r"1 missing: ln_final\.bias"):
        load_clip(bad, "tiny")
    with pytest.raises(WeightsMismatchError, match=r"mis-shaped: positional_embedding \[77, 32\] vs \[77, 512\]"):
        load_clip(tiny_clip_dir, "full")


# ------------------------------------------------------------------------------------------------- CLAP


def test_clap_full_preset_on_meta():
    from transformers.integrations.accelerate import init_empty_weights

    with init_empty_weights():  # parameters on meta; ClapModel cannot be built under torch.device("meta")
        model = build_clap("full")
    assert all(p.is_meta for p in model.parameters())
    assert not model.config.audio_config.enable_fusion
    assert model.config.audio_config.depths == [2, 2, 6, 2] and model.config.projection_dim == 512
    shapes = {k: tuple(v.shape) for k, v in model.state_dict().items()}
    assert shapes["text_model.embeddings.word_embeddings.weight"] == (50265, 768)
    assert shapes["text_model.embeddings.position_embeddings.weight"] == (514, 768)
    assert shapes["audio_model.audio_encoder.patch_embed.proj.weight"] == (96, 1, 4, 4)
    assert shapes["audio_model.audio_encoder.norm.weight"] == (768,)
    assert shapes["audio_projection.linear1.weight"] == (512, 768)
    assert shapes["text_projection.linear2.weight"] == (512, 512)
    assert shapes["logit_scale_a"] == shapes["logit_scale_t"] == ()
    assert not any("fusion" in k for k in shapes)
    assert CLAP_PRESETS["full"]["features"]["truncation"] == "rand_trunc"
    with pytest.raises(ValueError, match="unknown CLAP size 'base'; valid: full, tiny"):
        build_clap("base")


@pytest.fixture(scope="module")
def tiny_clap_dir(tmp_path_factory):
    folder = tmp_path_factory.mktemp("clap")
    write_random_clap(folder, "tiny", seed=0)
    return folder


def test_tiny_clap_round_trip(tiny_clap_dir):
    folder = tiny_clap_dir / "clap-htsat-unfused"
    assert {"config.json", "model.safetensors", "preprocessor_config.json", "tokenizer.json", "vocab.json",
            "merges.txt"} <= {p.name for p in folder.iterdir()}
    model, processor = load_clap(tiny_clap_dir, "tiny")
    stored = load_file(folder / "model.safetensors")
    assert stored.keys() == model.state_dict().keys()
    assert all(torch.equal(stored[k], v) for k, v in model.state_dict().items())
    assert not model.training
    # "full" reads the architecture from the folder's config.json: the same tiny model here
    same, _ = load_clap(tiny_clap_dir, "full")
    assert all(torch.equal(v, same.state_dict()[k]) for k, v in model.state_dict().items())
    features = processor.feature_extractor
    assert (features.feature_size, features.sampling_rate, features.nb_max_samples) == (16, 48000, 48000)
    assert (features.truncation, features.padding) == ("rand_trunc", "repeatpad")
    ids = processor.tokenizer("the dog barks")["input_ids"]
    assert ids[0] == 0 and ids[-1] == 2 and processor.tokenizer.decode(ids[1:-1]) == "the dog barks"


def test_clap_score_is_the_text_audio_cosine(tiny_clap_dir):
    model, processor = load_clap(tiny_clap_dir, "tiny")
    wave = 0.1 * np.random.default_rng(0).standard_normal(19200).astype(np.float32)  # 0.4 s: 2 repeats fit 1 s
    text = "a dog barks twice"
    for mode, kwargs in (("faithful", dict(padding=True)), ("corrected", {})):
        inputs = processor(text=text, audios=wave.astype(np.float64), return_tensors="pt", sampling_rate=48000,
                           **kwargs)
        with torch.no_grad():
            out = model(**inputs)
        manual = F.cosine_similarity(out.text_embeds, out.audio_embeds, dim=-1).item()
        assert clap_score(model, processor, wave, text, mode=mode) == pytest.approx(manual, abs=1e-6)
    assert clap_score(model, processor, wave, text) != pytest.approx(
        clap_score(model, processor, wave, text, mode="corrected"), abs=1e-6)
    # faithful: upstream's padding=True reaches the feature extractor, which then zero-pads
    padded = np.pad(wave, (0, 48000 - wave.size)).astype(np.float64)
    assert torch.equal(processor(text=text, audios=wave.astype(np.float64), return_tensors="pt", padding=True,
                                 sampling_rate=48000)["input_features"],
                       processor(text=text, audios=padded, return_tensors="pt", sampling_rate=48000)["input_features"])
    with pytest.raises(ValueError, match="mono waveform"):
        clap_score(model, processor, np.zeros((2, 100)), text)


def test_clap_audio_resamples_to_48k():
    import librosa

    rng = np.random.default_rng(1)
    mono = (0.1 * rng.standard_normal(16000)).astype(np.float32)
    out = clap_audio(mono, 16000)
    assert out.dtype == np.float32 and out.shape == (48000,) and CLAP_SAMPLE_RATE == 48000
    np.testing.assert_array_equal(out, librosa.resample(mono, orig_sr=16000, target_sr=48000, res_type="soxr_hq"))
    stereo = np.stack([mono, -mono + 0.2])
    np.testing.assert_allclose(clap_audio(stereo, 16000), clap_audio(np.full(16000, 0.1, np.float32), 16000),
                               atol=1e-6)
    np.testing.assert_array_equal(clap_audio(mono, 48000), mono)


def test_clap_checkpoint_errors(tiny_clap_dir, tmp_path):
    with pytest.raises(MissingWeightsError, match="clap-htsat-unfused"):
        load_clap(tmp_path, "tiny")
    folder = tmp_path / "clap-htsat-unfused"
    shutil.copytree(tiny_clap_dir / "clap-htsat-unfused", folder)
    weights = folder / "model.safetensors"
    state = load_file(weights)
    # index tables the model computes itself may be absent
    save_file({k: v for k, v in state.items() if not k.endswith("position_ids")}, str(weights),
              metadata={"format": "pt"})
    model, _ = load_clap(tmp_path, "tiny")
    assert torch.equal(model.text_model.embeddings.position_ids, torch.arange(80)[None])
    save_file({**state, "text_projection.extra": torch.zeros(3)}, str(weights), metadata={"format": "pt"})
    with pytest.raises(WeightsMismatchError, match=r"unfused does not fit.*1 unexpected: text_projection\.extra"):
        load_clap(tmp_path, "tiny")
    save_file({k: v for k, v in state.items() if k != "logit_scale_a"}, str(weights), metadata={"format": "pt"})
    with pytest.raises(WeightsMismatchError, match=r"1 missing: logit_scale_a"):
        load_clap(tmp_path, "tiny")
    save_file({**state, "text_projection.linear2.bias": torch.zeros(5)}, str(weights), metadata={"format": "pt"})
    with pytest.raises(WeightsMismatchError,
                       match=r"1 mis-shaped: text_projection\.linear2\.bias \(the model wants \[16\]\)"):
        load_clap(tmp_path, "tiny")
    weights.unlink()
    with pytest.raises(MissingWeightsError, match=r"clap-htsat-unfused lacks model\.safetensors or pytorch_model\.bin"):
        load_clap(tmp_path, "tiny")
