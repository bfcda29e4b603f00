"""Row naming and sample lookup, the protocol settings and warnings, the result-file reports."""

import json

import numpy as np
import pandas as pd
import pytest

from javisdit.errors import UserError
from javisdit.eval import report
from javisdit.eval.inputs import read_rows
from javisdit.eval.javisbench import select
from javisdit.eval.media import is_silent
from javisdit.eval.protocol import SampleFacts, Settings, paper_settings, sample_warnings, summarise_samples


def _csv(tmp_path, **columns):
    path = tmp_path / "bench.csv"
    pd.DataFrame(columns).to_csv(path, index=False)
    return path


def test_samples_are_named_by_row_index_and_wav_is_optional(tmp_path):
    csv = _csv(tmp_path, text=["a", "b", "c"], audio_text=["x", "", "z"])
    folder = tmp_path / "samples"
    folder.mkdir()
    for i in range(3):
        (folder / f"sample_{i:04d}.mp4").write_bytes(b"")
    (folder / "sample_0002.wav").write_bytes(b"")
    rows, missing = read_rows(csv, folder)
    assert [r.index for r in rows] == [0, 1, 2] and not missing
    assert rows[0].video == folder / "sample_0000.mp4" and rows[0].audio is None  # the mp4's own track
    assert rows[2].audio == folder / "sample_0002.wav"
    assert [r.audio_text for r in rows] == ["x", "b", "z"]  # audio_text falls back to text
    rows, _ = read_rows(csv, folder, eval_num=2)
    assert len(rows) == 2


def test_missing_sample_names_row_and_file_unless_allowed(tmp_path):
    csv = _csv(tmp_path, text=["a", "b"])
    folder = tmp_path / "s"
    folder.mkdir()
    (folder / "sample_0000.mp4").write_bytes(b"")
    with pytest.raises(UserError, match=r"row 1: the sample .*sample_0001\.mp4 is missing .*--allow-missing"):
        read_rows(csv, folder)
    rows, missing = read_rows(csv, folder, allow_missing=True)
    assert [r.index for r in rows] == [0] and len(missing) == 1 and "row 1" in missing[0]


def test_csv_problems_are_user_errors(tmp_path):
    with pytest.raises(UserError, match="no `text` column"):
        read_rows(_csv(tmp_path, prompt=["a"]), tmp_path)
    with pytest.raises(UserError, match="say where the samples are"):
        read_rows(_csv(tmp_path, text=["a"]))
    with pytest.raises(UserError, match="lacks cat0_ind"):
        read_rows(_csv(tmp_path, text=["a"]), tmp_path, verbose=True)
    with pytest.raises(UserError, match="--eval-gt reads the ground truth from the `path` column"):
        read_rows(_csv(tmp_path, text=["a"]), eval_gt=True)


def test_pred_columns_and_categories(tmp_path):
    (tmp_path / "v.mp4").write_bytes(b"")
    (tmp_path / "a.wav").write_bytes(b"")
    csv = _csv(tmp_path, text=["a"], pred_video_path=["v.mp4"], pred_audio_path=["a.wav"],
               **{f"cat{k}_ind": ["0,2" if k == 0 else "1"] for k in range(5)})
    (row,), _ = read_rows(csv, verbose=True)
    assert row.video == tmp_path / "v.mp4" and row.audio == tmp_path / "a.wav"  # relative to the CSV
    assert row.categories == [[0, 2], [1], [1], [1], [1]]


def test_metric_selection():
    assert [g.name for g, _ in select(("all",), ())] == ["fvd+kvd+fad", "imagebind-score", "cxxp-score", "av-align",
                                                          "av-score"]
    chosen = dict((g.name, keys) for g, keys in select(("cxxp-score", "av-score"), ("cavp_score", "av-score")))
    assert chosen == {"cxxp-score": ("clip_score", "clap_score")}
    with pytest.raises(UserError, match="unknown metric 'fvd2'"):
        select(("fvd2",), ())
    with pytest.raises(UserError, match="'desync' is upstream's but not part of this evaluator"):
        select(("desync",), ())


def test_paper_protocol_pins_settings():
    s = paper_settings({"max_frames": None, "image_size": 224})
    assert (s.max_frames, s.image_size, s.max_audio_len_s, s.window_size_s, s.window_overlap_s) == (16, 224, 4.0,
                                                                                                   2.0, 1.5)
    with pytest.raises(UserError, match="--protocol paper fixes --max-frames 16"):
        paper_settings({"max_frames": 24})
    with pytest.raises(UserError, match="at least 9"):
        Settings(max_frames=8)
    with pytest.raises(UserError, match="--window-overlap-s must be in"):
        Settings(window_size_s=1.0, window_overlap_s=1.0)


def _facts(frames=96, fps=24.0, audio_s=4.0):
    return SampleFacts(frames, fps, 240, 426, 16000, 1, audio_s, "wav")


def test_sample_summary_and_warnings():
    facts = {0: _facts(), 1: _facts(48, 24.0, 2.0), 2: _facts(65, 16.0, 4.0625)}
    summary = summarise_samples(facts)
    assert summary["num_frames"] == {"48": 1, "65": 1, "96": 1} and summary["fps"] == {"16.0": 1, "24.0": 2}
    assert summary["duration_s"] == {"2.0": 1, "4.0": 1, "4.062": 1}
    warnings = sample_warnings(facts, paper_settings({}))
    assert any("1 of 3 samples are shorter (2.0 s) than the protocol's 4.0 s" in w for w in warnings)
    assert any("--protocol paper evaluates 4 s clips; 2 samples are not" in w for w in warnings)
    assert any("different frame rates: [16.0, 24.0]" in w for w in warnings)
    drift = sample_warnings({0: _facts(96, 24.0, 3.0)}, Settings())
    assert any("audio and video of different lengths" in w and "audio 3.000 s" in w for w in drift)


def test_reports_from_verbose_results(tmp_path):
    results = {"fvd": {"overall": 300.5, "0": [200.0, None, None, None, 10.0]},
               "ib_tv": {"overall": 0.25, "all": [0.2, 0.3], "1": [0.25, None, None]},
               "protocol": {"settings": {"max_frames": 16}, "metrics": {"ib_tv": {"rows": 2, "failed": 0,
                                                                                  "skipped": 1}}}}
    out = tmp_path / "r.json"
    report.write_json(out, {**results, "kvd": float("nan")})
    assert json.loads(out.read_text())["kvd"] is None  # NaN is not JSON
    md, csv = report.write_reports(out, results)
    table = pd.read_csv(csv)
    assert table.query("metric == 'fvd' and category == 'virtual'")["value"].item() == 10.0
    assert table.query("metric == 'ib_tv' and aspect == 'overall'")["value"].item() == 0.25
    text = md.read_text()
    assert "| FVD | `fvd` | 300.5000 | lower |" in text and "| TV-IB | visual style | camera shooting | 0.2500 |" in text
    assert "- ib_tv: 2 rows, 0 failed, 1 skipped" in text


def test_audio_helpers():
    assert is_silent(np.zeros(100)) and not is_silent(np.full(10, 0.01))
