import pytest
import torch
from mmengine.registry import Registry

from javisdit.errors import ConfigError
from javisdit.registry import DATASETS, MODELS, SCHEDULERS, build_module


@pytest.fixture
def registry():
    reg = Registry("toy")

    @reg.register_module("Toy/1")
    class Toy(torch.nn.Module):
        def __init__(self, width=2, depth=1):
            super().__init__()
            self.width, self.depth = width, depth

    return reg


def test_build_from_dict_with_overrides(registry):
    cfg = {"type": "Toy/1", "width": 4, "depth": 3}
    model = build_module(cfg, registry, depth=5, )
    assert (model.width, model.depth) == (4, 5)
    assert cfg == {"type": "Toy/1", "width": 4, "depth": 3}  # the config is not modified


def test_none_and_built_objects_pass_through(registry):
    assert build_module(None, registry) is None
    built = build_module({"type": "Toy/1"}, registry)
    assert build_module(built, registry) is built
    plain = object()  # not only nn.Modules: any built object
    assert build_module(plain, registry) is plain
    with pytest.raises(ConfigError, match=r"cannot apply \['depth'\] to an already-built Toy"):
        build_module(built, registry, depth=2)


def test_unknown_type_lists_registered(registry):
    with pytest.raises(ConfigError, match=r"unknown toy type 'Toy/2'; registered: Toy/1"):
        build_module({"type": "Toy/2"}, registry)


def test_missing_type(registry):
    with pytest.raises(ConfigError, match=r"needs a 'type' key; got keys \['width'\]"):
        build_module({"width": 3}, registry)


def test_project_registries_import_their_packages():
    assert (MODELS.name, SCHEDULERS.name, DATASETS.name) == ("model", "scheduler", "dataset")
    assert MODELS._locations == ["javisdit.models"]
    assert SCHEDULERS._locations == ["javisdit.schedulers"]
    assert DATASETS._locations == ["javisdit.datasets"]
    with pytest.raises(ConfigError, match="unknown model type 'NoSuchModel'"):
        build_module({"type": "NoSuchModel"}, MODELS)
