"""The training seam on CPU: the optimizer choice, ZeRO's flat shards (gathered to rank 0 and scattered
back), the fp32 master weights of a checkpoint, process-group timeouts, and a slow checkpoint write
that must not time the other ranks out."""

from __future__ import annotations

import datetime
import socket
import sys
import time
import types

import pytest
import torch
import torch.distributed as dist
import torch.multiprocessing as mp
from conftest import REPO
from torch import nn

from javisdit.distributed import init_distributed, wait_group
from javisdit.distributed.booster import (
    Accelerator,
    ensure_process_group,
    gather_to_main,
    shard_flat,
    shard_numel,
    unshard_flat,
)
from javisdit.errors import ConfigError, UserError

CPU = torch.device("cpu")


class _ZeroStandIn(Accelerator):
    """ZeRO's bookkeeping without CUDA: each trainable parameter's fp32 master is this rank's flat,
    zero-padded shard of it (``get_working_to_master_map``)."""

    def __init__(self, model: nn.Module, rank: int = 0, world: int = 1):
        super().__init__("zero2", CPU, torch.bfloat16)
        self.masters = {id(p): shard_flat(p.detach().float(), rank, world) for p in model.parameters()
                        if p.requires_grad}

    def master_param(self, optimizer, param):
        return self.masters[id(param)], True


def _model() -> nn.Module:
    torch.manual_seed(0)
    model = nn.Sequential(nn.Linear(3, 5), nn.Linear(5, 2))
    model[0].requires_grad_(False)
    return model


def _params() -> list[nn.Parameter]:
    torch.manual_seed(0)
    return [nn.Parameter(torch.randn(3, 4)), nn.Parameter(torch.randn(5))]


# ----- the optimizer -------------------------------------------------------------------------------------


def test_zero2_trains_with_torch_adamw_without_colossalai_kernels(monkeypatch):
    # ``from colossalai.nn.optimizer import ...`` fails while this entry is None: HybridAdam is not touched
    monkeypatch.setitem(sys.modules, "colossalai.nn.optimizer", None)
    params = _params()
    frozen = nn.Parameter(torch.zeros(2), requires_grad=False)
    optimizer = Accelerator("zero2", CPU, torch.bfloat16).make_optimizer([*params, frozen], lr=1e-4,
                                                                          weight_decay=0.1, eps=1e-15)
    assert type(optimizer) is torch.optim.AdamW
    (group,) = optimizer.param_groups
    assert group["params"] == params  # the frozen one is left out
    assert (group["lr"], group["betas"], group["eps"], group["weight_decay"]) == (1e-4, (0.9, 0.999), 1e-15, 0.1)
    assert group["fused"] is False  # fused on CUDA only


def test_adamw_decays_weights_decoupled_from_the_gradient():
    """AdamW: a weight with zero gradient only decays, ``w · (1 − lr · wd)``; Adam with L2 would move
    it by about ``lr`` (the normalised decay gradient)."""
    w = nn.Parameter(torch.tensor([2.0, 2.0]))
    optimizer = Accelerator("zero2", CPU, torch.bfloat16).make_optimizer([w], lr=0.1, weight_decay=0.5, eps=1e-8)
    w.grad = torch.tensor([0.0, 3.0])
    optimizer.step()
    decayed = 2.0 * (1 - 0.1 * 0.5)
    assert w[0].item() == pytest.approx(decayed, abs=1e-7)
    assert w[1].item() == pytest.approx(decayed - 0.1, abs=1e-6)  # Adam's first step: lr · g / |g|


def test_hybrid_adam_is_an_explicit_choice(monkeypatch):
    made = {}

    class HybridAdam:  # stands in for ColossalAI's, whose constructor compiles CUDA kernels
        def __init__(self, params, **kwargs):
            made.update(kwargs, params=params)

    monkeypatch.setitem(sys.modules, "colossalai.nn.optimizer", types.SimpleNamespace(HybridAdam=HybridAdam))
    params = _params()
    optimizer = Accelerator("zero2", CPU, torch.bfloat16).make_optimizer(params, lr=1e-4, weight_decay=0.1, eps=1e-15,
                                                                          kind="hybrid_adam")
    assert isinstance(optimizer, HybridAdam)
    assert made == dict(params=params, lr=1e-4, betas=(0.9, 0.999), eps=1e-15, weight_decay=0.1, adamw_mode=True)
    # without ZeRO (the CPU fallback) it is torch's AdamW, the same update
    assert type(Accelerator("ddp", CPU, torch.float32).make_optimizer(params, lr=1e-4, kind="hybrid_adam")) is \
        torch.optim.AdamW


def test_unknown_optimizer_names_the_valid_ones():
    with pytest.raises(ConfigError, match=r"unknown optimizer 'sgd'; valid: adamw, hybrid_adam"):
        Accelerator("zero2", CPU, torch.bfloat16).make_optimizer(_params(), lr=1e-4, kind="sgd")


# ----- ZeRO's flat shards --------------------------------------------------------------------------------


