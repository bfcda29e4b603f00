"""What a stage-3 checkpoint holds of the averaged weights: ``ema.pt`` with exactly the trained tensors
(fp32, equal to the EMA in memory), and ``export_ema`` turning it into a model folder to sample from.
Tiny stage 3 in this process (ddp on CPU)."""

from __future__ import annotations

import pytest
import torch
from conftest import REPO

from javisdit.config import parse_configs
from javisdit.distributed import shutdown
from javisdit.errors import UserError
from javisdit.models.loading import read_state_dict
from javisdit.training.checkpoint import export_ema
from javisdit.training.loop import Trainer
from javisdit.training.stages import DiffusionStage

pytestmark = pytest.mark.usefixtures("restore_process_state")  # training runs in-process


@pytest.fixture(scope="module")
def trained(synthetic_data, tmp_path_factory):
    """(trainer, report) of two steps of tiny stage 3."""
    outputs = tmp_path_factory.mktemp("stage3_ema")
    cfg = parse_configs("train", [str(REPO / "configs" / "tiny" / "stage3_jav.py"), "--data-path",
                                  str(synthetic_data["stage3_jav"]), "--outputs", str(outputs), "--cfg-options",
                                  "epochs=2", "ckpt_every=0"])
    try:
        trainer = Trainer(cfg, DiffusionStage(cfg))
        report = trainer.fit()
    finally:
        shutdown()
    return trainer, report


def test_ema_file_holds_exactly_the_trained_tensors(trained):
    trainer, report = trained
    ema = torch.load(report.last_checkpoint / "ema.pt", weights_only=True)
    assert set(ema) == set(trainer.trainable) and ema  # frozen tensors are in model/, not here
    for name, p in trainer.trainable.items():
        assert ema[name].dtype == torch.float32 and ema[name].shape == p.shape
        assert torch.equal(ema[name], trainer.ema.shadow[name].view(p.shape))
    assert not (report.last_checkpoint / "master.safetensors").exists()  # ddp: model/ holds the fp32 masters
    numel = sum(p.numel() for p in trainer.trainable.values())
    total = sum(p.numel() for p in trainer.module.parameters())
    assert numel < total / 2
    size = (report.last_checkpoint / "ema.pt").stat().st_size
    assert 4 * numel <= size < 4 * numel + 200_000  # fp32 of the trained tensors plus the pickle's names


def test_export_ema_makes_a_model_folder_with_the_averaged_weights(trained, tmp_path):
    trainer, report = trained
    folder = export_ema(report.exp_dir, tmp_path / "jav-ema")  # a run folder: its latest checkpoint
    exported, model = read_state_dict(folder), read_state_dict(report.last_checkpoint / "model")
    ema = torch.load(report.last_checkpoint / "ema.pt", weights_only=True)
    assert exported.keys() == model.keys()
    assert all(torch.equal(exported[k], ema[k] if k in ema else model[k]) for k in model)
    assert any(not torch.equal(ema[k], model[k]) for k in ema)
    assert (folder / "config.json").read_text() == (report.last_checkpoint / "model" / "config.json").read_text()
    # the folder loads strictly into the model it came from
    trainer.stage.load_weights(trainer.module, folder)
    assert all(torch.equal(p.detach(), ema[n]) for n, p in trainer.trainable.items())
    (report.last_checkpoint / "ema.pt").rename(tmp_path / "ema.pt")
    try:
        with pytest.raises(UserError, match="no ema.pt"):
            export_ema(report.last_checkpoint, tmp_path / "none")
    finally:
        (tmp_path / "ema.pt").rename(report.last_checkpoint / "ema.pt")


def test_export_script(trained, tmp_path, run_script):
    trainer, report = trained
    result = run_script("misc/export_ema.py", str(report.exp_dir), str(tmp_path / "jav-ema"))
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == f"wrote {tmp_path / 'jav-ema'}"
    assert read_state_dict(tmp_path / "jav-ema").keys() == read_state_dict(report.last_checkpoint / "model").keys()
    result = run_script("misc/export_ema.py", str(tmp_path / "nope"), str(tmp_path / "out"))
    assert result.returncode == 2
    assert result.stderr.strip().splitlines() == [f"error: checkpoint {tmp_path / 'nope'}: no such folder"]


@pytest.mark.parametrize("stage, trainable, gigabytes", [("stage1_audio", 1_196_481_088, 4.79),
                                                         ("stage3_jav", 1_315_605_888, 5.26)])
def test_ema_size_of_the_v01_stages(stage, trainable, gigabytes):
    """The README's sizes of ``ema.pt`` (and of ``master.safetensors`` under ZeRO): 4 bytes for each trained
    parameter of VASTDiT3-XL/2 as the v0.1 stage configs freeze it (built on the meta device)."""
    from javisdit.models.stdit import build_vastdit3
    from javisdit.models.stdit.policy import select_trainable

    cfg = parse_configs("train", [str(REPO / "configs" / "javisdit-v0-1" / "train" / f"{stage}.py"), "--data-path",
                                  "unused.csv"])
    kwargs = {k: v for k, v in cfg.model.items() if k not in ("type", "weight_init_from")}
    kwargs.update(enable_flash_attn=False, enable_layernorm_kernel=False)
    # T5-XXL captions: 4096 channels, the recipe's 300 tokens
    with torch.device("meta"):  # no memory, no random init
        model = build_vastdit3(cfg.model.type.split("-", 1)[1], in_channels=4, caption_channels=4096,
                               model_max_length=300, **kwargs)
    policy = model.training_policy
    count = select_trainable(model, **{k: bool(policy.get(k, False)) for k in ("freeze_y_embedder",
                                                                           "freeze_video_branch",
                                                                           "freeze_audio_branch")})
    assert count == trainable
    assert round(4 * count / 1e9, 2) == gigabytes
