"""Shared test set-up: offline hub, markers, paths and a runner for the scripts."""

from __future__ import annotations

import os

os.environ["HF_HUB_OFFLINE"] = "1"  # before anything imports huggingface_hub: tests never download
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")

import contextlib  # noqa: E402
import logging  # noqa: E402
import re  # noqa: E402
import subprocess  # noqa: E402
import sys  # noqa: E402
from collections.abc import Sequence  # noqa: E402
from pathlib import Path  # noqa: E402

import numpy as np  # noqa: E402
import pytest  # noqa: E402
import torch  # noqa: E402

REPO = Path(__file__).resolve().parents[1]
V01_CONFIGS = REPO / "configs" / "javisdit-v0-1"


def readme_setup_commands() -> list[str]:
    """The README's set-up commands, in order: the ```bash blocks of its "Set-up" section."""
    setup = (REPO / "README.md").read_text().split("## Set-up", 1)[1].split("\n## ", 1)[0]
    return [block.strip() for block in re.findall(r"```bash\n(.*?)```", setup, flags=re.DOTALL)]


def pytest_collection_modifyitems(config, items):
    import torch

    if torch.cuda.is_available():
        return
    skip = pytest.mark.skip(reason="needs a CUDA device")
    for item in items:
        if "gpu" in item.keywords:
            item.add_marker(skip)


@contextlib.contextmanager
def logging_kept():
    """Scripts run in-process call ``setup_logging()``, which gives the ``javisdit`` logger its own
    handlers, a level and ``propagate=False`` (so pytest's ``caplog`` would see nothing afterwards).
    Inside this block such changes are undone on exit: handlers added are removed and closed."""
    logger = logging.getLogger("javisdit")
    handlers, level, propagate, disabled = list(logger.handlers), logger.level, logger.propagate, logger.disabled
    try:
        yield
    finally:
        for handler in [h for h in logger.handlers if h not in handlers]:
            logger.removeHandler(handler)
            handler.close()
        logger.handlers[:] = handlers
        logger.setLevel(level)
        logger.propagate, logger.disabled = propagate, disabled


@pytest.fixture(autouse=True)
def _restore_logging():
    """Every test gets the logger state it found (module-scoped fixtures that run scripts use
    ``logging_kept`` themselves: they run before this snapshot)."""
    with logging_kept():
        yield


@pytest.fixture(scope="module")
def restore_process_state():
    """For modules that train in-process (``pytestmark = pytest.mark.usefixtures(...)``): training sets
    torch's thread count and seeds its generator; give them back to the other tests."""
    threads = torch.get_num_threads()
    with torch.random.fork_rng(devices=[]):
        yield
    torch.set_num_threads(threads)


@pytest.fixture
def refuse_loading(monkeypatch):
    """``refuse_loading(*modules)``: every way to weights becomes an error, in the loader and in the given
    modules that imported its functions by name (to show that a constructor reads no weights)."""
    from javisdit.models import loading

    def refuse(*args, **kwargs):
        raise AssertionError("the constructor read weights")

    def apply(*modules) -> None:
        for module in (loading, *modules):
            for name in ("read_state_dict", "resolve_weights", "load_state_dict_checked"):
                monkeypatch.setattr(module, name, refuse, raising=module is loading)

    return apply


@pytest.fixture(scope="session")
def repo() -> Path:
    return REPO


@pytest.fixture
def run_script():
    """Run ``scripts/<name>`` in a subprocess from the repository root; returns the CompletedProcess."""

    def run(name: str, *args: str, timeout: float = 120) -> subprocess.CompletedProcess:
        env = {**os.environ, "PYTHONPATH": str(REPO)}
        return subprocess.run(
            [sys.executable, str(REPO / "scripts" / name), *args],
            cwd=REPO, env=env, capture_output=True, text=True, timeout=timeout,
        )

    return run


