"""``scripts/eval/javisbench.py`` end to end: tiny random networks behind the real loaders, on the samples
the README's first command writes (tiny config, CPU) and on synthetic ground-truth clips."""

import json
import math
import shutil

import pandas as pd
import pytest
import torch
from conftest import REPO, logging_kept

from javisdit import cli as inference_cli
from javisdit.eval import cli
from javisdit.eval.groups import ALL_KEYS

pytestmark = [pytest.mark.slow, pytest.mark.usefixtures("restore_process_state")]

PROMPTS = ["a red ball bounces and clicks", "rain on a tin roof", "a dog barks at a passing train"]


@pytest.fixture(scope="module")
def checkpoints(tmp_path_factory):
    """Random tiny checkpoints of all six networks, under their published names and file layouts."""
    from javisdit.eval.networks import audioclip, cavp, clap, clip, i3d, imagebind

    folder = tmp_path_factory.mktemp("eval_checkpoints")
    for module, name in ((i3d, "i3d"), (audioclip, "audioclip"), (imagebind, "imagebind"), (cavp, "cavp"),
                         (clip, "clip"), (clap, "clap")):
        torch.manual_seed(0)
        getattr(module, f"write_random_{name}")(folder, size="tiny", seed=0)
    return folder


@pytest.fixture(scope="module")
def bench(tmp_path_factory, synthetic_data):
    """The README's first command for three prompts, and a benchmark CSV naming them (with ground truth
    from the synthetic clips and category columns)."""
    root = tmp_path_factory.mktemp("bench")
    samples = root / "samples"
    prompts = root / "prompts.txt"
    prompts.write_text("\n".join(PROMPTS) + "\n")
    config = str(REPO / "configs" / "tiny" / "inference.py")
    with logging_kept():  # module-scoped: runs outside the per-test logging snapshot
        assert inference_cli.main("inference", [config, "--prompt-path", str(prompts), "--save-dir", str(samples),
                                                "--verbose", "0"]) == 0
    clips = pd.read_csv(synthetic_data["stage3_jav"])
    base = synthetic_data["stage3_jav"].parent
    table = pd.DataFrame(dict(
        text=PROMPTS, audio_text=["clicks", "rain", "barking"],
        path=[str(base / p) for p in clips["path"]], audio_path=[str(base / p) for p in clips["audio_path"]],
        cat0_ind=["0", "0,1", "4"], cat1_ind=["0", "0", "2"], cat2_ind=["2", "0", "1"], cat3_ind=["0", "1", "2"],
        cat4_ind=["0", "1", "2"],
    ))
    csv = root / "bench.csv"
    table.to_csv(csv, index=False)
    return dict(root=root, samples=samples, csv=csv)


def _evaluate(bench, checkpoints, out, *extra):
    return cli.main(["--input-file", str(bench["csv"]), "--infer-data-dir", str(bench["samples"]),
                     "--output-file", str(out), "--checkpoint-dir", str(checkpoints), "--network-size", "tiny",
                     "--device", "cpu", *extra])


