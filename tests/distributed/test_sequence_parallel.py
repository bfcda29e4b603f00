"""Sequence parallelism (``javisdit.distributed.sequence_parallel``): the collectives on two gloo processes
with known values, the 2-process VASTDiT3 forward and gradients against the 1-process ones, and
``--sp-size`` end to end in inference and training."""

from __future__ import annotations

import os
import socket
import subprocess
import sys

import av
import numpy as np
import pytest
import torch
import torch.distributed as dist
import torch.multiprocessing as mp

from conftest import REPO, TINY_VA, randomise_sync_modules
from javisdit import cli

TINY = str(REPO / "configs" / "tiny" / "inference.py")
TINY_V1 = str(REPO / "configs" / "tiny" / "inference_v1.py")
SMALL = ["--image-size", "32", "48", "--num-frames", "9", "--verbose", "0"]


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


# ----- what the two processes compute ---------------------------------------------------------------------------


def _collectives(rank: int) -> dict:
    from javisdit.distributed.sequence_parallel import SequenceParallel, new_groups

    sp = SequenceParallel.of()
    out = dict(rank=sp.rank, size=sp.size)
    x = torch.arange(24.0).view(2, 4, 3) + 100 * rank
    out["all_to_all"] = sp.all_to_all(x, scatter_dim=1, gather_dim=0)  # [4, 2, 3]
    out["all_to_all_back"] = sp.all_to_all(out["all_to_all"], scatter_dim=0, gather_dim=1)
    out["bytes_after_all_to_all"] = sp.bytes_sent
    out["all_gather"] = sp.all_gather(x[:, :1], dim=2)  # [2, 1, 6]
    out["bytes_after_all_gather"] = sp.bytes_sent
    shard = sp.shard(3)  # 3 frames of 2 tokens: rank 0 holds frames 0, 1; rank 1 frame 2 and a padding frame
    tokens = torch.arange(6.0).view(1, 6, 1)
    out["split"] = shard.split(tokens)
    out["split_mask"] = shard.split(torch.tensor([[False, True, True]]), fill=True)
    out["gathered"] = shard.gather(out["split"] * 10)
    out["key_mask"] = shard.key_mask(torch.device("cpu"))
    out["flag"] = sp.broadcast_flag(rank == 0)
    pairs = new_groups(1)
    out["groups_of_one"] = (pairs.rank, pairs.size)
    both = new_groups(2)
    out["group_of_two"] = (both.rank, both.size, both.broadcast_flag(rank == 1))
    try:
        new_groups(3)
    except ValueError as err:
        out["bad_size"] = str(err)
    return out


