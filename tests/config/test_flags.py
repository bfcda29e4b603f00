"""Every flag reaches its merge targets; bad values are errors that name the flag."""

import pytest

from javisdit.config import FLAGS, flags_for, parse_configs, scope_of, str2bool
from javisdit.config.defaults import DEFAULTS, known_keys
from javisdit.config.flags import COMMON, EXTRACT, INFERENCE, TRAINING, UNSUPPORTED_FLAGS
from javisdit.errors import ConfigError

FULL = """
model = dict(type="VASTDiT3-tiny", from_pretrained="hub/model", enable_flash_attn=True, enable_layernorm_kernel=True)
prior_encoder = dict(type="STIBPrior", text_tower="tiny", enable_layernorm_kernel=True)
scheduler = dict(type="rflow", num_sampling_steps=30, cfg_scale=7.0)
"""
DATASET = """
dataset = dict(type="VariableVideoAudioTextDataset", data_path=None)
"""

# flag -> (command-line words after the flag, value expected in the config)
SAMPLES = {
    "--seed": (["7"], 7),
    "--model-path": (["./weights"], "./weights"),
    "--lora-dir": (["adapter"], "adapter"),
    "--compile": ([], True),
    "--sp-size": (["2"], 2),
    "--ckpt-path": (["./ckpt/model"], "./ckpt/model"),
    "--batch-size": (["3"], 3),
    "--outputs": (["./exp"], "./exp"),
    "--flash-attn": (["False"], False),
    "--layernorm-kernel": (["no"], False),
    "--resolution": (["480p"], "480p"),
    "--data-path": (["data/train.csv"], "data/train.csv"),
    "--dtype": (["fp16"], "fp16"),
    "--save-dir": (["./out"], "./out"),
    "--sample-name": (["clip"], "clip"),
    "--start-index": (["5"], 5),
    "--end-index": (["9"], 9),
    "--num-sample": (["2"], 2),
    "--prompt-as-path": ([], True),
    "--verbose": (["0"], 0),
    "--prompt-path": (["prompts.txt"], "prompts.txt"),
    "--prompt": (["a dog barks", "rain falls"], ["a dog barks", "rain falls"]),
    "--num-frames": (["2s"], "2s"),
    "--fps": (["12"], 12),
    "--save-fps": (["12"], 12),
    "--image-size": (["64", "96"], [64, 96]),
    "--frame-interval": (["2"], 2),
    "--aspect-ratio": (["1:1"], "1:1"),
    "--num-sampling-steps": (["10"], 10),
    "--cfg-scale": (["4.5"], 4.5),
    "--aes": (["6.0"], 6.0),
    "--flow": (["5"], 5.0),
    "--camera-motion": (["pan right"], "pan right"),
    "--condition": (["v2a"], "v2a"),
    "--ref-video": (["in.mp4"], "in.mp4"),
    "--ref-audio": (["in.wav"], "in.wav"),
    "--ref-image": (["in.png"], "in.png"),
    "--keep-video": (["0-1,2-3"], "0-1,2-3"),
    "--keep-audio": (["1-2"], "1-2"),
    "--edit-strength": (["0.25"], 0.25),
    "--skip-bad-rows": ([], True),
    "--loop": (["3"], 3),
    "--lr": (["3e-5"], 3e-5),
    "--wandb": (["yes"], True),
    "--load": (["runs/000-X/epoch000-global_step10"], "runs/000-X/epoch000-global_step10"),
    "--start-from-scratch": (["1"], True),
    "--warmup-steps": (["50"], 50),
    "--record-time": (["true"], True),
}

TARGETS = {
    "--ckpt-path": ["model.from_pretrained"],
    "--flash-attn": ["model.enable_flash_attn"],
    "--layernorm-kernel": ["model.enable_layernorm_kernel"],
    "--data-path": ["dataset.data_path"],
    "--num-sampling-steps": ["scheduler.num_sampling_steps"],
    "--cfg-scale": ["scheduler.cfg_scale"],
}


def _get(cfg, path):
    node = cfg
    for part in path.split("."):
        node = node[part]
    return node


