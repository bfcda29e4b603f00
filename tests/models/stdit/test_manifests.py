"""The XL presets have exactly the published checkpoints' keys, shapes and parameter counts."""

import pytest
import torch

from conftest import read_manifest
from javisdit.models.stdit.policy import select_trainable
from javisdit.registry import MODELS, build_module
from javisdit.utils.params import count_params, format_numel

V01_JAV = dict(type="VASTDiT3-XL/2", qk_norm=True, enable_flash_attn=True, enable_layernorm_kernel=True,
               freeze_y_embedder=True, freeze_video_branch=True, freeze_audio_branch=True, train_st_prior_attn=True,
               train_va_cross_attn=True, spatial_prior_len=32, temporal_prior_len=32, st_prior_channel=128,
               audio_patch_size=(4, 1), weight_init_from=[])
STAGE1 = dict(type="VASTDiT3-XL/2", qk_norm=True, only_train_audio=True, freeze_video_branch=True,
              freeze_y_embedder=False, train_st_prior_attn=False, train_va_cross_attn=False,
              weight_init_from=["./checkpoints/OpenSora-STDiT-v3/model.safetensors"])
POLICY = ("freeze_y_embedder", "freeze_video_branch", "freeze_audio_branch")


@pytest.mark.parametrize(
    "cfg, manifest, params, trainable",
    [
        (V01_JAV, "vastdit3_xl2", 3_719_730_948, 1_315_605_888),
        (STAGE1, "vastdit3_xl2_stage1_audio_train", 1_213_806_084, 1_196_481_088),
        (dict(type="STDiT3-XL/2"), "stdit3_xl2", 1_207_643_972, 1_207_643_936),
    ],
    ids=["jav", "stage1-audio", "stdit3"],
)
def test_xl_matches_manifest(cfg, manifest, params, trainable):
    with torch.device("meta"):  # no memory for 3.7e9 parameters
        model = build_module(cfg, MODELS)
    shapes = {key: tuple(value.shape) for key, value in model.state_dict().items()}
    assert shapes == read_manifest(manifest)
    assert list(shapes) == list(read_manifest(manifest))  # same order as the checkpoints
    assert count_params(model) == params
    flags = {k: v for k, v in cfg.items() if k in POLICY}
    assert model.training_policy == {**flags, **({"weight_init_from": cfg["weight_init_from"]}
                                                 if "weight_init_from" in cfg else {})}
    assert select_trainable(model, **flags) == trainable


def test_parameter_count_in_original_units():
    assert format_numel(3_719_730_948) == "3,719,730,948 (3.46 B)"
    assert format_numel(30_116_608) == "30,116,608 (28.72 M)"
