"""The fused elementwise steps of the DiT blocks, the cached position tables, and the whole model against
the plain (unfused) formulas it replaced."""

import copy

import pytest
import torch

from conftest import TINY_VA, randomise_sync_modules
from javisdit.models.layers import fused
from javisdit.models.layers.embeddings import sincos_1d, sincos_2d
from javisdit.models.layers.rope import RotaryEmbedding
from javisdit.models.stdit import blocks
from javisdit.registry import MODELS, build_module


def _plain_modulate(x, shift, scale):
    return x * (1 + scale) + shift


def _plain_residual_add(x, h, gate=None, inplace=False):
    return x + h if gate is None else x + gate * h


def test_modulate_and_residual_add_equal_the_plain_formulas():
    g = torch.Generator().manual_seed(0)
    x, h = torch.randn(2, 7, 16, generator=g), torch.randn(2, 7, 16, generator=g)
    shift, scale, gate = (torch.randn(2, 1, 16, generator=g) for _ in range(3))
    torch.testing.assert_close(fused.modulate(x, shift, scale), _plain_modulate(x, shift, scale), rtol=1e-6, atol=1e-6)
    torch.testing.assert_close(fused.residual_add(x, h, gate), x + gate * h, rtol=1e-6, atol=1e-6)
    torch.testing.assert_close(fused.residual_add(x, h), x + h, rtol=0, atol=0)
    # bf16: one rounding instead of two, so within one bf16 step of the plain result
    xb, sb, cb = x.bfloat16(), shift.bfloat16(), scale.bfloat16()
    diff = (fused.modulate(xb, sb, cb).float() - _plain_modulate(xb, sb, cb).float()).abs()
    assert diff.max() <= 2 ** -7 * _plain_modulate(xb, sb, cb).float().abs().max()


def test_residual_add_writes_in_place_only_without_autograd():
    x, h, gate = torch.ones(1, 3, 4), torch.full((1, 3, 4), 2.0), torch.full((1, 1, 4), 0.5)
    with torch.no_grad():
        out = fused.residual_add(x, h, gate, inplace=True)
    assert out.data_ptr() == x.data_ptr() and torch.equal(x, torch.full((1, 3, 4), 2.0))

    x = torch.ones(1, 3, 4, requires_grad=True)
    out = fused.residual_add(x, h, gate, inplace=True)  # autograd on: a new tensor
    assert out.data_ptr() != x.data_ptr() and torch.equal(x.detach(), torch.ones(1, 3, 4))
    out.sum().backward()
    assert torch.equal(x.grad, torch.ones(1, 3, 4))

    with torch.no_grad():  # not asked to: never in place
        x = torch.ones(1, 3, 4)
        out = fused.residual_add(x, h, gate)
    assert out.data_ptr() != x.data_ptr() and torch.equal(x, torch.ones(1, 3, 4))


@pytest.mark.parametrize("grad", [False, True])
def test_the_model_matches_the_unfused_formulas_and_keeps_its_inputs(tiny_inputs, monkeypatch, grad):
    torch.manual_seed(0)
    model = build_module(TINY_VA, MODELS).eval()
    randomise_sync_modules(model)
    inputs = tiny_inputs()
    inputs["x_mask"] = torch.tensor([[False, True, True, True, True]] * 2)  # the t0 path too
    before = copy.deepcopy(inputs)
    with torch.set_grad_enabled(grad):
        out = model(**inputs)
    for key, value in before.items():  # in-place residuals never reach the caller's tensors
        if key == "x":
            assert all(torch.equal(value[k], inputs["x"][k]) for k in value)
        else:
            assert torch.equal(value, inputs[key]), key

    monkeypatch.setattr(blocks, "modulate", _plain_modulate)
    monkeypatch.setattr(blocks, "residual_add", _plain_residual_add)
    with torch.set_grad_enabled(grad):
        plain = model(**inputs)
    for key in ("video", "audio"):
        torch.testing.assert_close(out[key], plain[key], rtol=1e-5, atol=1e-5)
        assert not torch.equal(out[key], torch.zeros_like(out[key]))


def test_block_inputs_are_not_written_in_place_in_inference():
    torch.manual_seed(0)
    block = blocks.STDiT3Block(16, 2, temporal=True).eval()
    x, y, t = torch.randn(2, 12, 16), torch.randn(2, 3, 16), torch.randn(2, 96)
    kept = x.clone()
    with torch.no_grad():
        out = block(x, y, None, t, T=4)
    assert torch.equal(x, kept) and not torch.equal(out, x)


def test_rope_tables_are_kept_and_follow_loaded_frequencies():
    rope = RotaryEmbedding(8)
    x = torch.randn(2, 5, 8)
    first = rope(x)
    assert len(rope._tables) == 1
    torch.testing.assert_close(rope(x), first, rtol=0, atol=0)
    assert len(rope._tables) == 1  # the same length reuses the table
    rope.load_state_dict({"freqs": rope.freqs.detach() * 2})
    doubled = RotaryEmbedding(8)
    doubled.freqs.data.mul_(2)
    assert not torch.equal(rope(x), first)
    torch.testing.assert_close(rope(x), doubled(x), rtol=0, atol=0)


def test_position_tables_are_computed_once_per_size():
    assert sincos_2d(3, 4, 16, 1.0, 3, torch.float32) is sincos_2d(3, 4, 16, 1.0, 3, torch.float32)
    assert sincos_1d(6, 8, torch.float32) is sincos_1d(6, 8, torch.float32)
    assert sincos_1d(6, 8, torch.bfloat16).dtype == torch.bfloat16