@pytest.fixture
def one_thread():
    """For modules of tiny tensors (``pytestmark = pytest.mark.usefixtures("one_thread")``): a second torch
    thread only adds waiting there (badly so on shared cores); the thread count is restored after."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


@pytest.fixture
def write_config(tmp_path):
    """Write a config file from its text and return its path."""

    def write(text: str, name: str = "config.py") -> str:
        path = tmp_path / name
        path.write_text(text)
        return str(path)

    return write


MANIFESTS = Path(__file__).parent / "data" / "manifests"  # copies of ../shared/spec/manifests


def read_manifest(name: str) -> dict[str, tuple[int, ...]]:
    """State-dict keys -> shapes of a published checkpoint, in checkpoint order."""
    shapes = {}
    for line in (MANIFESTS / f"{name}.tsv").read_text().splitlines():
        if line and not line.startswith("#"):
            key, shape = line.split("\t")[:2]
            shapes[key] = tuple(int(v) for v in shape.strip("[]").split(",") if v)
    return shapes


TINY_VA = dict(type="VASTDiT3-tiny")
TINY_PRIOR = dict(text_tower="tiny", spatial_token_num=4, temporal_token_num=4, out_dim=16, hidden_size=32, nhead=2,
                  num_encoder_layers=1, num_decoder_layers=1, va_num_heads=2)


@pytest.fixture
def tiny_inputs():
    """Inputs of the tiny VASTDiT3 forward for a batch of B (odd video size on purpose)."""

    def make(B: int = 2, T: int = 5, H: int = 9, W: int = 11, Ta: int = 8, M: int = 16, L: int = 8, seed: int = 0):
        g = torch.Generator().manual_seed(seed)
        mask = torch.ones(B, L, dtype=torch.long)
        mask[0, L // 2:] = 0  # a shorter caption
        return dict(
            x={"video": torch.randn(B, 4, T, H, W, generator=g), "audio": torch.randn(B, 8, Ta, M, generator=g)},
            timestep=torch.linspace(900.0, 100.0, B),
            y=torch.randn(B, 1, L, 32, generator=g),
            mask=mask,
            fps=torch.full((B,), 24.0),
            height=torch.full((B,), float(H * 8)),
            width=torch.full((B,), float(W * 8)),
            spatial_prior=torch.randn(B, 32, 128, generator=g),
            temporal_prior=torch.randn(B, 32, 128, generator=g),
        )

    return make


def take_sample(inputs, i):
    out = {k: v[i : i + 1] for k, v in inputs.items() if k != "x"}
    out["x"] = {k: v[i : i + 1] for k, v in inputs["x"].items()}
    return out


def randomise_sync_modules(model):
    """Give the zero-initialised sync modules weights, so that they act."""
    g = torch.Generator().manual_seed(1)
    with torch.no_grad():
        for name, p in model.named_parameters():
            if name.startswith(("video_st_prior_blocks", "audio_st_prior_blocks", "va_cross_blocks")):
                p.copy_(torch.randn(p.shape, generator=g) * 0.1)


@pytest.fixture(scope="session")
def synthetic_data(tmp_path_factory):
    """Three synthetic sounding clips (2.2 s, 24 fps, 144x256) and their stage CSVs."""
    from javisdit.datasets.synthetic import make_synthetic_dataset

    return make_synthetic_dataset(tmp_path_factory.mktemp("synthetic"), num_clips=3, seconds=2.2, seed=0)


def spec_audio_a(num_samples: int = 64000) -> np.ndarray:
    """Input A of ``EVAL_MODELS.md`` §2.4 (16 kHz): 0.5 sin(2π 440 t) + 0.2 sin(2π(100 t + 900 t²)) + 0.25 from
    sample 32000 on; computed in float64, returned as float32 [num_samples]."""
    n = np.arange(num_samples)
    t = n / 16000
    x = 0.5 * np.sin(2 * np.pi * 440 * t) + 0.2 * np.sin(2 * np.pi * (100 * t + 900 * t**2)) + 0.25 * (n >= 32000)
    return x.astype(np.float32)


def spec_video_v(frames: int | Sequence[int] = 96, height: int = 240, width: int = 426) -> np.ndarray:
    """Video V of ``EVAL_MODELS.md`` §1.3: v[t, y, x, c] = (7x + 13y + 29t + 71c) mod 256, uint8 RGB
    [T, H, W, 3]; ``frames`` is a count or the frame indices t to render."""
    t = np.arange(frames) if isinstance(frames, int) else np.asarray(frames)
    t, y, x, c = t[:, None, None, None], np.arange(height)[:, None, None], np.arange(width)[:, None], np.arange(3)
    return ((7 * x + 13 * y + 29 * t + 71 * c) % 256).astype(np.uint8)

