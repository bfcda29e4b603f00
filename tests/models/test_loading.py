"""The weight loader: every on-disk layout, strict key checks, missing weights offline, and loading
tensor by tensor in the run's dtype (no whole-file read, no full-precision copy of the model)."""

import copy
import json
import weakref

import pytest
import safetensors
import safetensors.torch
import torch

from conftest import TINY_VA
from javisdit.models.loading import (
    MissingWeightsError,
    WeightsMismatchError,
    load_state_dict_checked,
    open_state_dict,
    read_state_dict,
    resolve_weights,
    save_pretrained,
)
from javisdit.registry import MODELS, build_module


@pytest.fixture(scope="module")
def tiny():
    torch.manual_seed(0)
    return build_module(TINY_VA, MODELS).eval()


def _same_weights(a, b):
    sa, sb = a.state_dict(), b.state_dict()
    return sa.keys() == sb.keys() and all(torch.equal(sa[k], sb[k]) for k in sa)


@pytest.mark.parametrize("layout", ["single", "sharded", "bin", "file", "run-folder"])
def test_from_pretrained_layouts(tiny, tmp_path, layout):
    if layout == "single":
        source = save_pretrained(tiny, tmp_path / "ckpt", tiny.config_json())
    elif layout == "sharded":
        source = save_pretrained(tiny, tmp_path / "ckpt", tiny.config_json(), max_shard_bytes=200_000)
        assert len(list(source.glob("model-*-of-*.safetensors"))) > 2
    elif layout == "bin":
        source = tmp_path / "ckpt"
        source.mkdir()
        torch.save(tiny.state_dict(), source / "pytorch_model.bin")
        (source / "config.json").write_text(json.dumps(tiny.config_json()))
    elif layout == "file":
        source = save_pretrained(tiny, tmp_path / "ckpt") / "model.safetensors"
    else:  # a training run's checkpoint folder: epochEEE-global_stepS/model/
        source = tmp_path / "epoch000-global_step10"
        save_pretrained(tiny, source / "model", tiny.config_json())
    kwargs = {} if layout in ("single", "sharded", "bin", "run-folder") else dict(TINY_VA)
    kwargs.pop("type", None)
    loaded = build_module(dict(type="VASTDiT3-tiny", from_pretrained=str(source), **kwargs), MODELS)
    assert _same_weights(loaded, tiny)


def test_config_json_sets_the_architecture_and_kwargs_override_it(tiny, tmp_path):
    source = save_pretrained(tiny, tmp_path / "ckpt", {**tiny.config_json(), "architectures": ["VASTDiT3"],
                                                          "weight_init_from": ["./gone"], "torch_dtype": "float32"})
    model = build_module(dict(type="VASTDiT3-XL/2", from_pretrained=str(source), enable_flash_attn=True), MODELS)
    assert model.config.hidden_size == 64 and model.config.enable_flash_attn is True
    assert model.training_policy == {}  # a stored weight_init_from is never executed


def test_missing_local_path(tmp_path):
    with pytest.raises(MissingWeightsError, match="no such file or folder: ./checkpoints/nothing-here"):
        resolve_weights("./checkpoints/nothing-here")
    (tmp_path / "empty").mkdir()
    with pytest.raises(MissingWeightsError, match="no weights in .*empty: expected one of model.safetensors"):
        read_state_dict(tmp_path / "empty")


def test_missing_shard(tiny, tmp_path):
    source = save_pretrained(tiny, tmp_path / "ckpt", max_shard_bytes=200_000)
    next(source.glob("model-00002-*.safetensors")).unlink()
    with pytest.raises(MissingWeightsError, match="lists the shard model-00002-of-.*, which is missing"):
        read_state_dict(source)


def test_wrong_checkpoint_lists_keys(tiny, tmp_path):
    stdit = build_module(dict(type="STDiT3-tiny"), MODELS)
    source = save_pretrained(stdit, tmp_path / "video-only")
    with pytest.raises(WeightsMismatchError) as err:
        build_module(dict(type="VASTDiT3-tiny", from_pretrained=str(source)), MODELS)
    message = str(err.value)
    assert "does not fit VASTDiT3" in message and "missing: ax_embedder.proj.weight" in message


def test_allow_lists(tiny):
    state = {k: v for k, v in tiny.state_dict().items() if not k.startswith("va_cross_blocks")}
    state["extra.weight"] = torch.zeros(1)
    torch.manual_seed(3)
    model = build_module(TINY_VA, MODELS)
    with pytest.raises(WeightsMismatchError, match="1 unexpected: extra.weight"):
        load_state_dict_checked(model, state, allow_missing=["va_cross_blocks."])
    report = load_state_dict_checked(model, state, allow_missing=["va_cross_blocks."], ignore_unexpected=["extra."])
    assert not report
    assert torch.equal(model.t_block[1].weight, tiny.t_block[1].weight)


