"""``scripts/misc/extract_feat.py`` on the tiny configs: the bins, what ``BatchFeatureDataset`` reads back,
resuming, index ranges and one-line errors."""

import pandas as pd
import pytest
import torch
from conftest import REPO

from javisdit import cli
from javisdit.config import flags_for, parse_configs
from javisdit.datasets import BatchFeatureDataset, VariableVideoBatchSampler
from javisdit.training import features

TINY_VA = str(REPO / "configs" / "tiny" / "extract_va.py")
TINY_PRIOR = str(REPO / "configs" / "tiny" / "extract_st_prior_va.py")


@pytest.fixture(scope="module")
def four_clips(synthetic_data, tmp_path_factory):
    """The three synthetic clips and the first once more (absolute paths): two batches of two."""
    table = pd.read_csv(synthetic_data["stage3_jav"])
    root = synthetic_data["stage3_jav"].parent
    table = pd.concat([table, table.iloc[:1]], ignore_index=True)
    for column in ("path", "audio_path"):
        table[column] = [str(root / p) for p in table[column]]
    path = tmp_path_factory.mktemp("four") / "four.csv"
    table.to_csv(path, index=False)
    return path, table


def _extract(csv, save_dir, *argv, config=TINY_VA):
    cfg = parse_configs("extract", [config, "--data-path", str(csv), "--save-dir", str(save_dir), *argv])
    return features.run(cfg)


def _load(path):
    return torch.load(path, map_location="cpu", weights_only=True)


def _assert_same_bins(a, b):
    assert len(a) == len(b)
    for x, y in zip(a, b):
        assert x.keys() == y.keys()
        for key in x:
            if torch.is_tensor(x[key]):
                assert x[key].dtype == y[key].dtype and torch.equal(x[key], y[key]), key
            else:
                assert x[key] == y[key], key


def test_script_writes_bins_that_the_feature_dataset_reads(run_script, four_clips, tmp_path):
    csv, table = four_clips
    result = run_script("misc/extract_feat.py", TINY_VA, "--data-path", str(csv), "--save-dir", str(tmp_path))
    assert result.returncode == 0, result.stderr
    assert "Feature extraction finished: 2 bin(s) written, 0 already there, 4 sample(s)" in result.stderr
    folder = tmp_path / "s0_e2"  # no --end-index: up to the last bin
    assert sorted(p.name for p in folder.iterdir()) == ["00000000.bin", "00000001.bin", "config.txt"]
    assert "bin_size = 1" in (folder / "config.txt").read_text()

    data = BatchFeatureDataset(str(tmp_path))
    assert len(data) == 2
    rows = []
    for item in (data[0], data[1]):
        B = len(item["index"])
        assert B == 2 and item["index"].dtype == torch.int64
        assert item["video"].shape == (B, 4, 5, 18, 32) and item["video"].dtype == torch.float32  # 17 x 144 x 256
        assert item["audio"].shape == (B, 8, 24, 16)  # 17 / 24 s -> 96 mel frames -> 24
        assert item["video"].std() > 0.1 and item["audio"].std() > 0.1
        assert item["text"] == item["raw_text"] == [table.text[i] for i in item["index"].tolist()]
        for key, value in dict(height=144, width=256, num_frames=17, audio_fps=16000).items():
            assert item[key].dtype == torch.int64 and item[key].tolist() == [value] * B, key
        assert item["fps"].dtype == torch.float32 and item["fps"].tolist() == [24.0] * B
        assert "neg_videos" not in item and "onset" not in item
        rows += item["index"].tolist()
    assert sorted(rows) == [0, 1, 2, 3]  # every row once, in the sampler's order