@pytest.mark.parametrize("world", [1, 2, 3, 8])
def test_shards_round_trip_exactly_in_zero_layout(world):
    full = torch.randn(7, 5, dtype=torch.float32)  # 35 elements: padded for 2, 3 and 8 ranks
    shards = [shard_flat(full, rank, world) for rank in range(world)]
    size = shard_numel(full.numel(), world)
    assert size == -(-35 // world) and all(s.shape == (size,) for s in shards)
    # ZeRO's own split (LowLevelZeroOptimizer._create_master_param_current_rank): pad, then equal parts
    padding = (world - full.numel() % world) % world
    expected = torch.nn.functional.pad(full.flatten(), [0, padding]).split(size)
    assert all(torch.equal(a, b) for a, b in zip(shards, expected))
    back = unshard_flat(shards, full.shape)
    assert torch.equal(back, full)
    assert back.untyped_storage().nbytes() == full.numel() * 4  # owns exactly its elements (no padding saved)


def test_masters_of_a_checkpoint_round_trip():
    """Masters gathered for ``master.safetensors`` and restored into the optimizer's shards and into the
    working weights."""
    model = _model()
    accelerator = _ZeroStandIn(model)
    params = {n: p for n, p in model.named_parameters() if p.requires_grad}
    with torch.no_grad():
        for p in params.values():
            accelerator.masters[id(p)][: p.numel()] += 0.125  # masters ahead of the working weights
    state = accelerator.master_state_dict(None, params)
    assert set(state) == {"1.weight", "1.bias"} and all(v.dtype == torch.float32 for v in state.values())
    assert torch.equal(state["1.weight"], model[1].weight.detach() + 0.125)

    fresh = _model()
    restored = _ZeroStandIn(fresh, rank=0, world=3)  # 10 elements: shards of 4, the last 2 padding
    fresh_params = {n: p for n, p in fresh.named_parameters() if p.requires_grad}
    assert restored.load_master_state(None, fresh_params, {"1.weight": state["1.weight"]}) == ["1.bias"]
    master = restored.masters[id(fresh[1].weight)]
    assert torch.equal(master, state["1.weight"].flatten()[:4])  # rank 0's shard of the restored tensor
    assert torch.equal(fresh[1].weight.detach(), state["1.weight"])  # the working weight follows its master
    with pytest.raises(UserError, match=r"1.bias has shape \[3\], the model \[2\]"):
        restored.load_master_state(None, fresh_params, {"1.bias": torch.zeros(3)})
    # ddp: the parameters are the masters; nothing to save apart
    assert Accelerator("ddp", CPU, torch.float32).master_state_dict(None, params) is None


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _gather_worker(rank: int, port: int, out: dict) -> None:
    from javisdit.training.ema import EMA

    dist.init_process_group("gloo", init_method=f"tcp://127.0.0.1:{port}", rank=rank, world_size=2)
    try:
        torch.manual_seed(0)  # the same full tensors on both ranks
        tensors = {"a": torch.randn(7, 5), "b": torch.randn(4), "c": torch.randn(1)}
        gathered = {k: gather_to_main(shard_flat(v, rank, 2), v.shape, sharded=True) for k, v in tensors.items()}
        whole = gather_to_main(tensors["a"], tensors["a"].shape, sharded=False)

        # the EMA of a model whose masters are 2-rank shards: ema.pt is gathered on rank 0 only
        torch.manual_seed(1)
        model = nn.Sequential(nn.Linear(5, 7), nn.Linear(7, 3))
        model[0].requires_grad_(False)
        accelerator = _ZeroStandIn(model, rank, 2)
        ema = EMA(model, None, accelerator, decay=0.5)
        with torch.no_grad():
            for p in model[1].parameters():
                accelerator.masters[id(p)].add_(1.0)
        ema.update()
        state = ema.state_dict()
        reloaded = EMA(model, None, accelerator, decay=0.5)
        reloaded.load_state_dict({k: v.double() for k, v in (state or {}).items()} if rank == 0 else
                                 {k: p.detach() + 0.5 for k, p in model.named_parameters()})
        out[rank] = dict(tensors=tensors, gathered=gathered, whole=whole, ema=state,
                         shards={k: v.clone() for k, v in reloaded.shadow.items()},
                         model={k: v.detach().clone() for k, v in model.state_dict().items()})
    finally:
        dist.destroy_process_group()


@pytest.mark.dist
def test_two_ranks_gather_shards_on_rank_zero_only():
    with mp.Manager() as manager:
        out = manager.dict()
        mp.spawn(_gather_worker, args=(_free_port(), out), nprocs=2)
        out = dict(out)
    zero, one = out[0], out[1]
    assert all(torch.equal(zero["gathered"][k], v) for k, v in zero["tensors"].items())
    assert torch.equal(zero["whole"], zero["tensors"]["a"])
    assert set(one["gathered"].values()) == {None} and one["whole"] is None and one["ema"] is None
    # the EMA file: the trained tensors, fp32, full; 0.5 · w + 0.5 · (w + 1) where w + 1 is padded
    ema, model = zero["ema"], zero["model"]
    assert set(ema) == {"1.weight", "1.bias"} and all(v.dtype == torch.float32 for v in ema.values())
    assert torch.allclose(ema["1.weight"], model["1.weight"] + 0.5) and ema["1.weight"].shape == (3, 7)
    # loading takes each rank's own shard of the full tensors
    for rank in (0, 1):
        expected = ema if rank == 0 else {k: model[k] + 0.5 for k in ema}
        assert all(torch.equal(out[rank]["shards"][k], shard_flat(expected[k], rank, 2)) for k in ema)


# ----- timeouts ------------------------------------------------------------------------------------------


def test_timeouts_reach_the_process_group(monkeypatch):
    seen = []
    monkeypatch.setattr(dist, "init_process_group", lambda *a, **kw: seen.append(kw["timeout"]))
    monkeypatch.setattr(dist, "is_initialized", lambda: False)
    monkeypatch.setenv("WORLD_SIZE", "2")
    monkeypatch.setenv("RANK", "0")
    init_distributed(prefer_cuda=False, timeout_minutes=7)
    init_distributed(prefer_cuda=False)  # inference passes nothing
    ensure_process_group(CPU, 3.5)
    monkeypatch.delenv("WORLD_SIZE")
    ensure_process_group(CPU, 2)  # the private one-process group
    assert seen == [datetime.timedelta(minutes=m) for m in (7, 30, 3.5, 2)]
    with pytest.raises(ValueError, match="positive number of minutes"):
        ensure_process_group(CPU, 0)


def test_the_trainer_passes_dist_timeout(monkeypatch, synthetic_data, tmp_path):
    from javisdit.config import parse_configs
    from javisdit.training.loop import Trainer, train
    from javisdit.training.stages import DiffusionStage

    seen, real = [], dist.init_process_group

    def spy(*args, **kwargs):
        seen.append(kwargs.get("timeout"))
        return real(*args, **kwargs)

    monkeypatch.setattr(dist, "init_process_group", spy)
    for name in ("WORLD_SIZE", "RANK", "LOCAL_RANK"):
        monkeypatch.delenv(name, raising=False)
    config = str(REPO / "configs" / "tiny" / "stage1_audio.py")
    cfg = parse_configs("train", [config, "--data-path", str(synthetic_data["stage1_audio"]), "--outputs",
                                  str(tmp_path), "--cfg-options", "dist_timeout=7.5", "max_steps=1"])
    threads = torch.get_num_threads()
    with torch.random.fork_rng(devices=[]):  # training seeds torch and sets its thread count
        assert train(cfg, DiffusionStage(cfg)).global_step == 1
    torch.set_num_threads(threads)
    assert seen == [datetime.timedelta(minutes=7.5)]
    bad = parse_configs("train", [config, "--data-path", "x.csv", "--cfg-options", "ckpt_timeout=0"])
    with pytest.raises(ConfigError, match="ckpt_timeout must be a positive number of minutes"):
        Trainer(bad, DiffusionStage(bad))


def _slow_save_worker(rank: int, port: int, folder: str, out: dict) -> None:
    from pathlib import Path

    from javisdit.training.checkpoint import RunningStates, save_checkpoint

    # the main group times out after 2 s; rank 0 takes 5 s to write the model
    dist.init_process_group("gloo", init_method=f"tcp://127.0.0.1:{port}", rank=rank, world_size=2,
                            timeout=datetime.timedelta(seconds=2))
    try:
        wait_group(1.0)

        def write_model(path: Path) -> None:
            time.sleep(5)
            path.mkdir()
            (path / "model.safetensors").write_text("weights")

        start = time.monotonic()
        final = save_checkpoint(Path(folder), RunningStates(0, 1, 1), write_model, None,
                                {"sampler": lambda: {"rank": rank}}, wait_timeout_minutes=1.0)
        waited = time.monotonic() - start
        total = torch.tensor([float(rank + 1)])
        dist.all_reduce(total)  # the main group still works afterwards
        out[rank] = (str(final), waited, total.item(), sorted(p.name for p in final.iterdir()))
    finally:
        dist.destroy_process_group()


@pytest.mark.dist
def test_a_slow_checkpoint_write_does_not_time_the_others_out(tmp_path):
    with mp.Manager() as manager:
        out = manager.dict()
        mp.spawn(_slow_save_worker, args=(_free_port(), str(tmp_path), out), nprocs=2)
        out = dict(out)
    assert out[0][0] == out[1][0] == str(tmp_path / "epoch000-global_step1")
    assert out[1][1] >= 5  # rank 1 waited for rank 0's write, beyond the main group's 2 s
    assert out[0][2] == out[1][2] == 3.0
    assert out[0][3] == ["model", "running_states.json", "sampler"]
    assert torch.load(tmp_path / "epoch000-global_step1" / "sampler", weights_only=True) == {"rank": 0}
