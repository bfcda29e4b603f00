"""The umT5-XXL text encoder of JavisDiT++: key map against the published file's manifest, numerics of
transformers' UMT5EncoderModel against a reference written from the spec (MODEL_V1.md §5), tokenisation,
loading and the registry entry."""

from __future__ import annotations

import math
from pathlib import Path

import pytest
import torch
import torch.nn.functional as F
from transformers import ByT5Tokenizer, UMT5EncoderModel

import javisdit.models.wan.umt5  # noqa: F401  (registers Wan2_1_T2V_1_3B_t5_umt5)
from javisdit.errors import MissingWeightsError, WeightsMismatchError
from javisdit.models.wan.umt5 import (
    TIED_KEYS,
    UMT5TextEncoder,
    build_umt5,
    clean_whitespace,
    file_key_to_hf,
    file_to_hf,
    hf_key_to_file,
    hf_to_file,
    umt5_config,
)
from javisdit.registry import MODELS, build_module

CHECKPOINT = "models_t5_umt5-xxl-enc-bf16.pth"
MANIFEST = "umt5_xxl_encoder.tsv"
_HERE = Path(__file__).resolve()
# the tests' copy of the manifests, else the spec's (../shared/spec/manifests beside the repository)
MANIFEST_PLACES = (_HERE.parents[2] / "data" / "manifests", _HERE.parents[4] / "shared" / "spec" / "manifests")


def read_manifest() -> dict[str, tuple[tuple[int, ...], int]]:
    """key -> (shape, numel) of models_t5_umt5-xxl-enc-bf16.pth."""
    path = next((folder / MANIFEST for folder in MANIFEST_PLACES if (folder / MANIFEST).is_file()), None)
    if path is None:
        pytest.fail(f"{MANIFEST} is in none of {', '.join(map(str, MANIFEST_PLACES))}")
    entries = {}
    for line in path.read_text().splitlines():
        if line and not line.startswith("#"):
            key, shape, dtype, numel = line.split("\t")[:4]
            assert dtype == "bfloat16"
            entries[key] = (tuple(int(v) for v in shape.strip("[]").split(",")), int(numel))
    return entries


# ----- a reference written from the spec, in the .pth file's key names -----------------------------------

MAX_DISTANCE, EPS = 128, 1e-6


def relative_bucket(rel: int, num_buckets: int) -> int:
    """Bidirectional T5 bucket of ``rel`` = key position - query position: half the buckets per direction
    (the upper half for keys to the right); below half of a half exact, above it logarithmic up to 128."""
    half = num_buckets // 2
    exact = half // 2
    base, n = (half if rel > 0 else 0), abs(rel)
    if n < exact:
        return base + n
    return base + min(half - 1, exact + int(math.log(n / exact) / math.log(MAX_DISTANCE / exact) * (half - exact)))