def test_every_flag_has_a_sample():
    assert set(SAMPLES) == {flag.name for flag in FLAGS}


@pytest.mark.parametrize("flag", FLAGS, ids=lambda f: f.name)
def test_flag_reaches_its_targets(flag, write_config):
    mode = "inference" if INFERENCE in flag.scopes else "train"
    path = write_config(FULL + (DATASET if mode == "train" else ""))
    words, expected = SAMPLES[flag.name]
    cfg = parse_configs(mode, [path, flag.name, *words])
    targets = TARGETS.get(flag.name, [flag.dest])
    assert list(flag.paths) == targets
    for target in targets:
        assert _get(cfg, target) == expected, target
    if flag.targets and flag.dest not in flag.targets:  # a redirected flag leaves no top-level key behind
        assert flag.dest not in cfg


def test_flags_only_override_when_given(write_config):
    path = write_config(FULL + "seed = 3\nprompt_as_path = True\n")
    cfg = parse_configs("inference", [path])
    assert cfg.seed == 3 and cfg.prompt_as_path is True  # no parser default replaces a config value
    assert cfg.model.enable_flash_attn is True and cfg.scheduler.cfg_scale == 7.0
    assert parse_configs("train", [write_config(FULL + DATASET + "wandb = True\n", name="t.py")]).wandb is True


def test_flash_attn_reaches_the_model_only(write_config):
    path = write_config(FULL)
    cfg = parse_configs("inference", [path, "--flash-attn", "false"])
    assert cfg.model.enable_flash_attn is False and "enable_flash_attn" not in cfg.prior_encoder


def test_flag_without_section_is_an_error(write_config):
    path = write_config("seed = 1\n")
    with pytest.raises(ConfigError, match="--flash-attn needs a config with a model section"):
        parse_configs("inference", [path, "--flash-attn", "0"])
    with pytest.raises(ConfigError, match="--data-path needs a config with a dataset section"):
        parse_configs("train", [path, "--data-path", "x.csv"])
    with pytest.raises(ConfigError, match="--cfg-scale needs a config with a scheduler section"):
        parse_configs("inference", [path, "--cfg-scale", "2"])


MODES = tuple(DEFAULTS)


@pytest.mark.parametrize("mode", MODES)
def test_every_flag_writes_a_key_its_script_reads(mode):
    known = known_keys(mode)
    for flag in flags_for(scope_of(mode), mode):
        for path in flag.paths:
            assert path.split(".")[0] in known, f"{flag.name} of {mode} writes {path}, which that script never reads"


@pytest.mark.parametrize(
    "mode, flag",
    [("train", "--model-path"), ("train_prior", "--model-path"), ("extract", "--model-path"),
     ("inference", "--audio-fps"), ("train_prior", "--flash-attn"), ("extract", "--flash-attn"),
     ("extract", "--batch-size"), ("extract", "--resolution"), ("extract", "--outputs"), ("train", "--batch-size"),
     ("train", "--resolution"), ("inference", "--outputs"), ("inference", "--data-path")],
)
def test_flags_a_script_does_not_honour_are_refused(mode, flag, write_config, capsys):
    with pytest.raises(SystemExit) as exit_info:
        parse_configs(mode, [write_config("seed = 1\n"), flag, "1"])
    assert exit_info.value.code == 2
    assert f"unrecognized arguments: {flag} 1" in capsys.readouterr().err


@pytest.mark.parametrize("key", ["align", "condition_frame_length", "multi_resolution", "audio_fps",
                                 "num_bucket_build_workers", "model_path"])
def test_config_keys_nothing_reads_are_refused(key, write_config):
    mode = "train" if key in ("num_bucket_build_workers", "model_path") else "inference"
    with pytest.raises(ConfigError, match=f"'{key}' is not read by the {mode} script; remove it"):
        parse_configs(mode, [write_config(f"seed = 1\n{key} = 1\n")])


def test_num_frames_is_top_level_only(write_config):
    path = write_config("seed = 1\n")
    cfg = parse_configs("inference", [path, "--num-frames", "8s", "--image-size", "64", "96"])
    assert cfg.num_frames == "8s" and cfg.image_size == [64, 96] and "dataset" not in cfg


