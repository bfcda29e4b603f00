"""Loading JavisDiT++ checkpoints in every published layout, and the LoRA merge against peft's unmerged model."""

import json

import pytest
import torch
from conftest import read_manifest
from safetensors.torch import save_file

from javisdit.errors import MissingWeightsError, WeightsMismatchError
from javisdit.models.wan import build_wan
from javisdit.models.wan.config import make_config
from javisdit.models.wan.lora import LORA_TARGETS, split_lora
from javisdit.models.wan.model import WanModel


def test_published_lora_keys_are_the_twelve_targets_of_every_block():
    """model/ = the 982 merged keys + A (64, in) / B (out, 64) of 12 targets x 30 blocks; the adapter file
    holds the same 720 tensors under peft's names."""
    with torch.device("meta"):
        model = WanModel(make_config("1.3B"))
    layers = dict(model.named_modules())
    published = read_manifest("javisdit_v1_jav")
    base, lora = split_lora(published)
    assert base == read_manifest("javisdit_v1_jav_merged") and len(lora) == 360
    assert {name.split(".", 2)[2] for name in lora} == set(LORA_TARGETS)
    for name, pair in lora.items():
        layer = layers[name]
        assert pair == {"A": (64, layer.in_features), "B": (layer.out_features, 64)}, name
    rest, adapter = split_lora(read_manifest("javisdit_v1_jav_lora_adapter"))
    assert not rest and adapter == lora


def _tiny_peft(seed=0):
    """A tiny t2av model wrapped by peft with the published targets (r 4, alpha 1: scale 0.25), B random."""
    from peft import LoraConfig, get_peft_model

    torch.manual_seed(seed)
    model = build_wan("tiny")
    with torch.no_grad():
        for name in ("head", "audio_head"):
            torch.nn.init.normal_(getattr(model, name).head.weight, std=0.1)
    peft_model = get_peft_model(model, LoraConfig(r=4, lora_alpha=1, target_modules=list(LORA_TARGETS)))
    with torch.no_grad():
        for name, p in peft_model.named_parameters():
            if "lora_B" in name:
                p.normal_(std=0.05)
    return peft_model.eval()


def _inputs():
    g = torch.Generator().manual_seed(3)
    return dict(x=dict(video=torch.randn(1, 16, 2, 4, 4, generator=g), audio=torch.randn(1, 8, 8, 16, generator=g)),
                timestep=torch.tensor([600.0]), y=torch.randn(1, 5, 32, generator=g), mask=torch.ones(1, 5))


def _model_folder_state(peft_model):
    """What ColossalAI's saver writes to model/: base weights under plain names plus the LoRA tensors."""
    state = peft_model.base_model.model.state_dict()
    return {k.replace(".base_layer.", "."): v.clone() for k, v in state.items()}


def _save_sharded_bin(state, folder, shards=2):
    folder.mkdir(parents=True)
    keys = list(state)
    weight_map = {}
    for i in range(shards):
        name = f"pytorch_model-{i + 1:05d}-of-{shards:05d}.bin"
        part = {k: state[k] for k in keys[i::shards]}
        torch.save(part, folder / name)
        weight_map.update({k: name for k in part})
    (folder / "pytorch_model.bin.index.json").write_text(json.dumps({"weight_map": weight_map}))


@pytest.fixture(scope="module")
def peft_model():
    return _tiny_peft()


@pytest.fixture(scope="module")
def unmerged(peft_model):
    with torch.no_grad():
        return peft_model(**_inputs())


def test_model_folder_with_lora_keys_merges_to_the_unmerged_output(tmp_path, peft_model, unmerged):
    _save_sharded_bin(_model_folder_state(peft_model), tmp_path / "ckpt" / "model")
    model = build_wan("tiny", from_pretrained=str(tmp_path / "ckpt"))
    with torch.no_grad():
        out = model(**_inputs())
    for key in ("video", "audio"):
        torch.testing.assert_close(out[key], unmerged[key], rtol=1e-5, atol=1e-5)
    base = build_wan("tiny", from_pretrained=str(tmp_path / "ckpt"), lora_enabled=False)
    with torch.no_grad():
        assert not torch.allclose(base(**_inputs())["video"], unmerged["video"], atol=1e-4)