def test_prior_config_adds_negatives_and_onsets(run_script, synthetic_data, tmp_path):
    result = run_script("misc/extract_feat.py", TINY_PRIOR, "--data-path", str(synthetic_data["stage2_prior"]),
                        "--save-dir", str(tmp_path), "--end-index", "5")
    assert result.returncode == 0, result.stderr
    assert sorted(p.name for p in (tmp_path / "s0_e5").iterdir()) == ["00000000.bin", "config.txt"]  # 3 clips: 1 batch
    item = BatchFeatureDataset(str(tmp_path))[0]
    B, N = 2, 1  # one spatial and one temporal negative per clip (neg_aug=1)
    for kind in ("spatial", "temporal"):
        assert item["neg_videos"][kind].shape == (B, N, 4, 5, 18, 32)
        assert item["neg_audios"][kind].shape == (B, N, 8, 24, 16)
        assert not torch.equal(item["neg_videos"][kind][:, 0], item["video"])  # negatives differ from the clip
    assert item["onset"].shape == (B, 96) and item["onset"].dtype == torch.float32
    assert set(item["onset"].unique().tolist()) <= {0.0, 1.0} and item["onset"].sum() > 0  # the balls click


def test_rerun_resumes_and_rewrites_a_missing_bin_identically(four_clips, tmp_path):
    csv, _ = four_clips
    report = _extract(csv, tmp_path)
    folder = tmp_path / "s0_e2"
    bins = [folder / "00000000.bin", folder / "00000001.bin"]
    assert report.written == bins and report.samples == 4
    stamps = {p: p.stat().st_mtime_ns for p in bins}
    first = [_load(p) for p in bins]

    report = _extract(csv, tmp_path)  # complete: nothing is encoded again
    assert report.written == [] and report.existing == bins and report.samples == 0
    assert {p: p.stat().st_mtime_ns for p in bins} == stamps

    bins[1].unlink()
    report = _extract(csv, tmp_path)
    assert report.written == [bins[1]] and report.existing == [bins[0]]
    assert bins[0].stat().st_mtime_ns == stamps[bins[0]]
    _assert_same_bins(_load(bins[1]), first[1])  # same batch, same posterior samples
    assert not list(folder.glob("*.tmp"))


def test_index_range_writes_only_its_bins(four_clips, tmp_path):
    csv, _ = four_clips
    report = _extract(csv, tmp_path, "--start-index", "1", "--end-index", "2")
    assert [p.relative_to(tmp_path).as_posix() for p in report.written] == ["s1_e2/00000001.bin"]
    assert sorted(p.name for p in tmp_path.rglob("*.bin")) == ["00000001.bin"]
    whole = tmp_path / "whole"
    _extract(csv, whole, "--end-index", "2")
    _assert_same_bins(_load(tmp_path / "s1_e2" / "00000001.bin"), _load(whole / "s0_e2" / "00000001.bin"))


def test_an_unreadable_batch_is_replaced_by_the_next_one(four_clips, tmp_path):
    _, table = four_clips
    table = pd.concat([table, table.iloc[:2]], ignore_index=True)  # 6 rows: 3 batches, 3 bins
    seed = parse_configs("extract", [TINY_VA]).seed
    sampler = VariableVideoBatchSampler(list(zip(table.num_frames, table.height, table.width)),
                                        {"144p": {17: (1.0, 2)}}, num_replicas=1, rank=0, seed=seed)
    order = [[row for row, *_ in batch] for batch in sampler]
    table.loc[order[0], "path"] = str(tmp_path / "missing.mp4")  # the first batch cannot be read
    csv = tmp_path / "broken.csv"
    table.to_csv(csv, index=False)
    report = _extract(csv, tmp_path)
    bins = [_load(p) for p in report.written]
    assert [[batch["index"].tolist() for batch in b] for b in bins] == [[order[1]], [order[1]], [order[2]]]
    assert not torch.equal(bins[0][0]["x"], bins[1][0]["x"])  # each bin draws its own posterior samples
    report.written[0].unlink()
    assert _extract(csv, tmp_path).written == report.written  # bins after the gap are rewritten too
    for path, before in zip(report.written, bins):
        _assert_same_bins(_load(path), before)  # the same replacement after a restart


def test_rank_shares_are_disjoint_and_cover_the_range():
    bins = range(3, 10)
    shares = [features.rank_share(bins, rank, 3) for rank in range(3)]
    assert [list(s) for s in shares] == [[3, 4, 5], [6, 7, 8], [9]]
    assert list(features.rank_share(range(2), 2, 3)) == []


