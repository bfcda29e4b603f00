"""The forward contract of VASTDiT3 and STDiT3 on tiny models (CPU)."""

import copy

import pytest
import torch

from conftest import TINY_VA, randomise_sync_modules, take_sample
from javisdit.registry import MODELS, build_module


@pytest.fixture
def model():
    torch.manual_seed(0)
    return build_module(TINY_VA, MODELS)


def test_output_shapes_and_no_input_mutation(model, tiny_inputs):
    inputs = tiny_inputs()
    before = copy.deepcopy(inputs)
    out = model(**inputs)
    assert set(out) == {"video", "audio"}
    assert out["video"].shape == (2, 8, 5, 9, 11) and out["audio"].shape == (2, 16, 8, 16)
    assert out["video"].dtype == out["audio"].dtype == torch.float32
    assert set(inputs["x"]) == {"video", "audio"}
    for key, value in before.items():
        if key == "x":
            assert all(torch.equal(value[k], inputs["x"][k]) for k in value)
        else:
            assert torch.equal(value, inputs[key]), key


def test_backward_reaches_every_trainable_parameter(model, tiny_inputs):
    out = model(**tiny_inputs())
    (out["video"].square().mean() + out["audio"].square().mean()).backward()
    missing = [n for n, p in model.named_parameters() if p.requires_grad and p.grad is None]
    assert missing == []
    assert model.rope.freqs.grad is None


def test_samples_are_independent_in_per_sample_mode(tiny_inputs):
    torch.manual_seed(0)
    model = build_module(dict(TINY_VA, prior_attn_batch_union=False), MODELS).eval()
    randomise_sync_modules(model)
    inputs = tiny_inputs(B=2)
    both = model(**inputs)
    first = model(**take_sample(inputs, 0))
    for key in ("video", "audio"):
        torch.testing.assert_close(both[key][:1], first[key], rtol=1e-4, atol=1e-5)


def test_masked_frames_use_t0(model, tiny_inputs):
    model.eval()
    inputs = tiny_inputs()
    all_true = model(**inputs, x_mask=torch.ones(2, 5, dtype=torch.bool), ax_mask=torch.ones(2, 8, dtype=torch.bool))
    plain = model(**inputs)
    torch.testing.assert_close(all_true["video"], plain["video"])  # all-True masks change nothing
    x_mask = torch.ones(2, 5, dtype=torch.bool)
    x_mask[:, 0] = False
    masked = model(**inputs, x_mask=x_mask)
    assert not torch.allclose(masked["video"][:, :, 0], plain["video"][:, :, 0])


def test_grad_checkpointing_gives_the_same_gradients(tiny_inputs):
    grads = []
    for enabled in (False, True):
        torch.manual_seed(0)
        model = build_module(dict(TINY_VA, class_dropout_prob=0.0), MODELS)
        model.grad_checkpointing = enabled
        out = model(**tiny_inputs())
        (out["video"].sum() + out["audio"].sum()).backward()
        grads.append(torch.cat([p.grad.flatten() for p in model.parameters() if p.grad is not None]))
    torch.testing.assert_close(grads[0], grads[1])


def test_text_dropout_only_in_training(tiny_inputs):
    torch.manual_seed(0)
    model = build_module(dict(TINY_VA, class_dropout_prob=1.0), MODELS)
    inputs = tiny_inputs()
    null = model.null_text().expand(2, 1, -1, -1)
    model.train()
    torch.manual_seed(1)
    dropped = model(**inputs)
    model.eval()
    with_null = model(**{**inputs, "y": null, "spatial_prior": model.null_prior()[0].expand(2, -1, -1),
                         "temporal_prior": model.null_prior()[1].expand(2, -1, -1)})
    torch.testing.assert_close(dropped["audio"], with_null["audio"])