def test_mis_shaped(tiny):
    state = dict(tiny.state_dict())
    state["t_block.1.bias"] = torch.zeros(3)
    with pytest.raises(WeightsMismatchError, match=r"1 mis-shaped: t_block.1.bias \[3\] vs \[384\]"):
        load_state_dict_checked(build_module(TINY_VA, MODELS), state)


def test_hub_id_from_the_local_cache_offline(tiny, tmp_path, monkeypatch):
    """A repository already in the Hugging Face cache loads by its id with HF_HUB_OFFLINE=1."""
    import huggingface_hub.constants

    commit = "0123456789abcdef0123456789abcdef01234567"
    repo = tmp_path / "hub" / "models--JavisDiT--JavisDiT-v0.1-tiny"
    save_pretrained(tiny, repo / "snapshots" / commit, tiny.config_json())
    (repo / "refs").mkdir()
    (repo / "refs" / "main").write_text(commit)
    monkeypatch.setattr(huggingface_hub.constants, "HF_HUB_CACHE", str(tmp_path / "hub"))
    assert resolve_weights("JavisDiT/JavisDiT-v0.1-tiny") == repo / "snapshots" / commit
    loaded = build_module(dict(type="VASTDiT3-XL/2", from_pretrained="JavisDiT/JavisDiT-v0.1-tiny"), MODELS)
    assert _same_weights(loaded, tiny)


def test_missing_local_copy_of_published_weights_says_where_to_get_them():
    with pytest.raises(MissingWeightsError) as err:
        resolve_weights("./checkpoints/OpenSora-STDiT-v3/model.safetensors", config_key="model.weight_init_from")
    assert "huggingface-cli download hpcai-tech/OpenSora-STDiT-v3 --local-dir checkpoints/OpenSora-STDiT-v3" in str(err.value)
    with pytest.raises(MissingWeightsError, match="move your stage 2 checkpoint folder there"):
        resolve_weights("./checkpoints/JavisDiT-v0.1-prior", config_key="prior_encoder.from_pretrained")
    with pytest.raises(MissingWeightsError, match="no such file or folder: weights/model.pt$"):
        resolve_weights("weights/model.pt")  # a relative file, not a hub id


def _write(tiny, folder, layout):
    """``tiny`` in one of the on-disk layouts; returns the path to load."""
    if layout == "single":
        return save_pretrained(tiny, folder, tiny.config_json())
    if layout == "sharded":
        return save_pretrained(tiny, folder, tiny.config_json(), max_shard_bytes=200_000)
    folder.mkdir()
    (folder / "config.json").write_text(json.dumps(tiny.config_json()))
    if layout == "bin":
        torch.save(tiny.state_dict(), folder / "pytorch_model.bin")
        return folder
    torch.save({"state_dict": tiny.state_dict()}, folder / "model.pt", _use_new_zipfile_serialization=False)
    return folder / "model.pt"  # a legacy (unmappable) training container


@pytest.mark.parametrize("layout", ["single", "sharded", "bin", "legacy-pt"])
@pytest.mark.parametrize("dtype", [torch.bfloat16, torch.float32])
def test_loading_in_the_run_dtype_equals_casting_a_whole_load(tiny, tmp_path, layout, dtype):
    source = _write(tiny, tmp_path / "ckpt", layout)
    model = build_module(dict(TINY_VA, from_pretrained=str(source)), MODELS, dtype=dtype, device="cpu")
    expected = copy.deepcopy(tiny).to(dtype).state_dict()
    state = model.state_dict()
    assert list(state) == list(expected)
    assert all(state[k].dtype == dtype and torch.equal(state[k], v) for k, v in expected.items())
    assert not model.rope.freqs.requires_grad


def test_loading_reads_one_tensor_at_a_time_and_keeps_no_full_precision_copy(tiny, tmp_path, monkeypatch):
    source = save_pretrained(tiny, tmp_path / "ckpt", tiny.config_json(), max_shard_bytes=200_000)
    reads, alive = [], []
    real_safe_open = safetensors.safe_open

    class Recorded:  # safe_open, remembering every tensor it hands out
        def __init__(self, *args, **kwargs):
            self._context = real_safe_open(*args, **kwargs)

        def __enter__(self):
            self._handle = self._context.__enter__()
            return self

        def __exit__(self, *exc):
            return self._context.__exit__(*exc)

        def keys(self):
            return self._handle.keys()

        def get_slice(self, key):
            return self._handle.get_slice(key)

        def get_tensor(self, key):
            assert all(ref() is None for ref in alive), "a tensor read before is still held"
            tensor = self._handle.get_tensor(key)
            reads.append(key)
            alive.append(weakref.ref(tensor))
            return tensor

    def whole_file(*args, **kwargs):
        raise AssertionError("a whole safetensors file was loaded")

    monkeypatch.setattr(safetensors.torch, "load_file", whole_file)
    monkeypatch.setattr(safetensors, "safe_open", Recorded)
    model = build_module(dict(type="VASTDiT3-XL/2", from_pretrained=str(source)), MODELS, dtype=torch.bfloat16)
    stored = json.loads((source / "model.safetensors.index.json").read_text())["weight_map"]
    assert sorted(reads) == sorted(stored)  # every stored tensor read once
    assert all(ref() is None for ref in alive)  # none of the fp32 tensors read is kept
    tensors = [*model.parameters(), *model.buffers()]
    assert all(t.dtype == torch.bfloat16 and t.device.type == "cpu" for t in tensors)
    assert torch.equal(model.t_block[1].weight, tiny.t_block[1].weight.to(torch.bfloat16))