def test_extract_mode_flags():
    names = {f.name for f in flags_for("extract")}
    assert {"--data-path", "--save-dir", "--start-index", "--end-index", "--seed", "--dtype"} <= names
    assert not names & {"--prompt", "--num-frames", "--lr", "--load"}
    cfg = parse_configs("extract", [TINY_VA, "--save-dir", "out"])
    assert cfg.end_index is None and cfg.start_index == 0 and cfg.bin_size == 1 and cfg.save_text_features is False


@pytest.mark.parametrize(
    "case, message",
    [
        ("missing_csv", "error: dataset.data_path: no such file: "),
        ("bad_columns", "error: {csv}: the CSV lacks column(s) num_frames, height, width, text needed for stages 2"),
        ("start_not_before_end", "error: --start-index (2) must be smaller than --end-index (2)"),
        ("unwritable", "error: --save-dir {save_dir} is not writable"),
        ("no_save_dir", "error: --save-dir is required"),
    ],
)
def test_bad_input_is_one_line(case, message, four_clips, tmp_path, capsys):
    csv, save_dir, extra = four_clips[0], tmp_path / "out", []
    if case == "missing_csv":
        csv = tmp_path / "missing.csv"
    elif case == "bad_columns":
        csv = tmp_path / "bad.csv"
        csv.write_text("path\nclip.mp4\n")
    elif case == "start_not_before_end":
        extra = ["--start-index", "2", "--end-index", "2"]
    elif case == "unwritable":
        (tmp_path / "file").write_text("")
        save_dir = tmp_path / "file" / "out"
    argv = [TINY_VA, "--data-path", str(csv), *extra]
    if case != "no_save_dir":
        argv += ["--save-dir", str(save_dir)]
    assert cli.main("extract", argv) == 2
    lines = capsys.readouterr().err.splitlines()  # log lines of the run, then the error
    assert lines[-1].startswith(message.format(csv=csv, save_dir=save_dir)), lines
    assert not any("Traceback" in line for line in lines)


def test_spatial_latents_are_the_first_half_of_the_video_encode(four_clips, tmp_path):
    """video_latents="spatial" (no audio VAE needed): ``x`` holds the spatial VAE's latents of every frame,
    which the temporal half of the encoder turns into the latents of the default extraction."""
    csv = four_clips[0]
    means = ["--cfg-options", "vae.sample_posterior=False"]
    full = _load(_extract(csv, tmp_path / "full", "--end-index", "1", *means).written[0])[0]
    spatial = _load(_extract(csv, tmp_path / "spatial", "--end-index", "1", *means, "video_latents=spatial",
                             "audio_vae=None").written[0])[0]
    assert "ax" in full and "ax" not in spatial
    assert spatial["x"].shape[2] == 17 and full["x"].shape[2] == 5  # 17 frames -> 5 latent frames
    cfg = parse_configs("extract", [TINY_VA, "--save-dir", str(tmp_path), *means])
    vae = features.build_encoders(cfg, torch.device("cpu"), torch.float32).vae
    torch.testing.assert_close(vae.encode_temporal(spatial["x"]), full["x"])
    assert torch.equal(spatial["index"], full["index"])


def test_unknown_video_latents_and_a_missing_audio_vae_are_refused(four_clips, tmp_path, capsys):
    argv = [TINY_VA, "--data-path", str(four_clips[0]), "--save-dir", str(tmp_path), "--cfg-options"]
    assert cli.main("extract", [*argv, "video_latents=temporal"]) == 2
    assert capsys.readouterr().err.splitlines()[-1] == "error: video_latents must be one of 'full', 'spatial', got 'temporal'"
    assert cli.main("extract", [*argv, "video_latents=spatial", "audio_only=True"]) == 2
    assert capsys.readouterr().err.splitlines()[-1] == ("error: video_latents='spatial' encodes video: audio_only "
                                                        "must be False")
    assert cli.main("extract", [*argv, "audio_vae=None"]) == 2
    assert capsys.readouterr().err.splitlines()[-1] == ("error: feature extraction needs the config's audio_vae (the "
                                                        "model that encodes the clips)")
