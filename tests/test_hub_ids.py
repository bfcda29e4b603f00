"""The published weights moved from the JavisDiT to the JavisVerse organisation on the hub: old ids keep
working (read as the new ones, with a log line), a copy cached under the old id is still found, and the
offline error gives the same, new-id download command for both spellings."""

import logging

import huggingface_hub.constants
import pytest
import torch

from conftest import TINY_VA
from javisdit.models.loading import MissingWeightsError, current_hub_id, resolve_weights, save_pretrained
from javisdit.registry import MODELS, build_module

MOVED = "JavisDiT/JavisDiT-v0.1-jav moved to JavisVerse/JavisDiT-v0.1-jav; using the new id"


@pytest.fixture(autouse=True)
def hub_cache(tmp_path, monkeypatch):
    """An empty Hugging Face cache of the test's own (offline: conftest sets HF_HUB_OFFLINE=1)."""
    monkeypatch.setattr(huggingface_hub.constants, "HF_HUB_CACHE", str(tmp_path / "hub"))
    return tmp_path / "hub"


@pytest.fixture
def log(caplog, monkeypatch):
    monkeypatch.setattr(logging.getLogger("javisdit"), "propagate", True)  # other tests' scripts may turn it off
    caplog.set_level(logging.INFO, logger="javisdit")
    return caplog


def _cache(hub, repo_id: str, commit: str, model) -> str:
    folder = hub / f"models--{repo_id.replace('/', '--')}"
    snapshot = folder / "snapshots" / commit
    save_pretrained(model, snapshot, model.config_json())
    (folder / "refs").mkdir()
    (folder / "refs" / "main").write_text(commit)
    return snapshot


@pytest.mark.parametrize("old, new", [
    ("JavisDiT/JavisDiT-v0.1-jav", "JavisVerse/JavisDiT-v0.1-jav"),
    ("JavisDiT/JavisDiT-v0.1-prior", "JavisVerse/JavisDiT-v0.1-prior"),
    ("JavisVerse/JavisDiT-v0.1-audio", "JavisVerse/JavisDiT-v0.1-audio"),
    ("hpcai-tech/OpenSora-STDiT-v3", "hpcai-tech/OpenSora-STDiT-v3"),
    ("cvssp/audioldm2", "cvssp/audioldm2"),
    ("DeepFloyd/t5-v1_1-xxl", "DeepFloyd/t5-v1_1-xxl"),
    ("JavisDiT-fork/model", "JavisDiT-fork/model"),  # only that exact organisation moved
])
def test_only_the_javisdit_organisation_moves(old, new):
    assert current_hub_id(old) == new


@pytest.mark.parametrize("spelling", ["JavisDiT/JavisDiT-v0.1-jav", "JavisVerse/JavisDiT-v0.1-jav"])
def test_offline_error_gives_the_new_id_for_both_spellings(spelling, log):
    with pytest.raises(MissingWeightsError) as err:
        build_module(dict(type="VASTDiT3-XL/2", from_pretrained=spelling), MODELS)
    message = str(err.value)
    assert message.startswith("model.from_pretrained: the weights 'JavisVerse/JavisDiT-v0.1-jav' are not in the "
                              "local Hugging Face cache (nor under its former id 'JavisDiT/JavisDiT-v0.1-jav')")
    command = "`huggingface-cli download JavisVerse/JavisDiT-v0.1-jav --local-dir ./checkpoints/JavisDiT-v0.1-jav`"
    assert command in message
    assert "--cfg-options model.from_pretrained=./checkpoints/JavisDiT-v0.1-jav" in message
    assert "JavisDiT/JavisDiT-v0.1-jav --local-dir" not in message
    moved = [r.getMessage() for r in log.records if "moved to" in r.getMessage()]
    assert moved == ([MOVED] if spelling.startswith("JavisDiT/") else [])


def test_other_organisations_keep_their_ids(log):
    with pytest.raises(MissingWeightsError) as err:
        resolve_weights("hpcai-tech/OpenSora-STDiT-v3", config_key="model.weight_init_from")
    message = str(err.value)
    assert "the weights 'hpcai-tech/OpenSora-STDiT-v3' are not in the local Hugging Face cache and could not" in message
    assert "download hpcai-tech/OpenSora-STDiT-v3 --local-dir ./checkpoints/OpenSora-STDiT-v3" in message
    assert not [r for r in log.records if "moved to" in r.getMessage()]


def test_subfolder_download_command_uses_the_new_id():
    with pytest.raises(MissingWeightsError) as err:
        resolve_weights("JavisDiT/JavisDiT-v0.1-prior", config_key="prior_encoder.from_pretrained",
                        subfolders=("a", "b"))
    assert ("`huggingface-cli download JavisVerse/JavisDiT-v0.1-prior --include 'a/*' 'b/*' --local-dir "
            "./checkpoints/JavisDiT-v0.1-prior`") in str(err.value)


@pytest.mark.parametrize("spelling", ["JavisDiT/JavisDiT-v0.1-tiny", "JavisVerse/JavisDiT-v0.1-tiny"])
def test_a_copy_cached_under_the_old_id_is_used(spelling, hub_cache, log):
    torch.manual_seed(0)
    tiny = build_module(TINY_VA, MODELS)
    old = _cache(hub_cache, "JavisDiT/JavisDiT-v0.1-tiny", "1" * 40, tiny)
    assert resolve_weights(spelling) == old
    assert any("cached under its former id JavisDiT/JavisDiT-v0.1-tiny" in r.getMessage() for r in log.records)
    loaded = build_module(dict(type="VASTDiT3-XL/2", from_pretrained=spelling), MODELS)
    assert torch.equal(loaded.t_block[1].weight, tiny.t_block[1].weight)


@pytest.mark.parametrize("spelling", ["JavisDiT/JavisDiT-v0.1-tiny", "JavisVerse/JavisDiT-v0.1-tiny"])
def test_the_new_id_wins_when_both_are_cached(spelling, hub_cache):
    tiny = build_module(TINY_VA, MODELS)
    _cache(hub_cache, "JavisDiT/JavisDiT-v0.1-tiny", "1" * 40, tiny)
    new = _cache(hub_cache, "JavisVerse/JavisDiT-v0.1-tiny", "2" * 40, tiny)
    assert resolve_weights(spelling) == new


def test_local_folder_hint_names_the_new_id():
    with pytest.raises(MissingWeightsError) as err:
        resolve_weights("./checkpoints/JavisDiT-v0.1-jav", config_key="model.from_pretrained")
    assert "download JavisVerse/JavisDiT-v0.1-jav --local-dir checkpoints/JavisDiT-v0.1-jav" in str(err.value)