@pytest.mark.parametrize("text", ["true", "True", "t", "yes", "Y", "1"])
def test_str2bool_true(text):
    assert str2bool(text) is True


@pytest.mark.parametrize("text", ["false", "FALSE", "f", "no", "n", "0"])
def test_str2bool_false(text):
    assert str2bool(text) is False


@pytest.mark.parametrize(
    "argv, message",
    [
        (["--flash-attn", "maybe"], "argument --flash-attn: invalid boolean 'maybe'"),
        (["--seed", "x"], "argument --seed: invalid int value: 'x'"),
        (["--batch-size", "0"], "argument --batch-size: must be a positive integer"),
        (["--num-frames", "0"], "argument --num-frames: invalid number of frames '0'"),
        (["--num-frames", "5q"], "argument --num-frames: invalid number of frames '5q'"),
        (["--resolution", "300p"], "argument --resolution: unknown resolution '300p'; valid: 64, 144p"),
        (["--aspect-ratio", "7:5"], "argument --aspect-ratio: unknown aspect ratio '7:5'; valid: 3:8"),
        (["--dtype", "fp8"], "argument --dtype: invalid choice: 'fp8'"),
        (["--verbose", "3"], "argument --verbose: invalid choice: 3"),
        (["--cfg-scale", "high"], "argument --cfg-scale: invalid float value: 'high'"),
        (["--image-size", "64"], "argument --image-size: expected 2 arguments"),
        (["--start-index", "-1"], "argument --start-index: must be >= 0"),
        (["--no-such-flag", "1"], "unrecognized arguments: --no-such-flag 1"),
        (["--lr", "1e-4"], "unrecognized arguments: --lr 1e-4"),  # a training flag given to inference
        (["--loop", "0"], "argument --loop: must be a positive integer"),
        (["--condition-frame-length", "5"], "--condition-frame-length is not supported: each segment of --loop"),
        (["--llm-refine", "True"], "--llm-refine is not supported: prompt refinement through the OpenAI API"),
    ],
)
def test_bad_flag_values_name_the_flag(argv, message, write_config, capsys):
    path = write_config(FULL)
    with pytest.raises(SystemExit) as exit_info:
        parse_configs("inference", [path, *argv])
    assert exit_info.value.code == 2
    assert message in capsys.readouterr().err


def test_training_scope_rejects_inference_flags(write_config, capsys):
    with pytest.raises(SystemExit):
        parse_configs("train_prior", [write_config(FULL), "--prompt", "x"])
    assert "unrecognized arguments: --prompt x" in capsys.readouterr().err


def test_scopes_partition_the_flags():
    inference = {f.name for f in flags_for(INFERENCE)}
    training = {f.name for f in flags_for(TRAINING)}
    extract = {f.name for f in flags_for(EXTRACT)}
    common = {f.name for f in FLAGS if f.scope == COMMON}
    assert common == {"--seed", "--dtype"} and common <= inference & training & extract
    assert inference & training == common | {"--ckpt-path", "--flash-attn", "--layernorm-kernel", "--sp-size"}
    assert "--sp-size" not in {f.name for f in flags_for(TRAINING, "train_prior")} | {
        f.name for f in flags_for(TRAINING, "train_vae")}
    assert "--num-frames" in inference - training and "--lr" in training - inference
    assert not set(UNSUPPORTED_FLAGS) & (inference | training)


def test_missing_config_file(tmp_path):
    with pytest.raises(ConfigError, match="config file not found: .*nope.py"):
        parse_configs("inference", [str(tmp_path / "nope.py")])


def test_broken_config_file(write_config):
    with pytest.raises(ConfigError, match="cannot read config .*broken.py"):
        parse_configs("inference", [write_config("model = dict(\n", name="broken.py")])


def test_non_python_config(write_config):
    with pytest.raises(ConfigError, match=r"config files are Python files \(.py\)"):
        parse_configs("inference", [write_config("a: 1\n", name="config.yaml")])
