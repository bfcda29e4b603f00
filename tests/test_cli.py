"""The scripts' command line: help, --print-config, and one-line errors without tracebacks."""

import pytest
from mmengine.config import Config

from javisdit import cli
from javisdit.errors import UserError

SAMPLE = "configs/javisdit-v0-1/inference/sample.py"


@pytest.mark.parametrize(
    "script, config, expected",
    [
        ("inference.py", SAMPLE, ["--num-frames", "--prompt-path", "--cfg-options", "--print-config"]),
        ("train.py", "configs/javisdit-v0-1/train/stage3_jav.py", ["--lr", "--load", "--data-path"]),
        ("train_prior.py", "configs/javisdit-v0-1/train/stage2_prior.py", ["--warmup-steps", "--wandb"]),
    ],
)
def test_scripts_help_and_print_config(run_script, script, config, expected, tmp_path):
    result = run_script(script, "--help")
    assert result.returncode == 0, result.stderr
    assert all(flag in result.stdout for flag in expected)

    result = run_script(script, config, "--seed", "5", "--print-config")
    assert result.returncode == 0, result.stderr
    dumped = tmp_path / "dumped.py"
    dumped.write_text(result.stdout)
    cfg = Config.fromfile(str(dumped))  # the printed config is itself a loadable config
    assert cfg.seed == 5 and cfg.config == config


def test_print_config_shows_merged_values(capsys):
    code = cli.main("inference", [SAMPLE, "--print-config", "--num-frames", "2s", "--flash-attn", "no",
                                  "--cfg-options", "model.depth=2"])
    out = capsys.readouterr().out
    assert code == 0
    assert "num_frames = '2s'" in out and "'enable_flash_attn': False" in out and "'depth': 2" in out
    # the config's own key order is kept (mmengine's pretty printer would sort it)
    assert out.index("resolution =") < out.index("aspect_ratio =") < out.index("scheduler =")


@pytest.mark.parametrize(
    "argv, message",
    [
        (["configs/missing.py"], "error: config file not found: configs/missing.py"),
        ([SAMPLE, "--cfg-options", "model.depht.x=2"], "error: --cfg-options model.depht.x: the config has no section"),
        ([SAMPLE, "--cfg-options", "seed=abc"], "error: --cfg-options seed=abc: expected an integer"),
    ],
)
def test_user_errors_are_one_line(run_script, argv, message):
    result = run_script("inference.py", *argv)
    assert result.returncode == 2
    assert result.stderr.strip() == message or result.stderr.startswith(message)
    assert "Traceback" not in result.stderr and len(result.stderr.strip().splitlines()) == 1


def test_argparse_errors_exit_2(run_script):
    result = run_script("inference.py", SAMPLE, "--resolution", "999p")
    assert result.returncode == 2 and "Traceback" not in result.stderr
    assert "argument --resolution: unknown resolution '999p'; valid: 64, 144p" in result.stderr


def test_missing_pipeline_is_a_user_error(monkeypatch, capsys):
    monkeypatch.setitem(cli.PIPELINES, "inference", "javisdit.no_such_pipeline:run")
    assert cli.main("inference", [SAMPLE]) == 2
    assert "the inference pipeline (javisdit.no_such_pipeline) is not part of this version" in capsys.readouterr().err


def test_pipeline_receives_the_merged_config(monkeypatch):
    seen = {}
    monkeypatch.setattr(cli, "_pipeline", lambda mode: seen.setdefault("run", lambda cfg: seen.update(cfg=cfg)))
    assert cli.main("inference", [SAMPLE, "--prompt", "a cat meows"]) == 0
    assert seen["cfg"].prompt == ["a cat meows"] and seen["cfg"].scheduler.num_sampling_steps == 30


def test_user_error_from_pipeline(monkeypatch, capsys):
    def failing(cfg):
        raise UserError("weights not found")

    monkeypatch.setattr(cli, "_pipeline", lambda mode: failing)
    assert cli.main("train", ["configs/javisdit-v0-1/train/stage3_jav.py"]) == 2
    assert capsys.readouterr().err.splitlines()[-1] == "error: weights not found"
