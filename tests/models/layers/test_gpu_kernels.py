"""The optional CUDA kernels agree with the pure-PyTorch paths they replace (``gpu``: skipped without CUDA;
a kernel that is not installed skips its test with the reason)."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F

from javisdit.models.layers import attention as attn
from javisdit.models.layers.norms import _fused_layer_norm_cls, make_layer_norm

pytestmark = pytest.mark.gpu

BF16_ATOL = 2e-2  # bf16 keeps 8 mantissa bits: outputs of O(1) agree to about 1e-2


def _qkv(seed: int = 0, B: int = 2, H: int = 16, N: int = 405, D: int = 72):
    g = torch.Generator("cuda").manual_seed(seed)
    return [torch.randn(B, H, N, D, generator=g, device="cuda", dtype=torch.bfloat16) for _ in range(3)]


def _sdpa(q, k, v):
    return F.scaled_dot_product_attention(q.float(), k.float(), v.float()).to(q.dtype)


def test_flash_attn_matches_sdpa():
    kernel = attn._flash_attn_func()
    if kernel is None:
        pytest.skip("flash-attn is not installed (requirements/requirements-gpu.txt)")
    q, k, v = _qkv()
    out = kernel(q.transpose(1, 2), k.transpose(1, 2), v.transpose(1, 2)).transpose(1, 2)
    torch.testing.assert_close(out.float(), _sdpa(q, k, v).float(), atol=BF16_ATOL, rtol=0)
    # the dispatcher uses it for the flash backend
    torch.testing.assert_close(attn.attention(q, k, v, backend="flash"), out, atol=0, rtol=0)


def test_xformers_matches_sdpa():
    kernel = attn._xformers_attention()
    if kernel is None:
        pytest.skip("xformers is not installed (requirements/requirements-gpu.txt)")
    q, k, v = _qkv(1)
    out = kernel(q.transpose(1, 2), k.transpose(1, 2), v.transpose(1, 2)).transpose(1, 2)
    torch.testing.assert_close(out.float(), _sdpa(q, k, v).float(), atol=BF16_ATOL, rtol=0)


def test_sdpa_backend_on_cuda_matches_eager():
    q, k, v = _qkv(2)
    torch.testing.assert_close(attn.attention(q, k, v).float(), attn.attention(q, k, v, backend="eager").float(),
                               atol=BF16_ATOL, rtol=0)


def test_apex_fused_layernorm_matches_torch():
    if _fused_layer_norm_cls() is None:
        pytest.skip("NVIDIA apex is not installed (see requirements/requirements-gpu.txt)")
    x = torch.randn(4, 1024, 1152, device="cuda", dtype=torch.bfloat16)
    fused = make_layer_norm(1152, use_kernel=True).cuda()
    assert type(fused).__name__ == "FusedLayerNorm"
    expected = F.layer_norm(x.float(), (1152,), eps=1e-6)
    torch.testing.assert_close(fused(x).float(), expected, atol=BF16_ATOL, rtol=0)