def test_every_metric_group_with_protocol_and_reports(bench, checkpoints, tmp_path, capsys):
    out = tmp_path / "result.json"
    assert _evaluate(bench, checkpoints, out, "--verbose", "--save-per-sample") == 0
    results = json.loads(out.read_text())
    assert set(ALL_KEYS) <= set(results)
    for key in ("ib_tv", "ib_ta", "ib_av", "clip_score", "clap_score", "avh_score", "javis_score"):
        value = results[key]
        assert len(value["all"]) == 3 and all(-1.0 <= v <= 1.0 for v in value["all"])
        assert value["overall"] == pytest.approx(sum(value["all"]) / 3)
        assert value["0"][0] == pytest.approx((value["all"][0] + value["all"][1]) / 2)  # rows 0 and 1 are cat 0
        assert value["0"][2] is None and value["0"][4] == pytest.approx(value["all"][2])
    for key in ("fvd", "kvd", "fad"):
        assert math.isfinite(results[key]["overall"])
    assert results["fvd"]["overall"] > 0 and results["fad"]["overall"] > 0
    # the tiny config writes 17 frames (0.71 s): CAVP needs 1 s, so every row fails, counted with its reason
    protocol = results["protocol"]
    assert results["cavp_score"]["overall"] is None
    assert protocol["metrics"]["cavp_score"]["failed"] == 3 and protocol["metrics"]["cavp_score"]["rows"] == 0
    assert "needs at least 1 s" in protocol["metrics"]["cavp_score"]["failures"][0]
    assert protocol["metrics"]["ib_tv"] == {"rows": 3, "failed": 0, "skipped": 0}
    # what the samples are, read from the files
    samples = protocol["samples"]
    assert samples["num_frames"] == {"17": 3} and samples["fps"] == {"24.0": 3}
    assert samples["audio_sample_rate"] == {"16000": 3} and samples["audio_source"] == {"video track": 3}
    assert list(samples["resolution"].values()) == [3]
    assert protocol["settings"]["max_frames"] == 24 and protocol["mode"] == "faithful"
    assert set(protocol["checkpoints"]) == {"i3d", "audioclip", "imagebind", "clip", "clap"}  # CAVP never ran
    assert all(c["hash"].startswith("sha256:") for c in protocol["checkpoints"].values())
    assert protocol["checkpoints"]["i3d"]["file"] == "i3d_pretrained_400.pt"
    assert "torch" in protocol["versions"] and protocol["reference"]["rows"] == 3
    assert any("shorter" in w for w in protocol["warnings"])  # 0.71 s clips against a 4 s protocol
    # reports beside the JSON
    md = out.with_suffix(".md").read_text()
    assert "| JavisScore | `javis_score` |" in md and "## Per category" in md
    table = pd.read_csv(out.with_suffix(".csv"))
    assert set(table["metric"]) >= {"fvd", "javis_score"}
    per_sample = pd.read_csv(tmp_path / "result_per_sample.csv")
    assert list(per_sample["index"]) == [0, 1, 2]
    assert per_sample["ib_av"].tolist() == pytest.approx(results["ib_av"]["all"])
    assert "JavisScore (javis_score)" in capsys.readouterr().out


def test_resume_skips_present_metrics_and_force_recomputes(bench, checkpoints, tmp_path):
    out = tmp_path / "r.json"
    assert _evaluate(bench, checkpoints, out, "--metrics", "imagebind-score", "av-align") == 0
    first = json.loads(out.read_text())
    assert set(first) == {"ib_tv", "ib_ta", "ib_av", "av_align", "protocol"}
    first["ib_tv"] = 123.0  # a finished group is not recomputed ...
    del first["av_align"]  # ... an interrupted one is
    out.write_text(json.dumps(first))
    assert _evaluate(bench, checkpoints, out, "--metrics", "imagebind-score", "av-align", "--save-per-sample") == 0
    second = json.loads(out.read_text())
    assert second["ib_tv"] == 123.0 and "av_align" in second
    per_sample = tmp_path / "r_per_sample.csv"
    assert list(pd.read_csv(per_sample).columns) == ["index", "av_align"]
    assert _evaluate(bench, checkpoints, out, "--metrics", "imagebind-score", "--force-eval", "--save-per-sample") == 0
    table = pd.read_csv(per_sample)  # the av_align column of the earlier run is kept
    assert list(table.columns) == ["index", "ib_tv", "ib_ta", "ib_av", "av_align"] and len(table) == 3
    assert json.loads(out.read_text())["ib_tv"] != 123.0
    # numbers of another protocol never mix into the same file
    assert _evaluate(bench, checkpoints, out, "--metrics", "av-align", "--max-frames", "16") == 2


def test_exclude_single_metric_and_corrected_mode(bench, checkpoints, tmp_path):
    out = tmp_path / "c.json"
    assert _evaluate(bench, checkpoints, out, "--metrics", "cxxp-score", "fvd+kvd+fad", "--exclude", "cavp_score",
                     "clap_score", "--mode", "corrected") == 0
    results = json.loads(out.read_text())
    assert set(results) == {"clip_score", "fvd", "kvd", "fad", "protocol"}
    assert results["protocol"]["mode"] == "corrected" and "fad" in results["protocol"]["corrections"]


def test_ground_truth_clips_score_cavp(synthetic_data, checkpoints, tmp_path):
    """--eval-gt on 2.2 s clips: CAVP runs (2 s at 4 fps), FVD is refused with --eval-gt."""
    csv = synthetic_data["stage3_jav"]
    out = tmp_path / "gt.json"
    base = ["--input-file", str(csv), "--eval-gt", "--output-file", str(out), "--checkpoint-dir", str(checkpoints),
            "--network-size", "tiny", "--device", "cpu"]
    assert cli.main([*base, "--metrics", "cxxp-score", "--exclude", "clip_score", "clap_score"]) == 0
    results = json.loads(out.read_text())
    assert -1.0 <= results["cavp_score"] <= 1.0
    assert results["protocol"]["metrics"]["cavp_score"] == {"rows": 3, "failed": 0, "skipped": 0}
    assert results["protocol"]["samples"]["audio_source"] == {"wav": 3}
    assert cli.main([*base, "--metrics", "fvd+kvd+fad"]) == 2


