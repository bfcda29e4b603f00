"""Step-invariant conditioning: the text and prior embeddings run once per sampling run."""

import torch

from conftest import TINY_VA, randomise_sync_modules
from javisdit.registry import MODELS, build_module


def _count_calls(*modules):
    calls = {}
    for module in modules:
        calls[module] = 0

        def hook(mod, args, out):
            calls[mod] += 1

        module.register_forward_hook(hook)
    return calls


def test_the_embeddings_run_once_while_the_conditions_are_the_same_tensors(tiny_inputs):
    torch.manual_seed(0)
    model = build_module(TINY_VA, MODELS).eval()
    randomise_sync_modules(model)  # so that the prior reaches the output
    embedders = (model.y_embedder, model.audio_y_embedder, model.st_prior_embedder)
    calls = _count_calls(*embedders)
    inputs = tiny_inputs()
    with torch.no_grad():
        first = model(**inputs)
        for t in (700.0, 300.0):  # sampling steps: new latents and timesteps, the same conditions
            model(**dict(inputs, timestep=torch.full((2,), t), x={k: v + 1 for k, v in inputs["x"].items()}))
        assert list(calls.values()) == [1, 1, 1]
        torch.testing.assert_close(model(**inputs)["video"], first["video"], rtol=0, atol=0)

        model(**dict(inputs, y=inputs["y"].clone()))  # another caption tensor: the text again, not the prior
        assert list(calls.values()) == [2, 2, 1]
        inputs["spatial_prior"].add_(1)  # written in place: the prior again; the original caption again
        changed = model(**inputs)
        assert list(calls.values()) == [3, 3, 2]
        assert not torch.equal(changed["video"], first["video"])

        state = model.state_dict()
        state["y_embedder.y_proj.fc2.bias"] = state["y_embedder.y_proj.fc2.bias"] + 1
        model.load_state_dict(state)  # new weights: recomputed
        model(**inputs)
        assert calls[model.y_embedder] == 4

    model(**inputs)  # autograd on (training code paths): never reused
    model.train()
    with torch.no_grad():
        model(**inputs)
    assert calls[model.y_embedder] == 6


def test_reused_embeddings_give_the_same_samples_as_fresh_ones(tiny_inputs):
    torch.manual_seed(0)
    model = build_module(TINY_VA, MODELS).eval()
    inputs = tiny_inputs()
    with torch.no_grad():
        model(**inputs)
        reused = model(**dict(inputs, timestep=torch.full((2,), 400.0)))
        model._memo.clear()
        fresh = model(**dict(inputs, timestep=torch.full((2,), 400.0)))
    for key in ("video", "audio"):
        torch.testing.assert_close(reused[key], fresh[key], rtol=0, atol=0)