def test_audio_only_model(tiny_inputs):
    torch.manual_seed(0)
    model = build_module(dict(TINY_VA, only_infer_audio=True, train_st_prior_attn=False, train_va_cross_attn=False),
                         MODELS)
    inputs = tiny_inputs()
    inputs["x"] = {"audio": inputs["x"]["audio"]}
    out = model(**{k: v for k, v in inputs.items() if k not in ("spatial_prior", "temporal_prior")})
    assert set(out) == {"audio"} and out["audio"].shape == (2, 16, 8, 16)


def test_stdit3_forward(tiny_inputs):
    torch.manual_seed(0)
    model = build_module(dict(type="STDiT3-tiny"), MODELS)
    inputs = tiny_inputs()
    out = model(inputs["x"]["video"], inputs["timestep"], inputs["y"], inputs["mask"], fps=inputs["fps"],
                height=inputs["height"], width=inputs["width"])
    assert out.shape == (2, 8, 5, 9, 11)


def test_kwarg_overrides_build_a_small_xl():
    model = build_module(dict(type="VASTDiT3-XL/2", depth=2, hidden_size=64, num_heads=4, caption_channels=32,
                              model_max_length=8), MODELS)
    assert len(model.spatial_blocks) == 2 and model.x_embedder.proj.out_channels == 64
    assert model.y_embedder.y_embedding.shape == (8, 32)


@pytest.mark.parametrize(
    "change, message",
    [
        (lambda i: i["x"].update(video=torch.randn(2, 3, 5, 9, 11)), r"x\['video'\] must be \[B, 4, T, H, W\], got \[2, 3, 5, 9, 11\]"),
        (lambda i: i["x"].update(audio=torch.randn(2, 4, 8, 16)), r"x\['audio'\] must be \[B, 8, Ta, M\]"),
        (lambda i: i["x"].update(audio=torch.randn(3, 8, 8, 16)), r"x\['video'\] has batch 2 but x\['audio'\] has batch 3"),
        (lambda i: i["x"].update(audio=torch.randn(2, 8, 6, 16)), r"multiples of the audio patch \(4, 1\), got \[6, 16\]"),
        (lambda i: i.update(y=torch.randn(3, 1, 8, 32)), r"y must be \[B, 1, L, 32\] with B = 2"),
        (lambda i: i.update(spatial_prior=torch.randn(2, 16, 128)), r"spatial_prior must be \[B, 32, 128\] with B = 2, got \[2, 16, 128\]"),
        (lambda i: i.update(temporal_prior=None), r"temporal_prior is required: expected \[B, 32, 128\]"),
        (lambda i: i.update(mask=torch.ones(2, 7)), r"mask must be \[B, L\] = \[2, 8\]"),
        (lambda i: i.update(fps=None), r"fps is required"),
        (lambda i: i.update(x={"audio": i["x"]["audio"]}), r"x\['video'\] is required"),
    ],
)
def test_bad_inputs_name_the_tensor(model, tiny_inputs, change, message):
    inputs = tiny_inputs()
    change(inputs)
    with pytest.raises(ValueError, match=message):
        model(**inputs)


def test_bad_masks(model, tiny_inputs):
    with pytest.raises(ValueError, match=r"x_mask must be \[B, T\] = \[2, 5\]"):
        model(**tiny_inputs(), x_mask=torch.ones(2, 4, dtype=torch.bool))
    with pytest.raises(ValueError, match=r"ax_mask must be \[B, Ta\] = \[2, 8\]"):
        model(**tiny_inputs(), ax_mask=torch.ones(2, 2, dtype=torch.bool))



def test_null_conditions_are_the_checkpoint_buffers(model):
    spatial, temporal = model.null_prior()
    assert spatial.shape == (1, 32, 128) and temporal.shape == (1, 32, 128)
    torch.testing.assert_close(torch.cat([spatial, temporal], 1)[0], model.st_prior_embedder.y_embedding)
    assert torch.equal(model.null_text()[0, 0], model.y_embedder.y_embedding)
