"""weight_init_from without a random init of what the checkpoints cover (stages 1 and 3).

The reference is the former path: the whole model built and randomly initialised on the CPU, every
source read whole, merged, and copied in. The streamed path must give the same tensors wherever the
result does not depend on random numbers (checkpoint values, zero-initialised projections, copies),
draw the rest from the seeded global RNG, and leave nothing on the meta device.
"""

import pytest
import torch

from javisdit.models.loading import read_state_dict, save_pretrained
from javisdit.models.stdit import policy
from javisdit.models.stdit.policy import VIDEO_TO_AUDIO, build_initialized
from javisdit.registry import MODELS, build_module

STAGE1 = dict(type="VASTDiT3-tiny", only_train_audio=True, train_st_prior_attn=False, train_va_cross_attn=False)
STAGE3 = dict(type="VASTDiT3-tiny")
SYNC = {"st_t_block", "st_prior_embedder", "video_st_prior_blocks", "audio_st_prior_blocks", "va_cross_blocks"}


@pytest.fixture(scope="module")
def sources(tmp_path_factory):
    """An Open-Sora-like STDiT3 (safetensors file) and a stage-1 run folder (model/ shards), seeded."""
    root = tmp_path_factory.mktemp("sources")
    torch.manual_seed(11)
    opensora = save_pretrained(build_module(dict(type="STDiT3-tiny"), MODELS), root / "opensora") / "model.safetensors"
    torch.manual_seed(12)
    stage1 = root / "runs" / "000-VASTDiT3" / "epoch000-global_step4"
    save_pretrained(build_module(STAGE1, MODELS), stage1 / "model", max_shard_bytes=100_000)
    return {"opensora": str(opensora), "stage1": str(root / "runs" / "000-VASTDiT3")}


def former_path(cfg: dict, files: list[str], copy_video_to_audio: bool, seed: int) -> dict[str, torch.Tensor]:
    torch.manual_seed(seed)
    model = build_module(cfg, MODELS)
    merged = {}
    for file in files:
        merged.update(read_state_dict(file))
    if copy_video_to_audio:
        for key, value in list(merged.items()):
            for source, target in VIDEO_TO_AUDIO:
                if key.startswith(source):
                    merged[target + key[len(source):]] = value
    with torch.no_grad():
        for key, tensor in model.state_dict().items():
            if key in merged:
                tensor.copy_(merged[key])
    return model.state_dict()


def streamed_path(cfg: dict, files: list[str], copy_video_to_audio: bool, seed: int):
    torch.manual_seed(seed)
    return build_initialized(lambda: build_module(dict(cfg, weight_init_from=files), MODELS), copy_video_to_audio)


def _constant(tensor: torch.Tensor) -> bool:
    return bool((tensor == tensor.flatten()[0]).all())


@pytest.mark.parametrize("stage", ["stage1", "stage3"])
def test_streamed_initialisation_matches_the_former_path(sources, stage):
    cfg, files, copy = ((STAGE1, [sources["opensora"]], True) if stage == "stage1"
                        else (STAGE3, [sources["stage1"], sources["opensora"]], False))
    former = former_path(cfg, files, copy, seed=0)
    model, report = streamed_path(cfg, files, copy, seed=0)
    state = model.state_dict()
    assert list(state) == list(former)
    assert all(t.dtype == torch.float32 and t.device.type == "cpu" for t in state.values())
    assert not any(t.is_meta for t in (*model.parameters(), *model.buffers()))
    for key in report.loaded:  # checkpoint values, bit for bit
        assert torch.equal(state[key], former[key]), key
    constant = [k for k in report.kept_init if _constant(former[k])]
    for key in constant:  # deterministic inits: zero projections and gates
        assert torch.equal(state[key], former[key]), key
    random = [k for k in report.kept_init if k not in constant]
    assert random
    for key in random:  # drawn, from the same distributions
        assert not _constant(state[key]), key
        assert state[key].abs().max() <= former[key].abs().max() * 1.5 + 1e-6, key
    if stage == "stage1":
        key = "audio_spatial_blocks.1.attn.qkv.weight"  # the video block copied into the audio tower
        assert torch.equal(state[key], former[key])
        assert {k.split(".")[0] for k in report.kept_init} == {"ax_embedder", "audio_final_layer"}
        assert "spatial_blocks.0.attn.qkv.weight" in report.ignored
    else:
        assert {k.split(".")[0] for k in report.kept_init} == SYNC
        assert len(constant) >= 20  # e.g. video_st_prior_blocks.*.mlp.fc2.*, va_cross_blocks.*.gamma_m*
        assert "va_cross_blocks.1.gamma_m2" in constant and "audio_st_prior_blocks.0.mlp.fc2.weight" in constant


def test_random_parts_follow_the_seed(sources):
    files = [sources["stage1"], sources["opensora"]]
    a, _ = streamed_path(STAGE3, files, False, seed=5)
    b, _ = streamed_path(STAGE3, files, False, seed=5)
    c, _ = streamed_path(STAGE3, files, False, seed=6)
    key = "video_st_prior_blocks.0.spatial_cross_attn.q_linear.weight"
    assert key in a.state_dict()
    assert torch.equal(a.state_dict()[key], b.state_dict()[key])
    assert not torch.equal(a.state_dict()[key], c.state_dict()[key])


def test_covered_submodules_are_never_allocated_or_initialised(sources, monkeypatch):
    """Stage 3: the towers and embedders are built on the meta device and only filled from the files."""
    built = {}

    def spy(build, layout, on_meta):
        model = real(build, layout, on_meta)
        for name, child in model.named_children():
            built[name] = all(t.is_meta for t in child.state_dict().values())
        return model

    real = policy.build_partly_on_meta
    monkeypatch.setattr(policy, "build_partly_on_meta", spy)
    streamed_path(STAGE3, [sources["stage1"], sources["opensora"]], False, seed=0)
    assert {name for name, meta in built.items() if not meta} == SYNC
    assert {"spatial_blocks", "audio_temporal_blocks", "y_embedder", "audio_y_embedder"} <= set(built)


def test_uncovered_audio_null_caption_is_still_the_video_copy(sources):
    """Only Open-Sora as the source: the audio text embedder is initialised, its null caption as a copy of
    the video one, which must then be built too (it is overwritten by the checkpoint afterwards)."""
    model, report = streamed_path(STAGE3, [sources["opensora"]], False, seed=0)
    former = former_path(STAGE3, [sources["opensora"]], False, seed=0)
    assert "audio_y_embedder.y_embedding" in report.kept_init
    assert torch.equal(model.y_embedder.y_embedding, former["y_embedder.y_embedding"])  # from the checkpoint
    assert not torch.equal(model.audio_y_embedder.y_embedding, model.y_embedder.y_embedding)  # the init's copy


def test_without_sources_the_build_is_unchanged():
    torch.manual_seed(3)
    expected = build_module(STAGE3, MODELS).state_dict()
    torch.manual_seed(3)
    model, report = build_initialized(lambda: build_module(STAGE3, MODELS))
    assert report is None
    assert all(torch.equal(model.state_dict()[k], v) for k, v in expected.items())


def test_wrong_shapes_are_listed_before_anything_is_built(tmp_path):
    torch.manual_seed(0)
    wide = build_module(dict(type="STDiT3-tiny", hidden_size=32), MODELS)
    source = save_pretrained(wide, tmp_path / "wide") / "model.safetensors"
    with pytest.raises(ValueError, match=r"t_block.1.weight: checkpoint \[192, 32\] vs model \[384, 64\]"):
        streamed_path(STAGE3, [str(source)], False, seed=0)
