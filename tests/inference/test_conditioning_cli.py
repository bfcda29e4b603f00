"""X-conditional generation from ``scripts/inference.py`` (tiny config, CPU): flags, CSV rows, bad input."""

import av
import numpy as np
import pytest

from conftest import REPO
from javisdit import cli
from javisdit.inference.media import write_mp4, write_png, write_wav

TINY = str(REPO / "configs" / "tiny" / "inference.py")
SMALL = ["--image-size", "32", "48", "--num-frames", "9", "--verbose", "0"]  # 9 frames: 0.375 s


def _run(*argv):
    return cli.main("inference", [TINY, *SMALL, *argv])


@pytest.fixture(scope="module")
def media(tmp_path_factory):
    """A 12-frame sounding mp4, a 4-frame one (too short to keep 9), a 1 s wav, a png."""
    folder = tmp_path_factory.mktemp("media")
    frames = np.stack([np.full((32, 48, 3), 20 * i, np.uint8) for i in range(12)])
    wave = (np.random.default_rng(0).standard_normal(8000) * 0.1).astype(np.float32)
    write_mp4(folder / "clip.mp4", frames, 24, wave, 16000)
    write_mp4(folder / "short.mp4", frames[:4], 24, wave[:2667], 16000)
    write_wav(folder / "sound.wav", np.concatenate([wave, wave]), 16000)
    write_png(folder / "image.png", frames[5])
    return folder


def _frames(path):
    with av.open(str(path)) as container:
        return np.stack([f.to_ndarray(format="rgb24") for f in container.decode(video=0)])


@pytest.mark.parametrize("argv", [["--condition", "v2a", "--ref-video", "{clip.mp4}"],
                                  ["--condition", "a2v", "--ref-audio", "{sound.wav}"],
                                  ["--condition", "i2av", "--ref-image", "{image.png}"],
                                  ["--condition", "ia2v", "--ref-image", "{image.png}", "--ref-audio", "{sound.wav}"],
                                  ["--condition", "interpolate", "--ref-video", "{clip.mp4}"],
                                  ["--ref-video", "{clip.mp4}", "--keep-video", "0-0.2", "--keep-audio", "0.1-0.3",
                                   "--edit-strength", "0.5"]])
def test_each_mode_writes_a_sounding_video(media, tmp_path, argv):
    argv = [str(media / a.strip("{}")) if a.startswith("{") else a for a in argv]
    assert _run("--prompt", "a dog barks", "--save-dir", str(tmp_path), *argv) == 0
    assert _frames(tmp_path / "sample_0000.mp4").shape == (9, 32, 48, 3)


def test_csv_rows_carry_their_references_and_bad_rows(media, tmp_path, capsys):
    csv = tmp_path / "rows.csv"
    csv.write_text(f"text,video_path\nfirst,{media / 'clip.mp4'}\nsecond,short.mp4\nthird,{media / 'clip.mp4'}\n")
    (tmp_path / "short.mp4").write_bytes((media / "short.mp4").read_bytes())  # relative to the CSV's folder
    out = tmp_path / "out"
    assert _run("--prompt-path", str(csv), "--condition", "v2a", "--save-dir", str(out)) == 2
    err = capsys.readouterr().err.strip().splitlines()[-1]
    assert err.startswith("error: prompt 1 (") and "short.mp4): the references: holds 0.17 s of video, but the " \
        "condition keeps video up to 0.38 s" in err
    assert sorted(p.name for p in out.iterdir()) == ["sample_0000.mp4"]  # the batch before it; nothing half-written
    assert _run("--prompt-path", str(csv), "--condition", "v2a", "--save-dir", str(out), "--skip-bad-rows") == 0
    assert sorted(p.name for p in out.iterdir()) == ["sample_0000.mp4", "sample_0002.mp4"]
    assert "1 prompt(s) skipped (--skip-bad-rows)" in capsys.readouterr().err