def test_reference_cache_equals_computing_from_paths(bench, checkpoints, tmp_path):
    cache = tmp_path / "gt.pt"
    assert cli.main_reference(["--input-file", str(bench["csv"]), "--output-file", str(cache), "--checkpoint-dir",
                               str(checkpoints), "--network-size", "tiny", "--device", "cpu"]) == 0
    stored = torch.load(cache, weights_only=True)
    assert stored["video"].shape == (3, 400) and stored["audio"].shape == (3, 1024)
    assert stored["protocol"]["settings"]["max_frames"] == 24
    a, b = tmp_path / "a.json", tmp_path / "b.json"
    assert _evaluate(bench, checkpoints, a, "--metrics", "fvd+kvd+fad") == 0
    assert _evaluate(bench, checkpoints, b, "--metrics", "fvd+kvd+fad", "--fvd-avcache-path", str(cache)) == 0
    ra, rb = json.loads(a.read_text()), json.loads(b.read_text())
    for key in ("fvd", "kvd", "fad"):
        assert rb[key] == pytest.approx(ra[key], rel=1e-5)
    assert rb["protocol"]["reference"]["hash"].startswith("sha256:")


def _error(capsys) -> str:
    """The one error line a failed run prints (log lines may precede it)."""
    errors = [line for line in capsys.readouterr().err.splitlines() if line.startswith("error: ")]
    assert len(errors) == 1, errors
    return errors[0]


def test_bad_input_is_one_line(bench, checkpoints, tmp_path, capsys):
    out = tmp_path / "x.json"
    no_text = tmp_path / "no_text.csv"
    pd.read_csv(bench["csv"]).drop(columns=["text"]).to_csv(no_text, index=False)
    assert cli.main(["--input-file", str(no_text), "--infer-data-dir", str(bench["samples"]),
                     "--output-file", str(out)]) == 2
    assert "no `text` column" in _error(capsys)
    # a missing sample names the row and the file; --allow-missing evaluates the rest and counts it
    partial = tmp_path / "partial"
    shutil.copytree(bench["samples"], partial)
    (partial / "sample_0001.mp4").unlink()
    args = ["--input-file", str(bench["csv"]), "--infer-data-dir", str(partial), "--output-file", str(out),
            "--checkpoint-dir", str(checkpoints), "--network-size", "tiny", "--device", "cpu", "--metrics", "av-align"]
    assert cli.main(args) == 2
    err = _error(capsys)
    assert "row 1" in err and "sample_0001.mp4 is missing" in err and "--allow-missing" in err
    assert cli.main([*args, "--allow-missing"]) == 0
    capsys.readouterr()
    protocol = json.loads(out.read_text())["protocol"]
    assert protocol["rows"]["evaluated"] == 2 and protocol["rows"]["missing"] == 1
    assert protocol["metrics"]["av_align"]["skipped"] == 1
    # a corrupt sample
    (partial / "sample_0001.mp4").write_bytes(b"not a video")
    out.unlink()
    assert cli.main(args) == 2
    err = _error(capsys)
    assert "row 1" in err and "cannot decode" in err
    # a missing network names its file, where it comes from and where to put it
    empty = tmp_path / "empty"
    empty.mkdir()
    assert _evaluate(bench, empty, tmp_path / "y.json", "--metrics", "fvd+kvd+fad") == 2
    err = _error(capsys)
    assert "i3d_pretrained_400.pt" in err and "huggingface.co" in err and str(empty) in err
    # flags the paper protocol pins cannot be changed, and unknown groups are refused
    assert _evaluate(bench, checkpoints, out, "--protocol", "paper", "--max-frames", "24") == 2
    assert "--protocol paper fixes --max-frames 16" in _error(capsys)
    assert _evaluate(bench, checkpoints, out, "--metrics", "desync") == 2
    assert "not part of this evaluator" in _error(capsys)


def test_paper_protocol_warns_about_short_clips(bench, checkpoints, tmp_path):
    out = tmp_path / "p.json"
    assert _evaluate(bench, checkpoints, out, "--protocol", "paper", "--metrics", "av-align") == 0
    protocol = json.loads(out.read_text())["protocol"]
    assert protocol["settings"]["max_frames"] == 16 and protocol["settings"]["protocol"] == "paper"
    assert any("--protocol paper evaluates 4 s clips" in w for w in protocol["warnings"])


