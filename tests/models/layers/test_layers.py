"""Layers against values worked out by hand."""

import math

import pytest
import torch

from javisdit.models.layers.attention import BiCrossAttention, CrossAttention, TokenTimes, attention
from javisdit.models.layers.embeddings import sincos_1d, sincos_2d, timestep_embedding
from javisdit.models.layers.norms import RMSNorm
from javisdit.models.layers.rope import RotaryEmbedding, rope_angles_1d


def test_rope_rotates_interleaved_pairs():
    rope = RotaryEmbedding(4)  # freqs 1 and 1/100
    torch.testing.assert_close(rope.freqs, torch.tensor([1.0, 0.01]))
    x = torch.tensor([[1.0, 0.0, 0.0, 1.0], [1.0, 0.0, 0.0, 1.0]])  # positions 0 and 1
    out = rope(x)
    torch.testing.assert_close(out[0], x[0])  # position 0 is not rotated
    expected = torch.tensor([math.cos(1), math.sin(1), -math.sin(0.01), math.cos(0.01)])
    torch.testing.assert_close(out[1], expected)


def test_rope_angles_follow_the_weight_dtype():
    rope = RotaryEmbedding(8).to(torch.bfloat16)
    x = torch.randn(1, 2, 30, 8).to(torch.bfloat16)
    pos = torch.arange(30, dtype=torch.bfloat16)
    angles = (pos[:, None] * rope.freqs[None]).repeat_interleave(2, -1)  # bf16 angles, as the original
    pairs = x.unflatten(-1, (-1, 2))
    rotated = torch.stack((-pairs[..., 1], pairs[..., 0]), -1).flatten(-2)
    torch.testing.assert_close(rope(x), x * angles.cos() + rotated * angles.sin(), rtol=0, atol=0)


def test_rope_of_a_slice_at_its_offset_is_rope_of_the_whole_sequence():
    rope = RotaryEmbedding(8)
    x = torch.randn(2, 3, 6, 8)
    torch.testing.assert_close(rope(x[..., 4:, :], start=4, length=6), rope(x)[..., 4:, :], rtol=0, atol=0)


def test_sincos_2d_layout():
    # dim 8 -> 2 frequencies (1, 1/100); a 1 x 2 grid with scale 1 and base size 1: x = (0, 0.5), y = 0
    emb = sincos_2d(1, 2, 8, scale=1.0, base_size=1, dtype=torch.float32)
    assert emb.shape == (1, 2, 8)
    expected = torch.tensor([math.sin(0.5), math.sin(0.005), math.cos(0.5), math.cos(0.005), 0, 0, 1, 1])
    torch.testing.assert_close(emb[0, 1], expected)
    # row-major tokens: token 2 of a 2 x 2 grid is (i=1, j=0): x = 0, y = 1 * base/h = 0.5
    emb = sincos_2d(2, 2, 8, scale=1.0, base_size=1, dtype=torch.float32)
    torch.testing.assert_close(emb[0, 2], torch.tensor([0, 0, 1, 1, math.sin(0.5), math.sin(0.005),
                                                        math.cos(0.5), math.cos(0.005)]))


def test_sincos_1d_layout():
    emb = sincos_1d(3, 4, torch.float32)  # frequencies 1 and 1/100
    torch.testing.assert_close(emb[0, 2], torch.tensor([math.sin(2), math.sin(0.02), math.cos(2), math.cos(0.02)]))


def test_timestep_embedding_is_cos_then_sin():
    emb = timestep_embedding(torch.tensor([0.0, 1.0]), 4)  # frequencies 1 and 1/100
    torch.testing.assert_close(emb[0], torch.tensor([1.0, 1.0, 0.0, 0.0]))
    torch.testing.assert_close(emb[1], torch.tensor([math.cos(1), math.cos(0.01), math.sin(1), math.sin(0.01)]))


def test_rmsnorm():
    norm = RMSNorm(2)
    torch.testing.assert_close(norm(torch.tensor([[3.0, 4.0]])), torch.tensor([[3.0, 4.0]]) / math.sqrt(12.5),
                               atol=1e-5, rtol=1e-5)


@pytest.mark.parametrize("masked", [False, True])
def test_eager_and_sdpa_agree(masked):
    g = torch.Generator().manual_seed(0)
    q, k, v = (torch.randn(2, 3, 5, 8, generator=g) for _ in range(3))
    mask = torch.rand(2, 1, 1, 5, generator=g) > 0.3 if masked else None
    if mask is not None:
        mask[..., 0] = True
    torch.testing.assert_close(attention(q, k, v, mask, "eager"), attention(q, k, v, mask, "sdpa"),
                               rtol=1e-5, atol=1e-5)


