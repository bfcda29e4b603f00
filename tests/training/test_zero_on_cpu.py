"""ColossalAI's real ZeRO-2 optimizer (``LowLevelZeroOptimizer``, partitioned gradients, fp32 master
shards) around ``torch.optim.AdamW``, on two CPU processes over gloo: the global gradient norm and an
infinite gradient on one rank, the skipped step, the EMA and the fp32 masters gathered to rank 0 and
restored exactly into a fresh optimizer.

ZeRO refuses to run without an accelerator; each worker process points ColossalAI at its CPU
accelerator and stubs the CUDA streams it asks for (with gloo there is nothing to overlap). Nothing
else of ColossalAI is changed, and the processes end with the test."""

from __future__ import annotations

import contextlib
import math
import socket
from pathlib import Path

import pytest
import torch
import torch.distributed as dist
import torch.multiprocessing as mp
from torch import nn

pytestmark = pytest.mark.dist

LR, WEIGHT_DECAY = 1e-2, 0.1


def _zero_on_cpu() -> None:
    from colossalai.accelerator import get_accelerator, set_accelerator
    from colossalai.zero import LowLevelZeroOptimizer

    set_accelerator("cpu")
    accelerator = get_accelerator()
    accelerator.Stream = lambda *args, **kwargs: None
    accelerator.current_stream = lambda *args, **kwargs: None
    accelerator.stream = lambda stream: contextlib.nullcontext()
    accelerator.synchronize = lambda *args, **kwargs: None
    LowLevelZeroOptimizer._sanity_checks = lambda self: None  # it asserts a CUDA/NPU accelerator


def _model() -> nn.Module:
    torch.manual_seed(0)
    model = nn.Sequential(nn.Linear(3, 5), nn.Linear(5, 3)).to(torch.bfloat16)  # 15 and 3 elements: padded
    model[0].requires_grad_(False)
    return model


def _zero(model: nn.Module):
    from colossalai.zero import LowLevelZeroOptimizer

    from javisdit.distributed.booster import Accelerator

    accelerator = Accelerator("zero2", torch.device("cpu"), torch.bfloat16, grad_clip=1.0)
    optimizer = accelerator.make_optimizer(model.parameters(), lr=LR, weight_decay=WEIGHT_DECAY)
    accelerator._optimizer_is_zero = True  # what ``boost`` records
    zero = LowLevelZeroOptimizer(optimizer, partition_grad=True, clip_grad_norm=1.0, reduce_bucket_size=1024)
    return accelerator, zero


def _backward(model: nn.Module, zero, rank: int, step: int) -> None:
    torch.manual_seed(100 * step + rank)  # each rank its own batch
    loss = model(torch.randn(4, 3, dtype=torch.bfloat16)).float().pow(2).mean()
    zero.backward(loss)


