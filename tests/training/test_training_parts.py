"""The parts of the training loop on their own: LR warm-up, EMA (plain and ZeRO-sharded), experiment
folders and checkpoints, the feature-batch sampler."""

from __future__ import annotations

import json

import pytest
import torch
from torch import nn

from javisdit.datasets.sampler import StatefulDistributedSampler
from javisdit.distributed.booster import Accelerator, resolve_plugin
from javisdit.errors import ConfigError, UserError
from javisdit.training.checkpoint import RunningStates, create_experiment_dir, open_checkpoint, save_checkpoint
from javisdit.training.ema import EMA
from javisdit.training.lr import LinearWarmupLR


def test_linear_warmup_then_constant():
    optimizer = torch.optim.AdamW([nn.Parameter(torch.zeros(1))], lr=1e-4)
    scheduler = LinearWarmupLR(optimizer, warmup_steps=3)
    lrs = []
    for _ in range(6):
        lrs.append(optimizer.param_groups[0]["lr"])
        optimizer.step()
        scheduler.step()
    assert lrs == pytest.approx([0.25e-4, 0.5e-4, 0.75e-4, 1e-4, 1e-4, 1e-4])
    restored = LinearWarmupLR(torch.optim.AdamW([nn.Parameter(torch.zeros(1))], lr=1e-4), warmup_steps=3)
    restored.load_state_dict(scheduler.state_dict())
    assert restored.get_last_lr() == scheduler.get_last_lr()


