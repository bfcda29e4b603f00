"""``scripts/inference.py`` end to end on the tiny config (random weights, CPU)."""

import os
import subprocess
import sys

import av
import numpy as np
import pytest

from conftest import REPO
from javisdit import cli

TINY = str(REPO / "configs" / "tiny" / "inference.py")
SMALL = ["--image-size", "32", "48", "--num-frames", "9", "--verbose", "0"]  # 9 frames of 32x48: fast


def _run(*argv):
    return cli.main("inference", [TINY, *SMALL, *argv])


def _video(path):
    with av.open(str(path)) as container:
        video, audio = container.streams.video[0], container.streams.audio[0]
        frames = np.stack([f.to_ndarray(format="rgb24") for f in container.decode(video=0)])
        return dict(codec=video.codec_context.name, audio_codec=audio.codec_context.name, rate=audio.rate,
                    video_s=float(video.duration * video.time_base), audio_s=float(audio.duration * audio.time_base),
                    frames=frames)


def test_prompts_to_mp4_and_rerun_skips(tmp_path):
    out = tmp_path / "out"
    assert _run("--prompt", "a dog barks at a train", "rain on a tin roof", "--save-dir", str(out)) == 0
    files = sorted(p.name for p in out.iterdir())
    assert files == ["sample_0000.mp4", "sample_0001.mp4"]
    import torch

    assert torch.is_grad_enabled()  # the run leaves the process as it found it
    info = _video(out / "sample_0000.mp4")
    assert info["codec"] == "h264" and info["frames"].shape == (9, 32, 48, 3)
    assert info["audio_codec"] == "aac" and info["rate"] == 16000
    assert abs(info["audio_s"] - info["video_s"]) <= 1024 / 16000
    stamps = {p: p.stat().st_mtime_ns for p in out.iterdir()}
    assert _run("--prompt", "a dog barks at a train", "rain on a tin roof", "--save-dir", str(out)) == 0
    assert {p: p.stat().st_mtime_ns for p in out.iterdir()} == stamps  # finished files are skipped


def test_txt_list_with_start_index_and_several_samples(tmp_path):
    prompts = tmp_path / "prompts.txt"
    prompts.write_text("first\nsecond\nthird\n")
    assert _run("--prompt-path", str(prompts), "--start-index", "1", "--num-sample", "2",
                "--save-dir", str(tmp_path / "out")) == 0
    assert sorted(p.name for p in (tmp_path / "out").iterdir()) == [
        "sample_0001-0.mp4", "sample_0001-1.mp4", "sample_0002-0.mp4", "sample_0002-1.mp4"]


def test_csv_list_named_after_prompts(tmp_path):
    prompts = tmp_path / "prompts.csv"
    prompts.write_text('text,audio_text\n"a cat/dog, meowing",meow\n')
    assert _run("--prompt-path", str(prompts), "--prompt-as-path", "--sample-name", "t_",
                "--save-dir", str(tmp_path / "out")) == 0
    assert [p.name for p in (tmp_path / "out").iterdir()] == ["t_a cat_dog_ meowing.mp4"]


def test_audio_only_and_single_frame(tmp_path):
    assert _run("--prompt", "a bell rings", "--save-dir", str(tmp_path / "wav"), "--cfg-options", "audio_only=True",
                "model.only_infer_audio=True", "model.train_st_prior_attn=False", "model.train_va_cross_attn=False") == 0
    import soundfile

    data, rate = soundfile.read(tmp_path / "wav" / "sample_0000.wav")
    assert rate == 16000 and data.shape == (round(9 / 24 * 16000),)
    assert cli.main("inference", [TINY, "--image-size", "32", "48", "--num-frames", "1", "--verbose", "0",
                                  "--prompt", "a red car", "--save-dir", str(tmp_path / "png")]) == 0
    assert [p.name for p in (tmp_path / "png").iterdir()] == ["sample_0000.png"]


def test_same_seed_same_sample(tmp_path):
    for name in ("a", "b"):
        assert _run("--prompt", "waves on a beach", "--seed", "7", "--save-dir", str(tmp_path / name)) == 0
    np.testing.assert_array_equal(_video(tmp_path / "a" / "sample_0000.mp4")["frames"],
                                  _video(tmp_path / "b" / "sample_0000.mp4")["frames"])


@pytest.mark.parametrize(
    "argv, message",
    [
        (["--prompt-path", "missing.txt"], "error: --prompt-path: no such file: missing.txt"),
        (["--prompt-path", "{empty}"], "the file holds no prompts"),
        (["--prompt-path", "{nocol}"], "the CSV has no 'text' column"),
        (["--prompt", ""], "error: prompt 0 is empty"),
        (["--prompt", "x", "--save-dir", "{file}/sub"], "is not writable"),
        (["--prompt", "x", "--cfg-options", "model.from_pretrained=JavisDiT/JavisDiT-v0.1-jav"],
         "error: model.from_pretrained: the weights 'JavisVerse/JavisDiT-v0.1-jav' are not in the local Hugging Face "
         "cache"),
    ],
)
def test_bad_input_is_one_line_and_writes_nothing(tmp_path, capsys, argv, message):
    (tmp_path / "empty.txt").write_text("\n")
    (tmp_path / "nocol.csv").write_text("caption\nx\n")
    (tmp_path / "file").write_text("")
    argv = [a.format(empty=tmp_path / "empty.txt", nocol=tmp_path / "nocol.csv", file=tmp_path / "file") for a in argv]
    out = tmp_path / "out"
    if "--save-dir" not in argv:
        argv += ["--save-dir", str(out)]
    assert _run(*argv) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert message in err[-1] and err[-1].startswith("error: ")
    assert not out.exists() or list(out.iterdir()) == []