def _worker(rank: int, port: int, folder: str, out: dict) -> None:
    from javisdit.training.checkpoint import MASTER_FILE, Checkpoint, RunningStates
    from javisdit.training.ema import EMA

    dist.init_process_group("gloo", init_method=f"tcp://127.0.0.1:{port}", rank=rank, world_size=2)
    try:
        _zero_on_cpu()
        model = _model()
        accelerator, zero = _zero(model)
        params = {name: p for name, p in model.named_parameters() if p.requires_grad}
        ema = EMA(model, zero, accelerator, decay=0.5)
        result: dict = {"shards": [tuple(m.shape) for m in zero.get_working_to_master_map().values()]}

        _backward(model, zero, rank, 1)
        norm = accelerator.grad_norm(zero, model)
        accelerator.step(zero, model, norm)
        ema.update()
        result["norm"], result["zero_norm"] = norm, zero.get_grad_norm()

        # an infinite gradient on rank 1 only: both ranks see a non-finite norm and change nothing
        masters = [m.clone() for m in zero.get_working_to_master_map().values()]
        weights = [p.detach().clone() for p in params.values()]
        moments = [zero.optim.state[m]["exp_avg"].clone() for m in zero.get_working_to_master_map().values()]
        hook = params["1.weight"].register_hook(lambda g: torch.full_like(g, math.inf) if rank == 1 else g)
        _backward(model, zero, rank, 2)
        hook.remove()
        result["bad_norm"] = accelerator.grad_norm(zero, model)
        accelerator.skip_step(zero)
        after = list(zero.get_working_to_master_map().values())
        result["unchanged"] = (all(torch.equal(a, b) for a, b in zip(masters, after))
                               and all(torch.equal(a, p.detach()) for a, p in zip(weights, params.values()))
                               and all(torch.equal(a, zero.optim.state[m]["exp_avg"]) for a, m in zip(moments, after)))
        result["grads_cleared"] = not zero.get_working_grads_by_group_id(0)

        _backward(model, zero, rank, 3)
        norm = accelerator.grad_norm(zero, model)
        accelerator.step(zero, model, norm)
        ema.update()
        result["finite"] = math.isfinite(norm) and all(torch.isfinite(m).all() for m in after)

        # the checkpoint's fp32 masters and EMA: gathered on rank 0, read back by every rank
        state, averaged = accelerator.master_state_dict(zero, params), ema.state_dict()
        if rank == 0:
            from safetensors.torch import save_file

            save_file(state, str(Path(folder) / MASTER_FILE))
        result["state"], result["ema"] = state, averaged  # None on rank 1
        result["working"] = {name: p.detach().clone() for name, p in params.items()}
        result["my_masters"] = {name: accelerator.master_param(zero, p)[0].clone() for name, p in params.items()}
        dist.barrier()

        # a fresh optimizer builds its masters from the bf16 weights; the file restores them exactly
        fresh_model = _model()
        with torch.no_grad():
            for name, p in fresh_model.named_parameters():
                if name in params:
                    p.copy_(params[name])  # what model/ holds: the bf16 working weights
        fresh_acc, fresh_zero = _zero(fresh_model)
        fresh_params = {name: p for name, p in fresh_model.named_parameters() if p.requires_grad}
        rebuilt = {name: fresh_acc.master_param(fresh_zero, p)[0].clone() for name, p in fresh_params.items()}
        result["rebuilt_differs"] = any(not torch.equal(rebuilt[n], result["my_masters"][n]) for n in params)
        stored = Checkpoint(Path(folder), RunningStates(0, 0, 0)).load(MASTER_FILE)
        result["missing"] = fresh_acc.load_master_state(fresh_zero, fresh_params, stored)
        result["restored"] = {name: fresh_acc.master_param(fresh_zero, p)[0].clone()
                              for name, p in fresh_params.items()}
        result["restored_working"] = {name: p.detach().clone() for name, p in fresh_params.items()}
        out[rank] = result
    finally:
        dist.destroy_process_group()


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture(scope="module")
def ranks(tmp_path_factory) -> dict[int, dict]:
    folder = tmp_path_factory.mktemp("zero_cpu")
    with mp.Manager() as manager:
        out = manager.dict()
        mp.spawn(_worker, args=(_free_port(), str(folder), out), nprocs=2)
        return dict(out)


def test_zero_wraps_torch_adamw_with_padded_fp32_shards(ranks):
    assert ranks[0]["shards"] == ranks[1]["shards"] == [(8,), (2,)]  # ceil(15 / 2), ceil(3 / 2)
    assert all(v.dtype == torch.float32 for r in ranks.values() for v in r["my_masters"].values())


def test_gradient_norm_is_global_and_matches_zero(ranks):
    assert ranks[0]["norm"] == ranks[1]["norm"] == ranks[0]["zero_norm"] > 0  # ZeRO's own clipping norm


def test_an_infinite_gradient_on_one_rank_changes_nothing_anywhere(ranks):
    for rank in (0, 1):
        assert math.isinf(ranks[rank]["bad_norm"])  # rank 0's own gradients were finite
        assert ranks[rank]["unchanged"] and ranks[rank]["grads_cleared"] and ranks[rank]["finite"]


def test_masters_and_ema_are_gathered_on_rank_zero(ranks):
    from javisdit.distributed.booster import unshard_flat

    state, ema = ranks[0]["state"], ranks[0]["ema"]
    assert ranks[1]["state"] is None and ranks[1]["ema"] is None
    assert set(state) == set(ema) == {"1.weight", "1.bias"}
    for name, full in state.items():
        assert full.dtype == torch.float32 and full.shape == ranks[0]["working"][name].shape
        shards = [ranks[r]["my_masters"][name] for r in (0, 1)]
        assert torch.equal(full, unshard_flat(shards, full.shape))
        assert torch.equal(full.bfloat16(), ranks[0]["working"][name])  # the working copy is the rounded master
        assert ema[name].dtype == torch.float32 and not torch.equal(ema[name], full)


def test_masters_restore_exactly_into_a_fresh_optimizer(ranks):
    for rank in (0, 1):
        result = ranks[rank]
        assert result["rebuilt_differs"]  # rebuilt from bf16 weights they would be rounded
        assert result["missing"] == []
        assert all(torch.equal(result["restored"][n], result["my_masters"][n]) for n in result["my_masters"])
        assert all(torch.equal(result["restored_working"][n], result["working"][n]) for n in result["working"])