def test_flash_request_falls_back_on_cpu():
    q = torch.randn(1, 2, 4, 8)
    torch.testing.assert_close(attention(q, q, q, backend="flash"), attention(q, q, q))
    with pytest.raises(ValueError, match="unknown attention backend 'fast'; valid: sdpa, flash, eager"):
        attention(q, q, q, backend="fast")


def test_key_padding_mask_equals_attending_to_valid_tokens_only():
    torch.manual_seed(0)
    layer = CrossAttention(16, 2)
    x, cond = torch.randn(2, 5, 16), torch.randn(2, 6, 16)
    cond_mask = torch.tensor([[1, 1, 1, 0, 0, 0], [1, 1, 1, 1, 1, 1]], dtype=torch.bool)
    out = layer(x, cond, cond_mask)
    torch.testing.assert_close(out[0:1], layer(x[0:1], cond[0:1, :3]))  # the original's packed form
    torch.testing.assert_close(out[1:2], layer(x[1:2], cond[1:2]))


def test_batch_shared_keys_equal_concatenated_conditions():
    torch.manual_seed(0)
    layer = CrossAttention(16, 2)
    x, cond = torch.randn(2, 5, 16), torch.randn(2, 3, 16)
    shared = layer(x, cond, share_across_batch=True)
    both = torch.cat([cond[0], cond[1]])[None].expand(2, -1, -1)
    torch.testing.assert_close(shared, layer(x, both))


def _time_probe(times=None, frames: int = 8, sharpness: float = 5.0) -> torch.Tensor:
    """Audio tokens with identical content attending to video frames with identical content: the audio
    update reads back the (attention-weighted) frame index. -> [frames] one value per audio token."""
    attn = BiCrossAttention(4, 4, embed_dim=32, num_heads=1)
    with torch.no_grad():
        for layer in (attn.m1_proj, attn.m2_proj, attn.values_m1_proj, attn.out_m2_proj):
            layer.weight.zero_()
        attn.m1_proj.weight[:, 0] = sharpness  # query/key from channel 0 (1 everywhere): equal content
        attn.m2_proj.weight[:, 0] = sharpness
        attn.values_m1_proj.weight[0, 1] = 1.0  # the video value is the frame index in channel 1
        attn.out_m2_proj.weight[0, 0] = 1.0
    t = torch.arange(frames, dtype=torch.float32)
    video = torch.stack([torch.ones(frames), t, torch.zeros(frames), torch.zeros(frames)], dim=-1)[None]
    audio = torch.stack([torch.ones(frames)] + [torch.zeros(frames)] * 3, dim=-1)[None]
    with torch.no_grad():
        return attn(video, audio, times=times)[1][0, :, 0]


def _times(video: torch.Tensor, audio: torch.Tensor, **how) -> TokenTimes:
    return TokenTimes(video, video, audio, 32, **how)


def test_bi_cross_attention_time_rope_finds_the_frame_at_the_same_time():
    t = torch.arange(8, dtype=torch.float32)
    torch.testing.assert_close(_time_probe(_times(t, t, rope=True)), t, atol=0.1, rtol=0)
    # without positions every frame looks alike: the mean frame for every sound
    torch.testing.assert_close(_time_probe(None), torch.full((8,), 3.5))
    torch.testing.assert_close(_time_probe(_times(t, t)), torch.full((8,), 3.5))  # times given, neither used
    # only relative time counts: both clocks shifted by 2.5 frames give the same result
    torch.testing.assert_close(_time_probe(_times(t + 2.5, t + 2.5, rope=True)), _time_probe(_times(t, t, rope=True)),
                               atol=1e-5, rtol=0)
    # the audio clock one frame ahead: each sound finds the next frame (the last has none)
    torch.testing.assert_close(_time_probe(_times(t, t + 1, rope=True))[:-1], t[1:], atol=0.1, rtol=0)


def test_bi_cross_attention_time_window_sees_only_near_frames():
    t = torch.arange(8, dtype=torch.float32)
    # equal content: the mean of the frames within one frame of each sound
    expected = torch.tensor([0.5, 1, 2, 3, 4, 5, 6, 6.5])
    torch.testing.assert_close(_time_probe(_times(t, t, window=1.0)), expected)
    masks = _times(t[:3], t[:2] * 2, window=1.0).masks
    assert masks[0].tolist() == [[True, False], [True, True], [False, True]]  # [video, audio]
    assert masks[1].tolist() == [[True, True, False], [False, True, True]]  # [audio, video]
    assert _times(t, t).masks == (None, None) and _times(t, t).angles is None


def test_rope_angles_1d_are_position_times_frequency():
    angles = rope_angles_1d(torch.tensor([0.0, 1.0, 2.5]), 8)
    torch.testing.assert_close(angles[2], 2.5 * torch.tensor([1.0, 0.1, 0.01, 0.001]))
    assert angles.shape == (3, 4) and not angles[0].any()