@pytest.mark.parametrize("argv, message", [(["--num-frames", "0"], "argument --num-frames: invalid number of frames '0'"),
                                           (["--resolution", "300p"], "argument --resolution: unknown resolution"),
                                           (["--aspect-ratio", "7:5"], "argument --aspect-ratio: unknown aspect ratio")])
def test_bad_sizes(capsys, argv, message):
    with pytest.raises(SystemExit) as exit_info:
        cli.main("inference", [TINY, "--prompt", "x", *argv])
    assert exit_info.value.code == 2 and message in capsys.readouterr().err


def test_unknown_aspect_ratio_for_a_resolution(capsys, tmp_path):
    assert cli.main("inference", [TINY, "--prompt", "x", "--resolution", "240p", "--aspect-ratio", "0.57",
                                  "--save-dir", str(tmp_path)]) == 2
    assert "unknown aspect ratio '0.57' for resolution '240p'; valid: 3:8" in capsys.readouterr().err


@pytest.mark.dist
def test_torchrun_two_processes_write_what_one_writes(tmp_path):
    prompts = tmp_path / "p.txt"
    prompts.write_text("a dog barks\nrain falls\na bell rings\n")
    common = [TINY, *SMALL, "--prompt-path", str(prompts), "--start-index", "0"]
    env = {**os.environ, "PYTHONPATH": str(REPO), "OMP_NUM_THREADS": "1"}
    for name, launcher in (("one", []), ("two", ["-m", "torch.distributed.run", "--nproc_per_node", "2",
                                                  "--master_port", "29531"])):
        script = [str(REPO / "scripts" / "inference.py")]
        result = subprocess.run([sys.executable, *launcher, *script, *common, "--save-dir", str(tmp_path / name)],
                                env=env, capture_output=True, text=True, timeout=300)
        assert result.returncode == 0, result.stderr[-2000:]
    one, two = sorted(p.name for p in (tmp_path / "one").iterdir()), sorted(p.name for p in (tmp_path / "two").iterdir())
    assert one == two == ["sample_0000.mp4", "sample_0001.mp4", "sample_0002.mp4"]
    for name in one:
        a, b = _video(tmp_path / "one" / name)["frames"], _video(tmp_path / "two" / name)["frames"]
        assert np.abs(a.astype(int) - b.astype(int)).mean() < 1.0


def test_captions_are_encoded_once_per_batch(tmp_path, monkeypatch):
    from javisdit.models.text.t5 import T5TextEncoder

    calls = []
    original = T5TextEncoder.encode
    monkeypatch.setattr(T5TextEncoder, "encode", lambda self, *a, **k: calls.append(1) or original(self, *a, **k))
    assert _run("--prompt", "a bell rings", "--num-sample", "3", "--save-dir", str(tmp_path)) == 0
    assert len(list(tmp_path.iterdir())) == 3 and len(calls) == 1


def test_inference_ends_without_a_barrier(tmp_path, monkeypatch):
    """A final barrier lets one slow process time out the others (NCCL's watchdog): each process just
    finishes its own share."""
    import torch.distributed

    import javisdit.distributed
    from javisdit.inference import pipeline

    def refuse(*args, **kwargs):
        raise AssertionError("inference waited on a barrier")

    monkeypatch.setattr(javisdit.distributed, "barrier", refuse)
    monkeypatch.setattr(pipeline, "barrier", refuse, raising=False)  # in case it is imported by name
    monkeypatch.setattr(torch.distributed, "barrier", refuse)
    assert _run("--prompt", "a bell rings", "--save-dir", str(tmp_path)) == 0
    assert [p.name for p in tmp_path.iterdir()] == ["sample_0000.mp4"]


def test_fp16_run_encodes_captions_with_a_bf16_t5(tmp_path, monkeypatch):
    import torch

    from javisdit.models.text.t5 import T5TextEncoder

    seen = []
    original = T5TextEncoder.encode

    def encode(self, *args, **kwargs):
        out = original(self, *args, **kwargs)
        seen.append((self.model.shared.weight.dtype, out["y"].dtype))
        return out

    monkeypatch.setattr(T5TextEncoder, "encode", encode)
    assert _run("--prompt", "a bell rings", "--dtype", "fp16", "--save-dir", str(tmp_path)) == 0
    assert seen == [(torch.bfloat16, torch.bfloat16)]
    info = _video(tmp_path / "sample_0000.mp4")
    assert info["frames"].shape == (9, 32, 48, 3) and info["frames"].std() > 1  # not a flat (NaN) picture
    assert info["audio_codec"] == "aac"
