"""--cfg-options: typed dotted overrides, and clear errors for unknown paths and bad values."""

import pytest

from javisdit.config import parse_configs, parse_value
from javisdit.errors import ConfigError

BASE = """
seed = 42
fps = 24
num_frames = "4s"
resolution = "240p"
flow = None
model = dict(type="VASTDiT3-XL/2", qk_norm=True, audio_patch_size=(4, 1), weight_init_from=[])
scheduler = dict(type="rflow", cfg_scale=7.0, num_sampling_steps=30)
"""
TRAIN_BASE = """
seed = 42
model = dict(type="VASTDiT3-XL/2", qk_norm=True, audio_patch_size=(4, 1), weight_init_from=[])
audio_cfg = dict(preprocessing=dict(audio=dict(sampling_rate=16000)))
bucket_config = {"144p": {51: (1.0, 16)}}
"""


@pytest.fixture
def path(write_config):
    return write_config(BASE)


@pytest.fixture
def train_path(write_config):
    return write_config(TRAIN_BASE, name="train.py")


def options(path, *items, mode="inference"):
    return parse_configs(mode, [path, "--cfg-options", *items])


@pytest.mark.parametrize(
    "text, value",
    [("2", 2), ("2.5", 2.5), ("1e-4", 1e-4), ("true", True), ("No", False), ("None", None), ("null", None),
     ("[1, 2]", [1, 2]), ("(4,1)", (4, 1)), ("{'a': 1}", {"a": 1}), ("'quoted'", "quoted"),
     ("./checkpoints/x", "./checkpoints/x"), ("hpcai-tech/OpenSora-VAE-v1.2", "hpcai-tech/OpenSora-VAE-v1.2")],
)
def test_parse_value(text, value):
    assert parse_value(text) == value


def test_nested_and_top_level(path, train_path):
    cfg = options(path, "model.depth=2", "model.hidden_size=64", "scheduler.cfg_scale=5", "seed=7",
                  "model.qk_norm=no", "model.audio_patch_size=[2,1]")
    assert cfg.model.depth == 2 and cfg.model.hidden_size == 64
    assert cfg.scheduler.cfg_scale == 5.0 and isinstance(cfg.scheduler.cfg_scale, float)
    assert cfg.seed == 7
    assert cfg.model.qk_norm is False
    assert cfg.model.audio_patch_size == (2, 1)  # keeps the config's tuple type
    cfg = options(train_path, "audio_cfg.preprocessing.audio.sampling_rate=22050", "model.qk_norm=no",
                  "model.audio_patch_size=[2,1]", "bucket_config.144p.51=(0.5,8)", mode="train")
    assert cfg.audio_cfg.preprocessing.audio.sampling_rate == 22050
    assert cfg.model.qk_norm is False
    assert cfg.model.audio_patch_size == (2, 1)  # keeps the config's tuple type
    assert cfg.bucket_config["144p"][51] == (0.5, 8)


def test_guidance_scale_per_modality(path):
    cfg = options(path, "scheduler.cfg_scale={'video': 1, 'audio': 7.5}", "scheduler.cfg_interval=[0.0,0.5]")
    assert cfg.scheduler.cfg_scale == {"video": 1.0, "audio": 7.5}
    assert all(isinstance(v, float) for v in cfg.scheduler.cfg_scale.values())
    assert cfg.scheduler.cfg_interval == [0.0, 0.5]  # a module argument: open
    with pytest.raises(ConfigError, match="expected a number, or one per modality"):
        options(path, "scheduler.cfg_scale={'video': 'high'}")
    with pytest.raises(ConfigError, match="expected an integer"):
        options(path, "seed={'video': 2}")  # only the guidance scales take one per modality