def _inputs(B: int, T: int, short_caption: bool = False, H: int = 9, W: int = 11, Ta: int = 8, L: int = 8) -> dict:
    g = torch.Generator().manual_seed(T * 10 + B)
    mask = torch.ones(B, L, dtype=torch.long)
    if short_caption:
        mask[0, L // 2:] = 0
    return dict(
        x={"video": torch.randn(B, 4, T, H, W, generator=g), "audio": torch.randn(B, 8, Ta, 16, generator=g)},
        timestep=torch.linspace(900.0, 100.0, B), y=torch.randn(B, 1, L, 32, generator=g), mask=mask,
        fps=torch.full((B,), 24.0), height=torch.full((B,), float(H * 8)), width=torch.full((B,), float(W * 8)),
        spatial_prior=torch.randn(B, 32, 128, generator=g), temporal_prior=torch.randn(B, 32, 128, generator=g),
    )


def _conditioned(B: int, T: int) -> dict:
    inputs = _inputs(B, T)
    x_mask = torch.ones(B, T, dtype=torch.bool)
    x_mask[:, 0] = False  # clean frames on rank 0 (frames 0-2) and, for sample 1, on rank 1 (3, 4 and a pad)
    x_mask[1:, 3] = False
    ax_mask = torch.ones(B, 8, dtype=torch.bool)
    ax_mask[:, :4] = False
    return dict(inputs, x_mask=x_mask, ax_mask=ax_mask)


#: case -> (model kwargs, inputs)
CASES = {
    "plain": ({}, lambda: _inputs(B=1, T=4)),
    "odd_frames": ({}, lambda: _inputs(B=1, T=5)),
    "x_mask": ({}, lambda: _conditioned(B=2, T=5)),
    "batch_2_short_caption": ({}, lambda: _inputs(B=2, T=6, short_caption=True)),
    "heads_not_divisible": (dict(hidden_size=48, num_heads=3), lambda: _inputs(B=1, T=5)),
    "va_time_rope_and_window_odd_frames": (dict(va_cross_time_rope=True, va_cross_time_window=1.0),
                                           lambda: _inputs(B=1, T=5)),
}


def _model(**kwargs):
    from javisdit.registry import MODELS, build_module

    torch.manual_seed(0)
    return _acting(build_module(dict(TINY_VA, **kwargs), MODELS).eval())


def _acting(model):
    """``model`` with weights in every zero-initialised layer, so that each block acts (above all the
    temporal attention, whose output projection starts at zero)."""
    randomise_sync_modules(model)
    g = torch.Generator().manual_seed(2)
    with torch.no_grad():
        for p in model.parameters():
            if p.requires_grad and not p.any():
                p.copy_(torch.randn(p.shape, generator=g) * 0.1)
    return model


def _forwards(rank: int) -> dict:
    from javisdit.distributed.sequence_parallel import SequenceParallel, enable_sequence_parallel

    sp = SequenceParallel.of()
    out = {}
    for name, (kwargs, make) in CASES.items():
        model, inputs = _model(**kwargs), make()
        with torch.no_grad():
            reference = model(**inputs)
            enable_sequence_parallel(model, sp)
            before = sp.bytes_sent
            parallel = model(**inputs)
        out[name] = dict(reference=reference, parallel=parallel, bytes=sp.bytes_sent - before,
                         config=dict(depth=model.config.depth, hidden=model.config.hidden_size,
                                     heads=model.config.num_heads))
    return out


#: cases whose gradients are compared (padding, masks, heads not divisible by P, the time window; and
#: training mode with gradient checkpointing, whose backward runs the blocks' collectives again)
GRAD_CASES = ("odd_frames", "x_mask", "heads_not_divisible", "va_time_rope_and_window_odd_frames",
              "x_mask_checkpointed")


def _weighted_loss(out: dict) -> torch.Tensor:
    """A loss whose gradient differs from token to token (the same weights on every rank)."""
    g = torch.Generator().manual_seed(5)
    return sum((out[k] * torch.randn(out[k].shape, generator=g)).sum() for k in ("video", "audio"))


def _gradients(rank: int) -> dict:
    """Per case: the parameter gradients of one process, and the 2-process SP ones averaged over the group as
    data-parallel training averages them (every rank computes the full loss from the gathered output)."""
    from javisdit.distributed.sequence_parallel import SequenceParallel, enable_sequence_parallel

    sp = SequenceParallel.of()
    out = {}
    for name in GRAD_CASES:
        base = name.removesuffix("_checkpointed")
        kwargs, make = CASES[base]
        model, inputs = _model(**kwargs), make()  # eval: no caption drop, no dropout
        if name != base:
            model.train()
            model.grad_checkpointing = True
            B = inputs["x"]["audio"].shape[0]  # no caption drops: the same forward in both runs
            inputs["condition_drop"] = {k: torch.zeros(B, dtype=torch.bool)
                                        for k in ("y_embedder", "audio_y_embedder", "st_prior_embedder")}
        _weighted_loss(model(**inputs)).backward()
        reference = {k: p.grad.clone() for k, p in model.named_parameters() if p.grad is not None}
        model.zero_grad(set_to_none=True)
        enable_sequence_parallel(model, sp)
        before = sp.bytes_sent
        loss = _weighted_loss(model(**inputs))
        forward_bytes = sp.bytes_sent - before
        loss.backward()
        local = {k: p.grad.clone() for k, p in model.named_parameters() if p.grad is not None}
        averaged = torch.cat([g.flatten() for g in local.values()])
        dist.all_reduce(averaged)
        averaged /= sp.size
        # flat numpy arrays: many small tensors through the Manager's file-descriptor sharing can crash it
        out[name] = dict(names=list(reference), sizes=[g.numel() for g in reference.values()],
                         averaged_names=list(local), reference=_flat(reference), averaged=averaged.numpy(),
                         x_embedder=local["x_embedder.proj.weight"].numpy(), loss=loss.item(),
                         forward_bytes=forward_bytes, backward_bytes=sp.bytes_sent - before - forward_bytes)
    return out


def _flat(grads: dict[str, torch.Tensor]):
    return torch.cat([g.flatten() for g in grads.values()]).numpy()


def _worker(rank: int, port: int, out: dict) -> None:
    torch.set_num_threads(1)
    dist.init_process_group("gloo", init_method=f"tcp://127.0.0.1:{port}", rank=rank, world_size=2)
    try:
        out[rank] = dict(collectives=_collectives(rank), forward=_forwards(rank), gradients=_gradients(rank))
    finally:
        dist.destroy_process_group()


@pytest.fixture(scope="module")
def two_ranks() -> dict:
    """What each of two gloo processes computed: {rank: {"collectives": ..., "forward": ...}}."""
    with mp.Manager() as manager:
        out = manager.dict()
        mp.spawn(_worker, args=(_free_port(), out), nprocs=2)
        return dict(out)


# ----- the collectives --------------------------------------------------------------------------------------------


@pytest.mark.dist
def test_all_to_all_and_all_gather_on_two_ranks(two_ranks):
    x = {r: torch.arange(24.0).view(2, 4, 3) + 100 * r for r in (0, 1)}
    for r in (0, 1):
        got = two_ranks[r]["collectives"]
        assert (got["rank"], got["size"]) == (r, 2)
        # rank r keeps its half of dim 1 from both ranks, rank 0's rows first
        expected = torch.cat([x[0][:, 2 * r : 2 * r + 2], x[1][:, 2 * r : 2 * r + 2]], dim=0)
        assert torch.equal(got["all_to_all"], expected)
        assert torch.equal(got["all_to_all_back"], x[r])
        assert torch.equal(got["all_gather"], torch.cat([x[0][:, :1], x[1][:, :1]], dim=2))
        # half of the 96-byte input leaves the rank, twice; then the 24-byte shard once
        assert got["bytes_after_all_to_all"] == 96 and got["bytes_after_all_gather"] == 96 + 24


@pytest.mark.dist
def test_frames_split_padded_and_gathered(two_ranks):
    zero, one = two_ranks[0]["collectives"], two_ranks[1]["collectives"]
    assert zero["split"].flatten().tolist() == [0, 1, 2, 3]
    assert one["split"].flatten().tolist() == [4, 5, 0, 0]  # frame 2, then a zero padding frame
    assert zero["split_mask"].tolist() == [[False, True]] and one["split_mask"].tolist() == [[True, True]]
    for got in (zero, one):
        assert got["gathered"].flatten().tolist() == [0, 10, 20, 30, 40, 50]  # padding dropped
        assert got["key_mask"].flatten().tolist() == [True, True, True, False]
        assert got["flag"] is True  # rank 0's


@pytest.mark.dist
def test_groups_of_consecutive_ranks(two_ranks):
    for r in (0, 1):
        got = two_ranks[r]["collectives"]
        assert got["groups_of_one"] == (0, 1)
        assert got["group_of_two"] == (r, 2, False)
        assert got["bad_size"] == "sequence-parallel size 3 does not divide the 2 processes"


# ----- the model ----------------------------------------------------------------------------------------------


@pytest.mark.dist
@pytest.mark.parametrize("case", list(CASES))
def test_two_process_forward_equals_one_process(two_ranks, case):
    results = [two_ranks[r]["forward"][case] for r in (0, 1)]
    reference = results[0]["reference"]
    for got in results:
        assert torch.equal(got["reference"]["video"], reference["video"])  # the same model on both ranks
        assert got["parallel"]["video"].shape == reference["video"].shape
        for key in ("video", "audio"):
            torch.testing.assert_close(got["parallel"][key], reference[key], rtol=1e-5, atol=1e-5)
    for key in ("video", "audio"):  # both ranks return the same full outputs
        assert torch.equal(results[0]["parallel"][key], results[1]["parallel"][key])


@pytest.mark.dist
def test_communication_volume_is_counted(two_ranks):
    got = two_ranks[0]["forward"]["plain"]
    cfg = got["config"]
    B, T, S, C = 1, 4, 5 * 6, cfg["hidden"]  # 9x11 latent -> 5x6 patches
    tl, f32 = T // 2, 4
    # per depth: temporal attention's all-to-all of q, k, v and back (half of each leaves the rank), then
    # the all-gather of the video keys and values of the video-audio block (C/2 channels each)
    temporal = (3 + 1) * B * S * tl * C * f32 // 2
    va = 2 * B * tl * S * (C // 2) * f32
    final = B * tl * S * (2 * 2 * 8) * f32  # the final layer's tokens: 2x2 patches of 8 channels
    assert got["bytes"] == cfg["depth"] * (temporal + va) + final
    assert two_ranks[1]["forward"]["plain"]["bytes"] == got["bytes"]


# ----- training: the backward ----------------------------------------------------------------------------


@pytest.mark.dist
@pytest.mark.parametrize("case", GRAD_CASES)
def test_two_process_gradients_average_to_the_one_process_gradient(two_ranks, case):
    zero, one = two_ranks[0]["gradients"][case], two_ranks[1]["gradients"][case]
    assert zero["names"] == zero["averaged_names"] == one["averaged_names"]
    assert len(zero["names"]) > 100  # every block's weights get a gradient
    assert zero["loss"] == one["loss"]  # both ranks compute the full loss from the gathered output
    assert np.array_equal(zero["averaged"], one["averaged"])
    offsets = np.cumsum([0, *zero["sizes"]])
    for name, start, end in zip(zero["names"], offsets[:-1], offsets[1:]):
        grad, averaged = zero["reference"][start:end], zero["averaged"][start:end]
        # within 1e-5 of each tensor's largest entry (elementwise tolerances would trip over the key biases,
        # whose true gradient is 0: softmax ignores a shift shared by all keys, so theirs is rounding noise)
        error = np.abs(averaged - grad).max()
        assert error <= 1e-5 * np.abs(grad).max(), (name, error)
    # the ranks' own gradients differ where the video tokens are sharded (each holds its frames' share) ...
    assert not np.allclose(zero["x_embedder"], one["x_embedder"])
    # ... and the backward sends what the forward sent: the reverse all-to-all as much as the all-to-all,
    # the reduce-scatter of a gathered gradient (P-1)/P of P shards, as the all-gather's P-1 copies of one;
    # with checkpointing it also recomputes the blocks' collectives (all but the final gather)
    forward, backward = zero["forward_bytes"], zero["backward_bytes"]
    if case.endswith("_checkpointed"):
        assert forward < backward < 2 * forward
    else:
        assert backward == forward > 0


# ----- inference --------------------------------------------------------------------------------------------


def _frames(path) -> np.ndarray:
    with av.open(str(path)) as container:
        return np.stack([f.to_ndarray(format="rgb24") for f in container.decode(video=0)])


@pytest.mark.dist
def test_torchrun_sp_size_2_writes_what_one_process_writes(tmp_path):
    from mmengine.config import Config

    from javisdit.models.loading import save_pretrained
    from javisdit.models.stdit.config import config_dict
    from javisdit.registry import MODELS, build_module

    # the tiny config's model with weights that make every block act (its own init zeroes some outputs)
    spec = {k: v for k, v in Config.fromfile(TINY).model.items() if k != "from_pretrained"}
    torch.manual_seed(0)
    model = _acting(build_module(spec, MODELS, in_channels=4))
    save_pretrained(model, tmp_path / "weights", config=config_dict(model.config))
    # 9 frames are 3 latent frames: 2 on rank 0, 1 and a padding frame on rank 1
    common = [*SMALL, "--prompt", "a dog barks", "rain falls", "--seed", "3", "--model-path", str(tmp_path / "weights")]
    env = {**os.environ, "PYTHONPATH": str(REPO), "OMP_NUM_THREADS": "1"}
    script = str(REPO / "scripts" / "inference.py")
    runs = {"one": [sys.executable, script, TINY, *common],
            "sp": [sys.executable, "-m", "torch.distributed.run", "--nproc_per_node", "2", "--master_port",
                   str(_free_port()), script, TINY, *common, "--sp-size", "2"]}
    for name, command in runs.items():
        result = subprocess.run([*command, "--save-dir", str(tmp_path / name)], env=env, capture_output=True,
                                text=True, timeout=300)
        assert result.returncode == 0, result.stderr[-2000:]
    names = sorted(p.name for p in (tmp_path / "one").iterdir())
    assert names == sorted(p.name for p in (tmp_path / "sp").iterdir()) == ["sample_0000.mp4", "sample_0001.mp4"]
    for name in names:
        a, b = _frames(tmp_path / "one" / name).astype(int), _frames(tmp_path / "sp" / name).astype(int)
        assert a.shape == b.shape == (9, 32, 48, 3)
        # x264's assembly kernels vary from run to run on some CPUs (``write_mp4``): the same frames decode up
        # to ~0.2 levels apart on average here; temporal attention without its padding mask gives ~4
        assert np.abs(a - b).mean() < 1.0


@pytest.mark.parametrize(
    "argv, message",
    [
        ([TINY, *SMALL, "--sp-size", "2"], "error: --sp-size 2 must divide the number of processes (1)"),
        ([TINY_V1, "--sp-size", "2"], "error: --sp-size 2: sequence parallelism shards the video frames of a "
                                      "VASTDiT3; model Wan2_1_T2V_1_3B cannot use it"),
        ([TINY, *SMALL, "--sp-size", "2", "--cfg-options", "audio_only=True"],
         "error: --sp-size 2: sequence parallelism shards the video frames of a VASTDiT3; audio-only generation "
         "cannot use it"),
        ([TINY, *SMALL, "--sp-size", "2", "--compile"], "error: --sp-size 2 cannot be combined with --compile"),
    ],
)
def test_sp_size_errors_are_one_line(tmp_path, capsys, argv, message):
    assert cli.main("inference", [*argv, "--prompt", "x", "--save-dir", str(tmp_path / "out")]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert err[-1] == message
    assert not (tmp_path / "out").exists() or list((tmp_path / "out").iterdir()) == []


@pytest.mark.dist
@pytest.mark.parametrize("backward", [False, True])
def test_benchmark_tiny_mode(run_script, backward):
    result = run_script("benchmarks/sequence_parallel.py", "--tiny", *(["--backward"] if backward else []),
                        timeout=120)
    assert result.returncode == 0, result.stderr[-2000:]
    assert ("| fwd+bwd s |" in result.stdout) is backward and ("grad norm rel diff" in result.stdout) is backward
    rows = [line for line in result.stdout.splitlines() if line.startswith("| ") and line[2].isdigit()]
    assert [row.split("|")[1].strip() for row in rows] == ["1", "2"]
    cells = rows[1].split("|")
    assert float(cells[-2]) < 1e-4  # max |difference| from the 1-process output, or of the gradient norm
    assert float(cells[-3].replace(",", "")) > 0  # MB sent per rank


# ----- training ---------------------------------------------------------------------------------------------

STAGE3 = str(REPO / "configs" / "tiny" / "stage3_jav.py")


def _metrics(outputs) -> list[dict]:
    (run,) = [p for p in outputs.iterdir() if p.is_dir()]
    import json

    return [json.loads(line) for line in (run / "metrics.jsonl").read_text().splitlines()]


@pytest.mark.dist
@pytest.mark.slow
def test_torchrun_training_with_sp_size_2_follows_the_run_without(synthetic_data, tmp_path):
    """Stage 3 (tiny, fp32, DDP on gloo; 17 frames are 5 latent frames: 3 on one rank, 2 and a padding frame
    on the other): 2 processes with --sp-size 2 train as 1 process does, and 4 processes (2 groups of 2) as
    2 plain data-parallel ones; a run resumed from a checkpoint repeats the uninterrupted one."""
    import pandas as pd

    table = pd.read_csv(synthetic_data["stage3_jav"])
    base = synthetic_data["stage3_jav"].parent
    for column in [c for c in table.columns if c == "path" or c.endswith("_path")]:
        table[column] = [str(base / p) for p in table[column]]
    data = {2: tmp_path / "two.csv", 4: tmp_path / "four.csv"}  # one batch of two clips per data-parallel rank
    table.head(2).to_csv(data[2], index=False)
    pd.concat([table, table.head(1)]).to_csv(data[4], index=False)
    common = [STAGE3, "--lr", "1e-3", "--warmup-steps", "1", "--cfg-options", "epochs=3", "ckpt_every=1",
              "model.prior_attn_batch_union=False"]
    env = {**os.environ, "PYTHONPATH": str(REPO), "OMP_NUM_THREADS": "1"}
    script = str(REPO / "scripts" / "train.py")

    def torchrun(n: int) -> list[str]:
        return [sys.executable, "-m", "torch.distributed.run", "--nproc_per_node", str(n), "--master_port",
                str(_free_port()), script]

    runs = {"one": ([sys.executable, script], 2, []), "sp2": (torchrun(2), 2, ["--sp-size", "2"]),
            "dp2": (torchrun(2), 4, []), "dp2_sp2": (torchrun(4), 4, ["--sp-size", "2"]),
            # resumed from the sp2 run's second step
            "sp2_resumed": (torchrun(2), 2, ["--sp-size", "2", "--load", "{sp2}/epoch001-global_step2"])}
    metrics, logs = {}, {}
    for name, (launch, clips, extra) in runs.items():
        extra = [a.format(sp2=next((tmp_path / "sp2").iterdir())) if "{" in a else a for a in extra]
        result = subprocess.run([*launch, *common, *extra, "--data-path", str(data[clips]), "--outputs",
                                 str(tmp_path / name)], env=env, capture_output=True, text=True, timeout=280)
        assert result.returncode == 0, result.stderr[-3000:]
        metrics[name] = _metrics(tmp_path / name)
        logs[name] = next((tmp_path / name).glob("*/log.txt")).read_text()
    assert "2 process(es) on cpu, plugin ddp, sequence-parallel groups of 2" in logs["sp2"]
    assert "4 process(es) on cpu, plugin ddp, sequence-parallel groups of 2" in logs["dp2_sp2"]
    assert "sequence-parallel" not in logs["dp2"]
    for plain, parallel in (("one", "sp2"), ("dp2", "dp2_sp2")):
        a, b = metrics[plain], metrics[parallel]
        assert len(a) == len(b) == 3
        for x, y in zip(a, b):
            assert x["loss"] == pytest.approx(y["loss"], rel=1e-6)
            assert x["loss/video"] == pytest.approx(y["loss/video"], rel=1e-6)
            assert x["grad_norm"] == pytest.approx(y["grad_norm"], rel=1e-5)
    assert [m["loss"] for m in metrics["sp2_resumed"]] == [metrics["sp2"][2]["loss"]]  # resumes exactly
    # the ranks of a group count their batch once: 2 clips a step, 4 with two groups
    for name, clips in (("sp2", 2), ("dp2_sp2", 4)):
        assert all(m["samples_per_s"] / m["steps_per_s"] == pytest.approx(clips) for m in metrics[name])


@pytest.mark.parametrize(
    "argv, message",
    [
        ([STAGE3, "--sp-size", "2"], "error: --sp-size 2 must divide the number of processes (1)"),
        ([str(REPO / "configs" / "tiny" / "stage1_audio.py"), "--sp-size", "2"],
         ("error: --sp-size 2: sequence parallelism shards the video frames of a VASTDiT3; audio-only training "
          "cannot use it")),
    ],
)
def test_training_sp_size_errors_are_one_line(synthetic_data, tmp_path, capsys, argv, message):
    code = cli.main("train", [*argv, "--data-path", str(synthetic_data["stage3_jav"]), "--outputs",
                              str(tmp_path / "runs")])
    assert code == 2
    assert capsys.readouterr().err.strip().splitlines()[-1] == message
    assert not (tmp_path / "runs").exists()
