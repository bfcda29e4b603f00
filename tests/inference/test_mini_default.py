"""JavisDiT-mini as shipped: the weights in assets/javisdit-mini and the README's first command, which
generates with them offline."""

import re
import shlex
import subprocess
import sys

from safetensors import safe_open

from conftest import REPO, readme_setup_commands
from javisdit import cli
from javisdit.config import parse_configs
from javisdit.datasets.bouncing import COLOURS, MATERIALS
from javisdit.eval.media import load_sample
from javisdit.eval.sync_bench import clip_scores
from javisdit.training.mini_recipe import RELEASE_PARTS

MINI = REPO / "assets" / "javisdit-mini"
CONFIG = REPO / "configs" / "mini" / "inference.py"


def test_shipped_weights_are_fp16_safetensors_within_30_mb():
    assert sorted(p.name for p in MINI.iterdir() if not p.name.startswith(".")) == sorted(RELEASE_PARTS)
    files = sorted(MINI.rglob("*.safetensors"))
    assert {f.relative_to(MINI).parts[0] for f in files} == set(RELEASE_PARTS)  # every part has its weights
    for file in files:
        with safe_open(str(file), framework="pt") as f:
            dtypes = {f.get_slice(k).get_dtype() for k in f.keys()}
        assert dtypes <= {"F16", "I64", "I32", "BOOL"}, (file, dtypes)
    total = sum(p.stat().st_size for p in MINI.rglob("*") if p.is_file())
    assert total <= 30 * 1024**2, f"{total / 1024**2:.1f} MB"
    # nothing else is tracked beside the weights: no pickles
    assert not [p for p in MINI.rglob("*") if p.suffix in (".pt", ".pth", ".bin", ".ckpt")]


def test_shipped_weights_load_strictly_and_two_steps_generate(tmp_path, monkeypatch):
    """The inference config builds every part from the shipped folders (the loader refuses any missing,
    unexpected or mis-shaped key), and a 2-step generation writes a 51-frame 64x64 mp4 with its sound."""
    monkeypatch.chdir(REPO)  # the config's paths are relative to the repository root, as in the README
    assert cli.main("inference", [str(CONFIG), "--num-sampling-steps", "2", "--save-dir", str(tmp_path),
                                  "--prompt", "a small green glass ball bounces slowly against a navy background",
                                  "--verbose", "0"]) == 0
    sample = load_sample(tmp_path / "sample_0000.mp4")
    assert sample.frames.shape == (51, 64, 64, 3) and sample.fps == 24
    assert sample.sample_rate == 16000 and abs(sample.audio.shape[-1] / 16000 - 51 / 24) < 0.07


def _first_command() -> list[str]:
    command = readme_setup_commands()[0]
    install, run = command.split(" && ", 1)
    assert install == "pip install -e ."
    argv = shlex.split(run)
    assert argv[:3] == ["python", "scripts/inference.py", "configs/mini/inference.py"]
    return argv


def test_readme_first_command_draws_the_prompt(tmp_path):
    """The README's first command, run as written (only the output folder moved from the config's
    samples/mini/, which the README names): a ball of the prompt's colour is found in every frame, its
    impacts are audible, in step with the bounces, and sound like the prompt's material."""
    argv = _first_command()
    assert parse_configs("inference", argv[2:]).save_dir == "./samples/mini/"
    assert "`samples/mini/sample_0000.mp4`" in (REPO / "README.md").read_text()
    prompt = argv[argv.index("--prompt") + 1]
    colour = [c for c in COLOURS if re.search(rf"\b{c}\b", prompt)]
    material = [m for m in MATERIALS if re.search(rf"\b{m}\b", prompt)]
    assert len(colour) == 1 and len(material) == 1, prompt  # a reader can check the colour
    result = subprocess.run([sys.executable, *argv[1:], "--save-dir", str(tmp_path)], cwd=REPO,
                            capture_output=True, text=True, timeout=300, check=False)
    assert result.returncode == 0, result.stderr[-2000:]
    sample = load_sample(tmp_path / "sample_0000.mp4")
    assert sample.frames.shape == (51, 64, 64, 3)
    scores = clip_scores(sample.frames, sample.fps, sample.audio.mean(0), sample.sample_rate, colour, material)
    assert scores["colour"] >= 0.9, scores
    assert len(scores["video_times"]) >= 2, scores  # it bounces
    assert scores["f1_2f"] >= 0.7 and scores["material"] >= 0.5, scores