class _ShardingAccelerator(Accelerator):
    """Pretends to be ZeRO on one rank: masters are flat fp32 copies padded to a multiple of 4."""

    def __init__(self, model: nn.Module):
        super().__init__("zero2", torch.device("cpu"), torch.bfloat16)
        self.masters = {}
        for p in model.parameters():
            flat = torch.zeros(-(-p.numel() // 4) * 4)
            flat[: p.numel()] = p.detach().flatten()
            self.masters[id(p)] = flat

    def master_param(self, optimizer, param):
        return self.masters[id(param)], True


def _model() -> nn.Module:
    torch.manual_seed(0)
    model = nn.Sequential(nn.Linear(3, 5), nn.Linear(5, 2))
    model[0].requires_grad_(False)  # frozen: not averaged
    return model


@pytest.mark.parametrize("sharded", [False, True])
def test_ema_averages_the_trained_weights(sharded):
    model = _model()
    accelerator = _ShardingAccelerator(model) if sharded else Accelerator("ddp", torch.device("cpu"), torch.float32)
    ema = EMA(model, None, accelerator, decay=0.9)
    start = model[1].weight.detach().clone()
    with torch.no_grad():
        model[1].weight.add_(1.0)
        if sharded:
            accelerator.masters[id(model[1].weight)][:10] += 1.0
    ema.update()
    state = ema.state_dict()
    assert set(state) == {"1.weight", "1.bias"}  # the trained tensors only: frozen ones are in model/
    assert torch.allclose(state["1.weight"], start + 0.1)  # 0.9 · w + 0.1 · (w + 1)
    assert all(v.dtype == torch.float32 and v.device.type == "cpu" for v in state.values())
    assert state["1.weight"].untyped_storage().nbytes() == 10 * 4  # no padding saved along

    again = EMA(model, None, accelerator, decay=0.9)
    again.load_state_dict(state)
    assert all(torch.equal(again.state_dict()[k], v) for k, v in state.items())
    # an ema.pt of the whole model (earlier versions) loads: the frozen tensors are ignored
    whole = {**{k: v.float() for k, v in model.state_dict().items()}, **state}
    old = EMA(model, None, accelerator, decay=0.9)
    old.load_state_dict(whole)
    assert all(torch.equal(old.state_dict()[k], v) for k, v in state.items())


def test_ema_decay_is_checked():
    with pytest.raises(ValueError, match=r"ema_decay must be in \[0, 1\]"):
        EMA(_model(), None, Accelerator("ddp", torch.device("cpu"), torch.float32), decay=1.5)


def test_plugin_choice():
    assert resolve_plugin("zero2", torch.device("cpu")) == "ddp"  # ZeRO needs CUDA
    assert resolve_plugin("ddp", torch.device("cpu")) == "ddp"
    with pytest.raises(ConfigError, match="sequence parallelism is not supported"):
        resolve_plugin("zero2-seq", torch.device("cpu"))


def test_experiment_folders_count_only_runs(tmp_path):
    (tmp_path / "wandb").mkdir()  # the original counted every entry
    (tmp_path / "notes.txt").write_text("")
    assert create_experiment_dir(tmp_path, "VASTDiT3-XL/2").name == "000-VASTDiT3-XL-2"
    assert create_experiment_dir(tmp_path, "STIBPrior").name == "001-STIBPrior"
    (tmp_path / "007-STIBPrior").mkdir()
    assert create_experiment_dir(tmp_path, "STIBPrior").name == "008-STIBPrior"


def _save(exp, step, limit=2):
    def model(folder):
        folder.mkdir(parents=True)
        (folder / "model.safetensors").write_text("weights")

    return save_checkpoint(exp, RunningStates(0, step, step), model, None, {"sampler": lambda: {"step": step}}, limit)


def test_checkpoints_replace_atomically_and_keep_the_newest(tmp_path):
    (tmp_path / ".epoch000-global_step9.tmp").mkdir()  # left by a killed save
    for step in (1, 2, 3):
        _save(tmp_path, step)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["epoch000-global_step2", "epoch000-global_step3"]
    ckpt = open_checkpoint(tmp_path)  # a run folder: its latest checkpoint
    assert ckpt.states == RunningStates(0, 3, 3, None)
    assert ckpt.load("sampler") == {"step": 3} and ckpt.load("ema.pt") is None
    assert json.loads((ckpt.path / "running_states.json").read_text())["global_step"] == 3


def test_open_checkpoint_names_what_is_wrong(tmp_path):
    with pytest.raises(UserError, match="no such folder"):
        open_checkpoint(tmp_path / "missing")
    (tmp_path / "model").mkdir()
    with pytest.raises(UserError, match=r"not a training checkpoint \(no running_states.json\)"):
        open_checkpoint(tmp_path)
    (tmp_path / "running_states.json").write_text("{")
    with pytest.raises(UserError, match="unreadable running_states.json"):
        open_checkpoint(tmp_path)


def test_feature_sampler_splits_and_resumes():
    full = [list(StatefulDistributedSampler(7, num_replicas=2, rank=r, seed=3)) for r in (0, 1)]
    assert len(full[0]) == len(full[1]) == 3 and not set(full[0]) & set(full[1])
    sampler = StatefulDistributedSampler(7, num_replicas=2, rank=1, seed=3)
    sampler.load_state_dict(sampler.state_dict(num_steps=2))
    assert len(sampler) == 1 and list(sampler) == full[1][2:]
    sampler.set_epoch(1)
    assert list(sampler) != full[1] and len(list(sampler)) == 3  # a new order each epoch, from the start
    with pytest.raises(ValueError, match="cannot feed 2 process"):
        StatefulDistributedSampler(1, num_replicas=2, rank=0)


def test_negatives_are_encoded_with_the_clips_and_split_back():
    from javisdit.training.negatives import encode_with_negatives, row_generators

    positives = torch.arange(2.0)[:, None]  # 2 clips, one value each
    negatives = {"spatial": torch.tensor([[10.0], [20.0]])[..., None], "temporal": torch.tensor([[30.0, 31.0],
                                                                                                [40.0, 41.0]])[..., None]}
    calls = []

    def encode(x, generators):
        calls.append((x.shape[0], len(generators)))
        return x * 2

    z, neg = encode_with_negatives(encode, positives, negatives, lambda rows: row_generators(
        [torch.Generator().manual_seed(s) for s in (1, 2)], negatives), torch.device("cpu"), torch.float32)
    assert calls == [(8, 8)]  # one call: 2 clips + 2 spatial + 4 temporal negatives
    assert z.flatten().tolist() == [0.0, 2.0]
    assert neg["spatial"].flatten().tolist() == [20.0, 40.0] and neg["temporal"].flatten().tolist() == [60, 62, 80, 82]
    # a sample's row generators depend on its own generator only
    alone = row_generators([torch.Generator().manual_seed(2)], {k: v[1:] for k, v in negatives.items()})
    paired = row_generators([torch.Generator().manual_seed(s) for s in (1, 2)], negatives)
    first = [torch.rand(1, generator=g).item() for g in paired]
    assert [torch.rand(1, generator=g).item() for g in alone] == [first[i] for i in (1, 3, 6, 7)]
