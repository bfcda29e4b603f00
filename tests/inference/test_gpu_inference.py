"""Tiny bf16 inference end to end on CUDA (``gpu``: skipped without a CUDA device)."""

from __future__ import annotations

import av
import pytest

from javisdit.cli import main

pytestmark = pytest.mark.gpu


def test_tiny_bf16_inference_writes_a_sounding_video(tmp_path, repo):
    code = main("inference", [str(repo / "configs/tiny/inference.py"), "--dtype", "bf16", "--save-dir", str(tmp_path),
                              "--prompt", "a dog barks at a passing train", "--flash-attn", "true"])
    assert code == 0
    with av.open(str(tmp_path / "sample_0000.mp4")) as container:
        kinds = sorted(stream.type for stream in container.streams)
        frames = sum(1 for _ in container.decode(video=0))
    assert kinds == ["audio", "video"] and frames == 17