@pytest.mark.parametrize("argv, message", [
    (["--ref-video", "{clip}"], "a reference needs --condition MODE or --keep-video/--keep-audio"),
    (["--condition", "v2a", "--keep-video", "0-1"], "--condition and --keep-video/--keep-audio are exclusive"),
    (["--condition", "v2a", "--ref-video", "missing.mp4"], "--ref-video missing.mp4: no such file"),
    (["--condition", "a2v", "--ref-audio", "{image}"], "prompt 0 ("),
    (["--ref-video", "{clip}", "--keep-video", "1-0"], "video keep range (1.0, 0.0): needs 0 <= start < end"),
    (["--ref-video", "{clip}", "--keep-video", "abc"], "--keep-video 'abc': ranges are START-END in seconds"),
    (["--condition", "v2a", "--ref-video", "{clip}", "--edit-strength", "2"], "--edit-strength must be in [0, 1]"),
    (["--condition", "v2a", "--ref-video", "{clip}", "--ref-image", "{image}"], "are exclusive"),
])
def test_bad_conditioning_is_one_line(media, tmp_path, capsys, argv, message):
    argv = [a.format(clip=media / "clip.mp4", image=media / "image.png") for a in argv]
    out = tmp_path / "out"
    assert _run("--prompt", "x", "--save-dir", str(out), *argv) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert err[-1].startswith("error: ") and message in err[-1]
    assert not out.exists() or list(out.iterdir()) == []


def test_original_flags_point_to_the_new_ones(capsys):
    with pytest.raises(SystemExit) as exit_info:
        cli.main("inference", [TINY, "--prompt", "x", "--reference-path", "a.mp4"])
    assert exit_info.value.code == 2
    assert "--reference-path is not supported: use --condition with --ref-video" in capsys.readouterr().err


def test_help_explains_the_flags(capsys):
    with pytest.raises(SystemExit):
        cli.main("inference", ["--help"])
    text = " ".join(capsys.readouterr().out.split())
    for flag in ("--condition", "--ref-video", "--ref-audio", "--ref-image", "--keep-video", "--keep-audio",
                 "--edit-strength", "--skip-bad-rows"):
        assert flag in text
    assert "v2a (a video -> its soundtrack)" in text


def test_loop_writes_one_continuous_mp4(media, tmp_path):
    from javisdit.inference.extension import extension_length

    assert _run("--prompt", "a dog barks", "--save-dir", str(tmp_path / "a"), "--loop", "3") == 0
    frames, _ = extension_length(9, 3)
    assert frames == 9 + 2 * 8 and _frames(tmp_path / "a" / "sample_0000.mp4").shape == (frames, 32, 48, 3)
    assert _run("--prompt", "a dog barks", "--save-dir", str(tmp_path / "b"), "--loop", "2", "--condition", "extend",
                "--ref-video", str(media / "clip.mp4")) == 0
    assert _frames(tmp_path / "b" / "sample_0000.mp4").shape == (9 + 8, 32, 48, 3)


@pytest.mark.parametrize("argv, message", [
    (["--condition", "extend", "--ref-video", "{clip}"],
     "--condition extend continues a reference: give --ref-video and --loop N"),
    (["--loop", "2", "--cfg-options", "audio_only=True"], "--loop extends a sounding video; this config is audio-only"),
])
def test_bad_extension_is_one_line(media, tmp_path, capsys, argv, message):
    argv = [a.format(clip=media / "clip.mp4") for a in argv]
    assert _run("--prompt", "x", "--save-dir", str(tmp_path / "out"), *argv) == 2
    assert message in capsys.readouterr().err.strip().splitlines()[-1]


def test_benchmark_script_times_every_mode(tmp_path):
    import importlib.util
    import json

    spec = importlib.util.spec_from_file_location("conditioning_bench", REPO / "scripts" / "benchmarks" / "conditioning.py")
    bench = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(bench)
    assert bench.main(["--skip-full", "--repeats", "1", "--json", str(tmp_path / "out.json")]) == 0
    result = json.loads((tmp_path / "out.json").read_text())
    assert set(bench.MODES) <= set(result["tiny"]) and "full" not in result
    assert all(result["tiny"][name] > 0 for name in bench.MODES)
    assert result["tiny"]["clip"] == {"frames": 17, "height": 144, "width": 256}


def test_wrong_kind_of_reference_is_one_line(media, tmp_path, capsys):
    out = tmp_path / "out"
    assert _run("--prompt", "x", "--save-dir", str(out), "--condition", "v2a", "--ref-video", str(media / "sound.wav")) == 2
    err = capsys.readouterr().err.strip().splitlines()[-1]
    assert err.startswith("error: prompt 0 (") and "sound.wav: cannot read video" in err
    csv = tmp_path / "rows.csv"  # a row with an image where the mode needs a video
    csv.write_text(f"text,image_path\nfirst,{media / 'image.png'}\n")
    assert _run("--prompt-path", str(csv), "--save-dir", str(out), "--condition", "v2a") == 2
    err = capsys.readouterr().err.strip().splitlines()[-1]
    assert "prompt 0 (" in err and "image.png): the references: holds 0.04 s of video, but the condition keeps " \
        "video up to 0.38 s" in err
    assert not out.exists() or list(out.iterdir()) == []