def test_guidance_per_modality_replaces_either_form(write_config):
    # the mini config holds a pair and one scale; a per-modality override replaces them, and back again
    path = write_config(BASE.replace("cfg_scale=7.0,", "cfg_scale=7.0, cfg_interval=(0.0, 0.5), sync_guidance=0.0,"))
    cfg = options(path, "scheduler.cfg_interval={'video': [0.0, 0.5], 'audio': None}",
                  "scheduler.sync_guidance={'audio': 2}")
    assert cfg.scheduler.cfg_interval == {"video": (0.0, 0.5), "audio": None}
    assert cfg.scheduler.sync_guidance == {"audio": 2.0}
    held = write_config(BASE.replace("cfg_scale=7.0,", "cfg_scale={'video': 7.0, 'audio': 7.0}, "
                                     "cfg_interval={'video': (0.0, 0.5), 'audio': None},"), name="held.py")
    cfg = options(held, "scheduler.cfg_interval=[0.2,0.8]", "scheduler.cfg_scale=5")
    assert cfg.scheduler.cfg_interval == (0.2, 0.8) and cfg.scheduler.cfg_scale == 5.0
    with pytest.raises(ConfigError, match=r"expected a pair \[low,high\], or one per modality"):
        options(path, "scheduler.cfg_interval={'video': [0.0, 0.5, 1.0]}")
    with pytest.raises(ConfigError, match="expected a number, or one per modality"):
        options(path, "scheduler.sync_guidance={'audio': 'strong'}")


def test_text_slots_keep_text(path):
    cfg = options(path, "resolution=256", "num_frames=102", "flow=5")
    assert cfg.resolution == "256" and cfg.num_frames == "102"
    assert cfg.flow == 5  # a None slot takes the parsed value


def test_script_default_keys_are_known(path, train_path):
    assert options(path, "verbose=0").verbose == 0
    assert options(train_path, "lr=2e-5", mode="train").lr == 2e-5


@pytest.mark.parametrize(
    "item, message",
    [("model.dept=2", "model: VASTDiT3-XL/2 has no argument 'dept'; valid: "),
     ("scheduler.cfg_scael=2", "scheduler: rflow has no argument 'cfg_scael'; valid: ")],
)
def test_misspelt_model_arguments_are_refused_while_parsing(path, item, message):
    with pytest.raises(ConfigError, match=message):
        options(path, item)


def test_options_win_over_flags(path):
    cfg = parse_configs("inference", [path, "--cfg-scale", "3", "--cfg-options", "scheduler.cfg_scale=4"])
    assert cfg.scheduler.cfg_scale == 4.0


@pytest.mark.parametrize(
    "item, message",
    [
        ("modle.depth=2", "--cfg-options modle.depth: the config has no section 'modle'"),
        ("seed.x=1", "the config has no section 'seed'"),
        ("sed=1", "--cfg-options sed: unknown key 'sed' in the config"),
        ("lr=1e-4", "unknown key 'lr' in the config"),  # a training key in an inference run
        ("seed=abc", "--cfg-options seed=abc: expected an integer"),
        ("seed=1.5", "expected an integer"),
        ("model.qk_norm=maybe", "--cfg-options model.qk_norm=maybe: expected a boolean"),
        ("scheduler.cfg_scale=high", "expected a number"),
        ("model.weight_init_from=abc", "expected a list"),
        ("model", "expected KEY=VALUE"),
        ("=3", "expected KEY=VALUE"),
        ("model..depth=2", "expected KEY=VALUE"),
    ],
)
def test_errors(path, item, message):
    with pytest.raises(ConfigError, match=message.replace("(", r"\(").replace(")", r"\)").replace(".", r"\.")):
        options(path, item)


@pytest.mark.parametrize(
    "item, message",
    [("audio_cfg.preprocessing.audoi.x=1", "the config has no section 'audio_cfg.preprocessing.audoi'"),
     ("audio_cfg.preprocessing.audio.rate=1", "unknown key 'rate' in section 'audio_cfg.preprocessing.audio'")],
)
def test_errors_in_nested_plain_dicts(train_path, item, message):
    with pytest.raises(ConfigError, match=message.replace(".", r"\.")):
        options(train_path, item, mode="train")
