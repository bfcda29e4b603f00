"""A finite loss with a non-finite gradient: the step must change nothing (weights, optimizer state,
EMA), and ``nan_policy`` decides between skipping it and stopping with the last good checkpoint named.
Tiny stage 1 in this process (ddp on CPU), an infinite gradient injected at the second step."""

from __future__ import annotations

import json
import math
from pathlib import Path

import pytest
import torch
from conftest import REPO

from javisdit.config import parse_configs
from javisdit.models.loading import read_state_dict
from javisdit.training.loop import TrainingDiverged, train
from javisdit.training.stages import DiffusionStage

pytestmark = pytest.mark.usefixtures("restore_process_state")  # training runs in-process


BAD_STEP = 2  # the second optimizer step (global step 1) gets an infinite gradient


class _InfiniteGradientAt(DiffusionStage):
    """Stage 1 whose ``BAD_STEP``-th loss is finite but back-propagates an infinite gradient into one
    trained weight."""

    def build(self, device, dtype):
        model = super().build(device, dtype)
        self.steps = 0
        self.poisoned = next(name for name, p in model.named_parameters() if p.requires_grad)
        weight = model.get_parameter(self.poisoned)
        weight.register_hook(lambda grad: torch.full_like(grad, math.inf) if self.steps == BAD_STEP else grad)
        return model

    def loss(self, model, batch, generators):
        self.steps += 1
        return super().loss(model, batch, generators)


def _run(synthetic_data, outputs: Path, policy: str):
    cfg = parse_configs("train", [str(REPO / "configs" / "tiny" / "stage1_audio.py"), "--data-path",
                                  str(synthetic_data["stage1_audio"]), "--outputs", str(outputs), "--cfg-options",
                                  "epochs=4", "ckpt_every=1", "save_total_limit=10", f"nan_policy={policy}"])
    stage = _InfiniteGradientAt(cfg)
    return stage, lambda: train(cfg, stage)


def _trained(checkpoint: Path, names: set[str]) -> dict[str, torch.Tensor]:
    return {k: v for k, v in read_state_dict(checkpoint / "model").items() if k in names}


def _ema(checkpoint: Path) -> dict[str, torch.Tensor]:
    return torch.load(checkpoint / "ema.pt", weights_only=True)


def _all_finite(state: dict[str, torch.Tensor]) -> bool:
    return all(torch.isfinite(v).all() for v in state.values() if v.is_floating_point())


def test_skip_leaves_weights_optimizer_and_ema_untouched(synthetic_data, tmp_path):
    stage, run = _run(synthetic_data, tmp_path, "skip")
    report = run()
    assert report.global_step == 4 and report.skipped_steps == 1 and len(report.losses) == 3
    run_dir = report.exp_dir
    checkpoints = [run_dir / f"epoch{e:03d}-global_step{e + 1}" for e in range(4)]
    names = set(_ema(checkpoints[0]))
    assert stage.poisoned in names
    for checkpoint in checkpoints:
        assert _all_finite(read_state_dict(checkpoint / "model")) and _all_finite(_ema(checkpoint))
    before, skipped, after = checkpoints[0], checkpoints[1], checkpoints[2]
    # the skipped step changed nothing: trained weights, EMA, Adam's moments and step count
    for read in (lambda c: _trained(c, names), _ema):
        a, b, c = read(before), read(skipped), read(after)
        assert all(torch.equal(a[k], b[k]) for k in a)
        assert not all(torch.equal(b[k], c[k]) for k in b)  # the next step trains again
    opt = [torch.load(c / "optimizer" / "optimizer.pt", weights_only=True)["state"] for c in (before, skipped)]
    assert all(torch.equal(opt[0][i][key], opt[1][i][key]) for i in opt[0] for key in ("step", "exp_avg", "exp_avg_sq"))
    assert float(opt[1][0]["step"]) == 1.0
    rows = [json.loads(line) for line in (run_dir / "metrics.jsonl").read_text().splitlines()]
    assert [r.get("skipped_steps", 0) for r in rows] == [0, 1, 0, 0]
    assert "loss" not in rows[1] and all(math.isfinite(r["grad_norm"]) for r in rows if "grad_norm" in r)
    assert "non-finite gradient norm at epoch 1, step 0, global step 1: step skipped (nan_policy=skip)" in \
        (run_dir / "log.txt").read_text()


def test_stop_names_the_last_good_checkpoint(synthetic_data, tmp_path):
    _, run = _run(synthetic_data, tmp_path, "stop")
    with pytest.raises(TrainingDiverged) as caught:
        run()
    (run_dir,) = [p for p in tmp_path.iterdir() if p.is_dir()]
    last = run_dir / "epoch000-global_step1"
    message = str(caught.value)
    assert "the gradient norm is not finite at epoch 1, step 0, global step 1; nothing was updated" in message
    assert f"Last checkpoint: {last}." in message
    assert sorted(p.name for p in run_dir.glob("epoch*")) == [last.name]
    assert _all_finite(read_state_dict(last / "model")) and _all_finite(_ema(last))