def reference_encode(state: dict[str, torch.Tensor], ids: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    """The umT5 encoder of MODEL_V1.md §5 on a state dict with the file's keys: pre-norm T5 RMSNorm (fp32
    statistics), unscaled attention with a per-layer relative bias and a dtype-min key-padding mask, softmax
    in fp32, gated GELU-tanh FFN ``fc2(fc1(x) * gelu(gate(x)))``, final norm. ids, mask: [B, L] -> [B, L, C]."""

    def rms_norm(x, weight):
        x32 = x.float()
        return weight * (x32 * torch.rsqrt(x32.pow(2).mean(-1, keepdim=True) + EPS)).to(weight.dtype)

    B, L = ids.shape
    x = state["token_embedding.weight"][ids]
    num_layers = len({key.split(".")[1] for key in state if key.startswith("blocks.")})
    num_buckets = state["blocks.0.pos_embedding.embedding.weight"].shape[0]
    buckets = torch.tensor([[relative_bucket(k - q, num_buckets) for k in range(L)] for q in range(L)])
    padding = torch.zeros(B, 1, 1, L, dtype=x.dtype).masked_fill(mask[:, None, None, :] == 0, torch.finfo(x.dtype).min)
    for i in range(num_layers):
        def w(name, i=i):
            return state[f"blocks.{i}.{name}.weight"]

        table = w("pos_embedding.embedding")  # [buckets, heads]
        heads = table.shape[1]
        h = rms_norm(x, w("norm1"))
        q, k, v = (F.linear(h, w(f"attn.{n}")).view(B, L, heads, -1).transpose(1, 2) for n in "qkv")
        scores = q @ k.transpose(-1, -2) + (table[buckets].permute(2, 0, 1)[None] + padding)  # no 1/sqrt(d)
        attn = scores.float().softmax(-1).to(q.dtype) @ v  # [B, heads, L, D]
        x = x + F.linear(attn.transpose(1, 2).reshape(B, L, -1), w("attn.o"))
        h = rms_norm(x, w("norm2"))
        g = F.linear(h, w("ffn.gate.0"))
        gelu = 0.5 * g * (1.0 + torch.tanh(math.sqrt(2.0 / math.pi) * (g + 0.044715 * torch.pow(g, 3.0))))
        x = x + F.linear(F.linear(h, w("ffn.fc1")) * gelu, w("ffn.fc2"))
    return rms_norm(x, state["norm.weight"])


def file_layout(vocab: int, dim: int, heads: int, head_dim: int, ffn: int, layers: int, buckets: int):
    """The .pth file's keys and shapes for the given sizes, written from the manifest's pattern."""
    shapes = {"token_embedding.weight": (vocab, dim)}
    for i in range(layers):
        p = f"blocks.{i}."
        shapes.update({p + "norm1.weight": (dim,), p + "attn.q.weight": (heads * head_dim, dim),
                       p + "attn.k.weight": (heads * head_dim, dim), p + "attn.v.weight": (heads * head_dim, dim),
                       p + "attn.o.weight": (dim, heads * head_dim), p + "norm2.weight": (dim,),
                       p + "ffn.gate.0.weight": (ffn, dim), p + "ffn.fc1.weight": (ffn, dim),
                       p + "ffn.fc2.weight": (dim, ffn), p + "pos_embedding.embedding.weight": (buckets, heads)})
    shapes["norm.weight"] = (dim,)
    return shapes


TINY = dict(vocab=384, dim=32, heads=4, head_dim=8, ffn=64, layers=2, buckets=32)  # = the "tiny" preset
TEXTS = ["a dog barks at a passing train", "rain"]  # 30 and 4 bytes: padding, and distances past 8 (log buckets)
TEXT_LEN = 40


def random_file_state(seed: int) -> dict[str, torch.Tensor]:
    g = torch.Generator().manual_seed(seed)
    state = {}
    for key, shape in file_layout(**TINY).items():
        if key.endswith(("norm1.weight", "norm2.weight")) or key == "norm.weight":
            state[key] = 1.0 + 0.2 * torch.randn(shape, generator=g)  # not ones: the norms' weights must count
        elif key.startswith("token_embedding") or "pos_embedding" in key:
            state[key] = torch.randn(shape, generator=g)
        else:
            state[key] = torch.randn(shape, generator=g) * shape[1] ** -0.5
    return state


def tokens(texts=TEXTS, text_len=TEXT_LEN):
    out = ByT5Tokenizer()(texts, padding="max_length", truncation=True, max_length=text_len, return_tensors="pt")
    assert out.attention_mask.sum(1).tolist() == [len(t.encode()) + 1 for t in texts]  # a padded batch
    return out.input_ids, out.attention_mask


def load_into_transformers(file_state: dict[str, torch.Tensor]) -> UMT5EncoderModel:
    dtype = file_state["norm.weight"].dtype
    model = UMT5EncoderModel(umt5_config("tiny")).to(dtype).eval()
    result = model.load_state_dict(file_to_hf(file_state), strict=False)
    assert result.missing_keys == list(TIED_KEYS) and not result.unexpected_keys  # only the tied alias
    assert model.encoder.embed_tokens.weight is model.shared.weight
    return model


# ----- the key map on the real size -----------------------------------------------------------------------


def test_real_size_matches_the_published_file():
    manifest = read_manifest()
    assert len(manifest) == 242 and sum(n for _, n in manifest.values()) == 5_680_910_336
    with torch.device("meta"):
        encoder = UMT5TextEncoder("umt5-xxl", tokenizer=ByT5Tokenizer())
    own = encoder.model.state_dict()
    mapped = hf_to_file(own)
    assert {k: tuple(v.shape) for k, v in mapped.items()} == {k: shape for k, (shape, _) in manifest.items()}
    assert sum(v.numel() for v in mapped.values()) == 5_680_910_336
    assert sum(p.numel() for p in encoder.parameters()) == 5_680_910_336  # the tied embedding counted once
    for key in manifest:  # every key both ways
        assert file_key_to_hf(key) in own and hf_key_to_file(file_key_to_hf(key)) == key
    assert set(file_to_hf(manifest)) | set(TIED_KEYS) == set(own)
    assert hf_key_to_file("encoder.embed_tokens.weight") == "token_embedding.weight"
    assert encoder.output_dim == 4096 and encoder.model_max_length == encoder.text_len == 512
    assert file_layout(vocab=256384, dim=4096, heads=64, head_dim=64, ffn=10240, layers=24, buckets=32) == {
        k: shape for k, (shape, _) in manifest.items()}  # the tiny tests' layout is the file's


def test_unknown_keys_are_named():
    with pytest.raises(WeightsMismatchError, match=r"unknown umT5 checkpoint key: blocks\.0\.attn\.x\.weight"):
        file_key_to_hf("blocks.0.attn.x.weight")
    with pytest.raises(WeightsMismatchError, match="unknown UMT5EncoderModel key: lm_head.weight"):
        hf_key_to_file("lm_head.weight")
    with pytest.raises(WeightsMismatchError, match="2 unknown umT5 checkpoint keys: head.weight, blocks.1.ffn.gate.1"):
        file_to_hf({"norm.weight": 0, "head.weight": 0, "blocks.1.ffn.gate.1": 0})
    with pytest.raises(WeightsMismatchError, match="1 unknown UMT5EncoderModel keys: decoder.block.0.x"):
        hf_to_file({"shared.weight": 0, "decoder.block.0.x": 0})


# ----- numerics: transformers == the spec's math, both ways -----------------------------------------------


def test_file_weights_in_transformers_match_the_reference():
    state = random_file_state(0)
    ids, mask = tokens()
    with torch.no_grad():
        out = load_into_transformers(state)(input_ids=ids, attention_mask=mask).last_hidden_state
        ref = reference_encode(state, ids, mask)
    assert out.shape == (2, TEXT_LEN, 32)
    assert (out - ref).abs().max().item() <= 1e-5
    # the reference can tell a wrong map: gate and fc1 swapped, or q and k swapped
    for a, b in (("ffn.gate.0", "ffn.fc1"), ("attn.q", "attn.k")):
        wrong = dict(state)
        for i in range(TINY["layers"]):
            wrong[f"blocks.{i}.{a}.weight"], wrong[f"blocks.{i}.{b}.weight"] = (state[f"blocks.{i}.{b}.weight"],
                                                                                state[f"blocks.{i}.{a}.weight"])
        assert (reference_encode(wrong, ids, mask) - out).abs().max().item() > 1e-2


def test_transformers_weights_in_the_file_layout_match_the_reference():
    torch.manual_seed(1)
    model = UMT5EncoderModel(umt5_config("tiny")).eval()
    with torch.no_grad():
        for name, param in model.named_parameters():
            if name.endswith("layer_norm.weight"):
                param.add_(0.2 * torch.randn_like(param))  # transformers initialises them to ones
    ids, mask = tokens()
    with torch.no_grad():
        out = model(input_ids=ids, attention_mask=mask).last_hidden_state
        ref = reference_encode(hf_to_file(model.state_dict()), ids, mask)
    assert (out - ref).abs().max().item() <= 1e-5
    # a padded key changes nothing: the same prompt alone, without padding, gives the same real rows
    with torch.no_grad():
        alone = model(input_ids=ids[1:, :5], attention_mask=mask[1:, :5]).last_hidden_state
    assert (alone[0] - out[1, :5]).abs().max().item() <= 1e-5


def test_bf16_matches_the_reference_in_bf16():
    """All tensors bf16 (no fp32 ``wo``): transformers does the spec's bf16 operations in the same order
    (norm output cast before the weight, bf16 bias sum, fp32 softmax cast back, GELU-tanh formula), so on
    the CPU the result is bit for bit the reference's."""
    state = {k: v.bfloat16() for k, v in random_file_state(2).items()}
    model = load_into_transformers(state)
    assert {p.dtype for p in model.parameters()} == {torch.bfloat16}
    ids, mask = tokens()
    with torch.no_grad():
        out = model(input_ids=ids, attention_mask=mask).last_hidden_state
        ref = reference_encode(state, ids, mask)
    assert out.dtype == torch.bfloat16
    assert torch.equal(out, ref)


# ----- tokenisation --------------------------------------------------------------------------------------


@pytest.mark.parametrize("raw, cleaned", [("a  &amp;amp; b\n", "a & b"), ("  Hello\t\tWorld  ", "Hello World"),
                                          ("schÃ¶n", "schön"), ("A dog. 狗", "A dog. 狗")])
def test_cleaning(raw, cleaned):
    assert clean_whitespace(raw) == cleaned


def test_encode_pads_truncates_and_masks():
    torch.manual_seed(0)
    encoder = build_umt5(preset="tiny", text_len=16)
    out = encoder.encode(["a  &amp;amp; b\n", "x" * 50])
    assert out["y"].shape == (2, 16, 32) and out["y"].dtype == torch.float32
    assert out["mask"].dtype == torch.int64 and out["mask"].sum(1).tolist() == [6, 16]  # "a & b" + EOS; truncated
    ids = encoder.tokenizer(["a & b", "x" * 50], padding="max_length", truncation=True, max_length=16).input_ids
    assert ids[0][:6] == [v + 3 for v in b"a & b"] + [1] and ids[0][6:] == [0] * 10  # byte ids, EOS, padding
    assert ids[1][-1] == 1  # EOS kept at the end of a truncated prompt
    assert out["y"][0, 6:].abs().sum() > 0  # padded rows are not zeroed here
    assert torch.equal(encoder.encode("a & b")["y"][0], out["y"][0])  # cleaning applied; one string = one prompt
    assert encoder.model_max_length == 16 and encoder.output_dim == 32
    assert not any(p.requires_grad for p in encoder.parameters())
    assert not encoder.train().model.training  # frozen
    with pytest.raises(ValueError, match="no prompts given"):
        encoder.encode([])


# ----- loading -------------------------------------------------------------------------------------------


@pytest.fixture
def wan_folder(tmp_path):
    """A tiny umT5 in the layout of Wan-AI/Wan2.1-T2V-1.3B: the .pth in the file's names + google/umt5-xxl/."""

    def write(state=None, folder=tmp_path):
        torch.manual_seed(3)
        source = build_umt5(preset="tiny", text_len=24)
        torch.save(hf_to_file(source.model.state_dict()) if state is None else state, folder / CHECKPOINT)
        source.tokenizer.save_pretrained(folder / "google" / "umt5-xxl")
        return folder, source

    return write


def test_loads_the_file_layout(wan_folder, monkeypatch):
    from javisdit.models import loading

    folder, source = wan_folder()
    reads = []
    monkeypatch.setattr(loading, "read_state_dict", lambda *a, **k: pytest.fail("read the whole file"))
    monkeypatch.setattr(loading.StoredTensor, "load", lambda self, *a, _load=loading.StoredTensor.load:
                        reads.append(self.key) or _load(self, *a))
    loaded = build_umt5(from_pretrained=str(folder), preset="tiny", text_len=24)
    assert sorted(reads) == sorted(hf_to_file(source.model.state_dict()))  # one tensor at a time, each once
    assert not any(p.is_meta or p.requires_grad for p in loaded.parameters())
    assert loaded.model.encoder.embed_tokens.weight is loaded.model.shared.weight
    assert {p.dtype for p in loaded.parameters()} == {torch.float32}  # the tiny preset's default
    prompts = ["a dog barks", "rain on a tin roof, then thunder"]
    want, got = source.encode(prompts), loaded.encode(prompts)
    assert torch.equal(got["y"], want["y"]) and torch.equal(got["mask"], want["mask"])


def test_loads_in_bf16_with_every_tensor_bf16(wan_folder):
    folder, source = wan_folder()
    loaded = build_umt5(from_pretrained=folder, preset="tiny", text_len=24, dtype="bf16")
    assert {p.dtype for p in loaded.parameters()} == {torch.bfloat16}
    assert loaded.model.encoder.block[0].layer[1].DenseReluDense.wo.weight.dtype == torch.bfloat16  # not kept fp32
    y = loaded.encode(["a dog barks"])["y"]
    assert y.dtype == torch.bfloat16
    assert (y.float() - source.encode(["a dog barks"])["y"]).abs().max() < 0.1


def test_missing_weights_say_what_to_download(tmp_path, wan_folder):
    with pytest.raises(MissingWeightsError) as err:
        build_umt5(from_pretrained=str(tmp_path / "Wan2.1-T2V-1.3B"), preset="tiny")
    message = str(err.value)
    assert "\n" not in message and CHECKPOINT in message and "Wan-AI/Wan2.1-T2V-1.3B" in message
    assert "google/umt5-xxl" in message and str(tmp_path / "Wan2.1-T2V-1.3B") in message
    folder, _ = wan_folder()
    (folder / CHECKPOINT).unlink()
    with pytest.raises(MissingWeightsError, match=f"{CHECKPOINT} not found; download them with `huggingface-cli"):
        build_umt5(from_pretrained=folder, preset="tiny")


def test_extra_renamed_and_misshaped_keys_are_named(wan_folder):
    folder, source = wan_folder()
    state = hf_to_file(source.model.state_dict())
    cases = {
        "1 unexpected: blocks.0.attn.extra.weight": {**state, "blocks.0.attn.extra.weight": torch.zeros(2)},
        "1 missing: norm.weight; 1 unexpected: final_norm.weight":
            {("final_norm.weight" if k == "norm.weight" else k): v for k, v in state.items()},
        r"1 mis-shaped: blocks.1.norm2.weight \[31\] vs \[32\]": {**state, "blocks.1.norm2.weight": torch.ones(31)},
    }
    for expected, broken in cases.items():
        torch.save(broken, folder / CHECKPOINT)
        with pytest.raises(WeightsMismatchError, match=f"does not fit the umT5 encoder: {expected}$") as err:
            build_umt5(from_pretrained=folder, preset="tiny")
        assert "\n" not in str(err.value)


# ----- registry ------------------------------------------------------------------------------------------


def test_registered_builder():
    encoder = build_module(dict(type="Wan2_1_T2V_1_3B_t5_umt5", from_pretrained=None, preset="tiny"), MODELS)
    assert isinstance(encoder, UMT5TextEncoder) and encoder.model_max_length == 512
    out = encoder.encode(["a cat"])
    assert out["y"].shape == (1, 512, 32) and out["mask"].sum().item() == 6
    bf16 = build_module(dict(type="Wan2_1_T2V_1_3B_t5_umt5", from_pretrained=None, preset="tiny", dtype="bf16",
                             text_len=8), MODELS)
    assert {p.dtype for p in bf16.parameters()} == {torch.bfloat16} and bf16.encode(["x"])["y"].shape == (1, 8, 32)
    with pytest.raises(ValueError, match="unknown umT5 preset 'huge'; valid: umt5-xxl, tiny"):
        build_umt5(preset="huge")