def test_adapter_folder_is_preferred_and_read_with_its_scale(tmp_path, peft_model, unmerged):
    state = _model_folder_state(peft_model)
    for k in state:  # the model/ copy of the LoRA is stale: the adapter must win
        if ".lora_" in k:
            state[k] = torch.zeros_like(state[k])
    (tmp_path / "model").mkdir()
    save_file(state, str(tmp_path / "model" / "model.safetensors"))
    peft_model.save_pretrained(str(tmp_path / "lora"), safe_serialization=False)  # adapter_model.bin + config
    assert (tmp_path / "lora" / "adapter_model.bin").is_file()
    model = build_wan("tiny", from_pretrained=str(tmp_path))
    with torch.no_grad():
        torch.testing.assert_close(model(**_inputs())["audio"], unmerged["audio"], rtol=1e-5, atol=1e-5)
    (tmp_path / "lora").rename(tmp_path / "adapter")  # another folder name: --lora-dir
    stale = build_wan("tiny", from_pretrained=str(tmp_path))  # finds no adapter: merges the zero copy
    named = build_wan("tiny", from_pretrained=str(tmp_path), lora_dir="adapter")
    with torch.no_grad():
        assert not torch.allclose(stale(**_inputs())["audio"], unmerged["audio"], atol=1e-4)
        torch.testing.assert_close(named(**_inputs())["audio"], unmerged["audio"], rtol=1e-5, atol=1e-5)


def test_merged_checkpoint_loads_strictly_in_bf16(tmp_path, peft_model, unmerged):
    import copy

    merged = copy.deepcopy(peft_model).merge_and_unload()
    save_file(merged.state_dict(), str(tmp_path / "merged.safetensors"))
    model = build_wan("tiny", from_pretrained=str(tmp_path / "merged.safetensors"), dtype="bf16")
    assert next(model.parameters()).dtype == torch.bfloat16
    with torch.no_grad():
        out = model(**_inputs())
    err = (out["video"] - unmerged["video"]).abs().max() / unmerged["video"].abs().max()
    assert err < 0.05


def test_bf16_merge_rounds_once_like_upstream():
    """bf16 weights: W <- bf16(W + (B @ A) * scale) with B @ A in fp32."""
    from javisdit.models.wan.lora import merge_lora

    layer = torch.nn.Linear(8, 6).to(torch.bfloat16)
    model = torch.nn.ModuleDict({"blocks": torch.nn.ModuleList([torch.nn.ModuleDict({"ffn": torch.nn.ModuleList(
        [layer])})])})
    a, b = torch.randn(4, 8).bfloat16(), torch.randn(6, 4).bfloat16()
    expected = (layer.weight.float() + (b.float() @ a.float()) * 0.25).bfloat16()
    assert merge_lora(model, {"blocks.0.ffn.0": {"A": a, "B": b}}, 0.25) == 1
    assert torch.equal(layer.weight, expected)


def test_bad_layouts_are_one_clear_error(tmp_path, peft_model):
    state = _model_folder_state(peft_model)
    base_wan = {k: v for k, v in state.items() if "audio" not in k and ".lora_" not in k}
    (tmp_path / "wan").mkdir()
    save_file(base_wan, str(tmp_path / "wan" / "diffusion_pytorch_model.safetensors"))
    with pytest.raises(WeightsMismatchError, match="without audio modules.*JavisVerse/JavisDiT-v1.0-jav"):
        build_wan("tiny", from_pretrained=str(tmp_path / "wan"))
    model = build_wan("tiny", from_pretrained=str(tmp_path / "wan"), base_ok=True)  # training stages
    assert torch.equal(model.blocks[0].ffn[0].weight, base_wan["blocks.0.ffn.0.weight"])
    video_only = build_wan("tiny", from_pretrained=str(tmp_path / "wan"), model_type="t2v", dual_ffn=False)
    assert len(video_only.state_dict()) == len(base_wan)

    junk = dict(state, **{"blocks.0.extra.weight": torch.zeros(2)})
    (tmp_path / "junk").mkdir()
    save_file(junk, str(tmp_path / "junk" / "model.safetensors"))
    with pytest.raises(WeightsMismatchError, match="blocks.0.extra.weight"):
        build_wan("tiny", from_pretrained=str(tmp_path / "junk"))

    half = {k: v for k, v in state.items() if "blocks.1.ffn.2.lora_B" not in k}
    (tmp_path / "half").mkdir()
    save_file(half, str(tmp_path / "half" / "model.safetensors"))
    with pytest.raises(WeightsMismatchError, match="blocks.1.ffn.2: lora_B is missing"):
        build_wan("tiny", from_pretrained=str(tmp_path / "half"))
    with pytest.raises(MissingWeightsError, match="nowhere"):
        build_wan("tiny", from_pretrained=str(tmp_path / "nowhere"))
