"""Shared test set-up: offline hub, markers, paths and a runner for the scripts."""

from __future__ import annotations

import os

os.environ["HF_HUB_OFFLINE"] = "1"  # before anything imports huggingface_hub: tests never download
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")

import subprocess  # noqa: E402
import sys  # noqa: E402
from pathlib import Path  # noqa: E402

import pytest  # noqa: E402

REPO = Path(__file__).resolve().parents[1]
V01_CONFIGS = REPO / "configs" / "javisdit-v0-1"


def pytest_collection_modifyitems(config, items):
    import torch

    if torch.cuda.is_available():
        return
    skip = pytest.mark.skip(reason="needs a CUDA device")
    for item in items:
        if "gpu" in item.keywords:
            item.add_marker(skip)


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
def write_config(tmp_path):
    """Write a config file from its text and return its path."""

    def write(text: str, name: str = "config.py") -> str:
        path = tmp_path / name
        path.write_text(text)
        return str(path)

    return write