def test_derived_keys_are_filled_when_loading_tensor_by_tensor(tiny, tmp_path):
    state = {k: v for k, v in tiny.state_dict().items() if k not in ("rope.freqs", "audio_y_embedder.y_embedding")}
    source = save_pretrained(tiny, tmp_path / "ckpt", tiny.config_json(), state_dict=state)
    model = build_module(dict(TINY_VA, from_pretrained=str(source)), MODELS, dtype=torch.bfloat16)
    assert torch.equal(model.audio_y_embedder.y_embedding, tiny.y_embedder.y_embedding.to(torch.bfloat16))
    assert torch.equal(model.rope.freqs, tiny.rope.freqs.to(torch.bfloat16))
    model.y_embedder.y_embedding.add_(1.0)  # two tensors, not one read twice into the same memory
    assert not torch.equal(model.audio_y_embedder.y_embedding, model.y_embedder.y_embedding)


def test_a_meta_built_model_must_be_filled_entirely(tiny, tmp_path):
    source = save_pretrained(tiny, tmp_path / "ckpt")
    with torch.device("meta"):
        model = build_module(TINY_VA, MODELS)
    state = {k: v for k, v in open_state_dict(source).items() if not k.startswith("va_cross_blocks.")}
    with pytest.raises(WeightsMismatchError, match=r"8 tensors of VASTDiT3 are neither in the checkpoint nor "
                                                   r"initialised by the model: va_cross_blocks.0.gamma_m1"):
        load_state_dict_checked(model, state, source="partial", allow_missing=["va_cross_blocks."])


def test_stored_shapes_are_checked_before_reading(tiny, tmp_path, monkeypatch):
    stdit = build_module(dict(type="STDiT3-tiny", hidden_size=32), MODELS)
    source = save_pretrained(stdit, tmp_path / "narrow")
    state = open_state_dict(source)  # reads the headers only
    monkeypatch.setattr(safetensors, "safe_open", None)  # no tensor can be read from here on
    with torch.device("meta"):
        model = build_module(dict(type="STDiT3-tiny"), MODELS)
    with pytest.raises(WeightsMismatchError, match=r"mis-shaped: .*t_block.1.bias \[192\] vs \[384\]"):
        load_state_dict_checked(model, state)


def test_dtype_and_device_of_a_fresh_model():
    model = build_module(TINY_VA, MODELS, dtype="bf16", device="cpu")
    assert {t.dtype for t in (*model.parameters(), *model.buffers())} == {torch.bfloat16}


@pytest.mark.parametrize("layout", ["sharded", "bin"])
def test_re_opening_files_while_reading_changes_nothing(tiny, tmp_path, layout, monkeypatch):
    import javisdit.models.loading as loading

    monkeypatch.setattr(loading, "_MAPPED_BYTES", 1)  # re-open after every tensor
    monkeypatch.setattr(loading, "_TORCH_MAPPED_BYTES", 300_000)  # (unpickling is slower: a few times)
    source = _write(tiny, tmp_path / "ckpt", layout)
    model = build_module(dict(TINY_VA, from_pretrained=str(source)), MODELS, dtype=torch.bfloat16)
    assert all(torch.equal(model.state_dict()[k], v.to(torch.bfloat16)) for k, v in tiny.state_dict().items())


def test_inference_builds_the_backbone_in_the_run_dtype(tiny, tmp_path, repo):
    from mmengine.config import Config

    from javisdit.inference.pipeline import build_models

    cfg = Config.fromfile(str(repo / "configs" / "tiny" / "inference.py"))
    cfg.model.from_pretrained = str(save_pretrained(tiny, tmp_path / "ckpt", tiny.config_json()))
    model = build_models(cfg, torch.device("cpu"), torch.bfloat16).model
    assert not model.training
    assert all(torch.equal(model.state_dict()[k], v.to(torch.bfloat16)) for k, v in tiny.state_dict().items())
    assert {t.dtype for t in (*model.parameters(), *model.buffers())} == {torch.bfloat16}
