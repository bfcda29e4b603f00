"""ImageBind (text, vision, audio) for TV-IB / TA-IB / AV-IB, AVHScore and JavisScore: the published key layout
of ``imagebind_huge.pth`` (EVAL_MODELS.md §3.1), the tiny model's embeddings, and the random-checkpoint
round trip through the same loader as the real file."""

from __future__ import annotations

import math
import re

import pytest
import torch
from conftest import read_manifest

from javisdit.errors import MissingWeightsError, WeightsMismatchError
from javisdit.eval.checkpoints import SOURCES
from javisdit.eval.networks.imagebind import (
    PRESETS,
    SKIPPED_PREFIXES,
    ImageBind,
    build_imagebind,
    load_imagebind,
    write_random_imagebind,
)
from javisdit.models.prior.imagebind_text import ImageBindTextTower, load_imagebind_text
from javisdit.models.prior.tokenizer import ImageBindTokenizer

TEXT_SCALE = 1 / 0.07  # exp(log_logit_scale) at its initial value, under the cap of 100


def _modality(key: str) -> str:
    return key.split(".")[1]


@pytest.fixture(scope="module")
def tiny() -> ImageBind:
    torch.manual_seed(0)
    return build_imagebind("tiny")


def _inputs(seed: int = 0):
    g = torch.Generator().manual_seed(seed)
    tokens = ImageBindTokenizer()(["a dog barks", "rain on a tin roof at night"])
    return dict(tokens=tokens, images=torch.randn(2, 3, 224, 224, generator=g),
                views=torch.randn(1, 2, 3, 2, 224, 224, generator=g),
                fbanks=torch.randn(2, 3, 1, 128, 204, generator=g))


@torch.no_grad()
def _embed_all(model: ImageBind, inputs: dict) -> list[torch.Tensor]:
    return [model.embed_text(inputs["tokens"]), model.embed_vision(inputs["images"]),
            model.embed_vision(inputs["views"]), model.embed_audio(inputs["fbanks"])]


# ------------------------------------------------------------------------------------------ architecture


def test_full_preset_is_the_published_file_layout():
    manifest = read_manifest("eval_imagebind_huge")
    kept = {k: v for k, v in manifest.items() if _modality(k) in ("vision", "text", "audio")}
    with torch.device("meta"):
        model = build_imagebind("full")
    state = model.state_dict()
    assert list(state) == list(kept)  # names and order
    assert {k: tuple(v.shape) for k, v in state.items()} == kept
    skipped = {k for k in manifest if k.startswith(SKIPPED_PREFIXES)}
    assert skipped == {k for k in manifest if _modality(k) in ("depth", "thermal", "imu")}
    assert skipped | set(kept) == set(manifest) and len(manifest) == 1311
    numel = sum(math.prod(shape) for shape in kept.values())
    assert sum(v.numel() for v in state.values()) == numel == 632_829_440 + 354_038_570 + 86_235_649
    # the causal mask [77, 77] and audio's fixed log(20) are buffers
    assert sum(p.numel() for p in model.parameters()) == numel - 77 * 77 - 1
    assert [name for name, _ in model.named_buffers()] == ["modality_preprocessors.text.mask",
                                                           "modality_postprocessors.audio.1.log_logit_scale"]


def test_tiny_preset_has_the_same_names():
    def names(model: ImageBind) -> list[str]:  # block numbers dropped (the tiny towers have two blocks each)
        return list(dict.fromkeys(re.sub(r"blocks\.\d+\.", "blocks.N.", k) for k in model.state_dict()))

    with torch.device("meta"):
        full = build_imagebind("full")
    assert names(build_imagebind("tiny")) == names(full)
    assert len(build_imagebind("tiny").modality_trunks["vision"].blocks) == 2
    assert set(PRESETS) == {"full", "tiny"}
    with pytest.raises(ValueError, match="unknown ImageBind size 'huge'; valid: full, tiny"):
        build_imagebind("huge")


# ------------------------------------------------------------------------------------------ embeddings


def test_embeddings_are_unit_vectors_times_the_scale(tiny):
    inputs = _inputs()
    text, image, _, audio = _embed_all(tiny, inputs)
    assert text.shape == image.shape == audio.shape == (2, 16) and not tiny.training
    torch.testing.assert_close(text.norm(dim=-1), torch.full((2,), TEXT_SCALE))
    torch.testing.assert_close(image.norm(dim=-1), torch.ones(2))
    with torch.no_grad():
        single = tiny.embed_audio(inputs["fbanks"][:, 0])
    torch.testing.assert_close(single.norm(dim=-1), torch.full((2,), 20.0))
    post = tiny.modality_postprocessors["text"][1]
    with torch.no_grad():
        post.log_logit_scale.fill_(math.log(1000.0))
        capped = tiny.embed_text(inputs["tokens"])
        post.log_logit_scale.fill_(math.log(TEXT_SCALE))
    torch.testing.assert_close(capped.norm(dim=-1), torch.full((2,), 100.0))


@torch.no_grad()
def test_views_are_averaged_without_renormalising(tiny):
    inputs = _inputs()
    views, fbanks = inputs["views"], inputs["fbanks"]
    per_view = torch.stack([tiny.embed_vision(views[:, s]) for s in range(2)], dim=1)  # [1, 2, E]
    torch.testing.assert_close(tiny.embed_vision(views), per_view.mean(dim=1))
    assert tiny.embed_vision(views).norm() < 1  # a mean of distinct unit vectors
    per_clip = torch.stack([tiny.embed_audio(fbanks[:, s]) for s in range(3)], dim=1)
    torch.testing.assert_close(tiny.embed_audio(fbanks), per_clip.mean(dim=1))
    assert (tiny.embed_audio(fbanks).norm(dim=-1) < 20).all()