@pytest.mark.dist
def test_two_processes_give_the_json_of_one(bench, checkpoints, tmp_path):
    import os
    import subprocess
    import sys

    env = {**os.environ, "PYTHONPATH": str(REPO), "OMP_NUM_THREADS": "1"}
    script = str(REPO / "scripts" / "eval" / "javisbench.py")
    results = {}
    for name, launcher in (("one", []), ("two", ["-m", "torch.distributed.run", "--nproc_per_node", "2",
                                                  "--master_port", "29547"])):
        out = tmp_path / f"{name}.json"
        command = [sys.executable, *launcher, script, "--input-file", str(bench["csv"]), "--infer-data-dir",
                   str(bench["samples"]), "--output-file", str(out), "--checkpoint-dir", str(checkpoints),
                   "--network-size", "tiny", "--device", "cpu", "--verbose",
                   "--metrics", "fvd+kvd+fad", "imagebind-score", "av-align"]
        done = subprocess.run(command, env=env, capture_output=True, text=True, timeout=300)
        assert done.returncode == 0, done.stderr[-2000:]
        results[name] = json.loads(out.read_text())
    one, two = results["one"], results["two"]
    assert set(one) == set(two)
    for key in ("fvd", "kvd", "fad", "ib_tv", "ib_ta", "ib_av", "av_align"):
        assert two[key]["overall"] == pytest.approx(one[key]["overall"], rel=1e-5, abs=1e-7)
        if "all" in one[key]:
            assert two[key]["all"] == pytest.approx(one[key]["all"], rel=1e-5, abs=1e-7)
    assert one["protocol"]["samples"] == two["protocol"]["samples"]
    assert one["protocol"]["metrics"] == two["protocol"]["metrics"]


def test_silent_audio_is_logged_and_wav_beside_the_mp4_is_used(bench, checkpoints, tmp_path, capsys):
    import numpy as np
    import soundfile

    folder = tmp_path / "samples"
    shutil.copytree(bench["samples"], folder)
    soundfile.write(folder / "sample_0002.wav", np.zeros(16000, dtype=np.float32), 16000)
    out = tmp_path / "s.json"
    assert cli.main(["--input-file", str(bench["csv"]), "--infer-data-dir", str(folder), "--output-file", str(out),
                     "--checkpoint-dir", str(checkpoints), "--network-size", "tiny", "--device", "cpu",
                     "--metrics", "av-align"]) == 0
    err = capsys.readouterr().err
    assert "row 2: the audio of" in err and "sample_0002.wav is silent" in err
    samples = json.loads(out.read_text())["protocol"]["samples"]
    assert samples["audio_source"] == {"video track": 2, "wav": 1}


def test_reference_cache_from_a_folder_of_clips(synthetic_data, checkpoints, tmp_path):
    folder = synthetic_data["stage3_jav"].parent / "videos"
    cache = tmp_path / "folder.pt"
    assert cli.main_reference(["--data-dir", str(folder), "--output-file", str(cache), "--checkpoint-dir",
                               str(checkpoints), "--network-size", "tiny", "--device", "cpu",
                               "--protocol", "paper"]) == 0
    stored = torch.load(cache, weights_only=True)
    assert stored["video"].shape == (3, 400) and stored["protocol"]["settings"]["max_frames"] == 16
    assert cli.main_reference(["--data-dir", str(tmp_path / "none"), "--output-file", str(cache)]) == 2


def test_cuda_requested_without_a_device(bench, checkpoints, tmp_path, capsys, monkeypatch):
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    assert _evaluate(bench, checkpoints, tmp_path / "c.json", "--metrics", "av-align", "--device", "cuda") == 2
    assert "--device cuda: no CUDA device is visible" in _error(capsys)


def test_download_flag_fetches_missing_networks(bench, checkpoints, tmp_path, monkeypatch):
    import os

    import torch.hub

    fetched = []

    def fake_download(url, dst, progress=True):  # "the internet" holds the tiny random files
        fetched.append(url)
        shutil.copy(checkpoints / os.path.basename(dst), dst)

    monkeypatch.setattr(torch.hub, "download_url_to_file", fake_download)
    empty = tmp_path / "ckpt"
    assert _evaluate(bench, empty, tmp_path / "d.json", "--metrics", "fvd+kvd+fad", "--download") == 0
    assert sorted(p.name for p in empty.iterdir()) == ["AudioCLIP-Full-Training.pt", "i3d_pretrained_400.pt"]
    assert len(fetched) == 2 and all(url.startswith("https://") for url in fetched)
