"""Regional torch.compile of the denoisers (javisdit.models.compile): same outputs, same state dict."""

import pytest
import torch

from conftest import TINY_VA, randomise_sync_modules
from javisdit.models.compile import compile_blocks
from javisdit.registry import MODELS, build_module


def test_bad_mode_is_one_clear_error():
    model = build_module(TINY_VA, MODELS)
    with pytest.raises(ValueError, match="compile mode must be one of default, reduce-overhead, max-autotune"):
        compile_blocks(model, mode="fastest")


@pytest.mark.slow
def test_compiled_blocks_give_the_eager_outputs(tiny_inputs):
    torch.manual_seed(0)
    model = build_module(TINY_VA, MODELS).eval()
    randomise_sync_modules(model)
    inputs = tiny_inputs()
    keys = list(model.state_dict())
    with torch.no_grad():
        eager = model(**inputs)
    c = model.config
    assert compile_blocks(model) == 7 * c.depth  # V/A spatial + temporal, V/A prior, V<->A per depth
    assert list(model.state_dict()) == keys  # compiled in place: checkpoints are unchanged
    with torch.no_grad():
        compiled = model(**inputs)
    for key in ("video", "audio"):
        torch.testing.assert_close(compiled[key], eager[key], rtol=1e-5, atol=1e-5)


@pytest.mark.parametrize("flag", [False, True])
def test_inference_compiles_the_blocks_when_asked(flag, repo, monkeypatch):
    from javisdit.config import parse_configs
    from javisdit.inference import pipeline

    seen = []
    monkeypatch.setattr(pipeline, "compile_blocks", lambda model: seen.append(type(model).__name__))
    argv = [str(repo / "configs" / "tiny" / "inference.py")] + (["--compile", "true"] if flag else [])
    cfg = parse_configs("inference", argv)
    assert cfg.compile is flag
    pipeline.build_models(cfg, torch.device("cpu"), torch.float32)
    assert seen == (["VASTDiT3"] if flag else [])