@torch.no_grad()
def test_an_image_is_a_clip_of_two_equal_frames(tiny):
    image = _inputs()["images"][:1]
    clip = image.unsqueeze(2).repeat(1, 1, 2, 1, 1)
    torch.testing.assert_close(tiny.embed_vision(image), tiny.embed_vision(clip))
    torch.testing.assert_close(tiny.embed_vision(image), tiny.embed_vision(clip[:, None])[0:1])


@torch.no_grad()
def test_bad_inputs(tiny):
    with pytest.raises(ValueError, match=r"\(3, 112, 112\) gives 64 patches; this tower takes 256"):
        tiny.embed_vision(torch.zeros(1, 3, 112, 112))
    with pytest.raises(ValueError, match=r"vision input must be .*got \(3, 224\)"):
        tiny.embed_vision(torch.zeros(3, 224))
    with pytest.raises(ValueError, match=r"audio input must be .*got \(128, 204\)"):
        tiny.embed_audio(torch.zeros(128, 204))


@torch.no_grad()
def test_bias_kv_is_used(tiny):
    fbank = _inputs()["fbanks"][:1, 0]
    before = tiny.embed_audio(fbank)
    attn = tiny.modality_trunks["audio"].blocks[0].attn
    saved = attn.bias_k.clone()
    attn.bias_k.add_(1.0)
    after = tiny.embed_audio(fbank)
    attn.bias_k.copy_(saved)
    assert not torch.allclose(before, after)


# ------------------------------------------------------------------------------------------ checkpoints


def test_write_random_then_load_round_trip(tmp_path):
    before = torch.random.get_rng_state()
    path = write_random_imagebind(tmp_path, size="tiny", seed=3)
    assert torch.equal(torch.random.get_rng_state(), before)  # the global RNG is left alone
    assert path == tmp_path / SOURCES["imagebind"].name == tmp_path / "imagebind_huge.pth"
    written = torch.load(path, map_location="cpu", weights_only=True)
    assert list(written)[:-1] == list(build_imagebind("tiny").state_dict())  # flat, no wrapper, no prefix
    assert list(written)[-1] == "modality_heads.depth.0.weight"  # stands for the skipped modalities
    model = load_imagebind(tmp_path, size="tiny")
    assert not model.training and all(not t.is_meta for t in model.state_dict().values())
    for key, value in model.state_dict().items():
        assert torch.equal(value, written[key]), key
    reference = build_imagebind("tiny")
    reference.load_state_dict({k: v for k, v in written.items() if not k.startswith(SKIPPED_PREFIXES)})
    inputs = _inputs()
    for loaded, expected in zip(_embed_all(model, inputs), _embed_all(reference, inputs)):
        assert torch.equal(loaded, expected)
    other = write_random_imagebind(tmp_path / "other", size="tiny", seed=4)
    assert not torch.equal(torch.load(other, weights_only=True)["modality_trunks.audio.blocks.0.attn.bias_k"],
                           written["modality_trunks.audio.blocks.0.attn.bias_k"])


@torch.no_grad()
def test_the_prior_text_tower_reads_the_same_file(tmp_path):
    write_random_imagebind(tmp_path, size="tiny", seed=5)
    model = load_imagebind(tmp_path, size="tiny")
    tiny = PRESETS["tiny"]
    tower = ImageBindTextTower(tiny["text_width"], tiny["text_depth"], tiny["text_heads"], tiny["embed_dim"])
    load_imagebind_text(tower, tmp_path)
    tokens = _inputs()["tokens"]
    torch.testing.assert_close(tower.embed(tokens), model.embed_text(tokens), rtol=0, atol=0)


def test_load_errors(tmp_path):
    with pytest.raises(MissingWeightsError, match=r"needs the file imagebind_huge\.pth .* "
                                                  r"https://dl\.fbaipublicfiles\.com/imagebind/imagebind_huge\.pth"):
        load_imagebind(tmp_path / "nowhere", size="tiny")
    path = write_random_imagebind(tmp_path, size="tiny")
    state = torch.load(path, weights_only=True)

    def load_with(change: dict, drop: str | None = None):
        torch.save({**{k: v for k, v in state.items() if k != drop}, **change}, path)
        return load_imagebind(tmp_path, size="tiny")

    with pytest.raises(WeightsMismatchError, match="1 unexpected: something.else"):
        load_with({"something.else": torch.zeros(1)})
    with pytest.raises(WeightsMismatchError, match="1 unexpected: modality_trunks.video.blocks.0.norm_1.weight"):
        load_with({"modality_trunks.video.blocks.0.norm_1.weight": torch.zeros(1)})
    with pytest.raises(WeightsMismatchError, match="1 missing: modality_trunks.audio.blocks.1.attn.bias_v"):
        load_with({}, drop="modality_trunks.audio.blocks.1.attn.bias_v")
    with pytest.raises(WeightsMismatchError, match=r"mis-shaped: modality_preprocessors\.vision\.cls_token "
                                                   r"\[1, 1, 1280\] vs \[1, 1, 32\]"):
        load_with({"modality_preprocessors.vision.cls_token": torch.zeros(1, 1, 1280)})
    with pytest.raises(WeightsMismatchError, match="does not fit ImageBind"):
        load_imagebind(tmp_path, size="full")  # a tiny file is not the huge model
    path.write_bytes(b"not a checkpoint")
    with pytest.raises(WeightsMismatchError, match="cannot be read as a weights-only state dict"):
        load_imagebind(tmp_path, size="tiny")
