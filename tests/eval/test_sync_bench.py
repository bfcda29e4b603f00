"""The data side of the mini synchronisation benchmark on a few generated bouncing-ball clips."""

import json

import pytest

from javisdit.datasets.bouncing import make_mini_dataset
from javisdit.eval.sync_bench import data_baselines, markdown


@pytest.fixture(scope="module")
def mini(tmp_path_factory):
    return make_mini_dataset(tmp_path_factory.mktemp("mini"), num_clips=6, seconds=2.0, fps=24, height=64, width=64,
                             seed=3, workers=1)


def test_ceiling_chance_and_auroc(mini):
    results = data_baselines(mini["stage3_jav"], num_clips=5, seed=0)
    ceiling, chance = results["ceiling"], results["chance (swapped audio)"]
    assert ceiling["clips"] == chance["clips"] == 5
    assert ceiling["f1_1f"] >= 0.9 and ceiling["colour"] >= 0.95 and ceiling["material"] >= 0.9
    assert abs(ceiling["median_offset_ms"]) < 1000 / 24
    assert chance["f1_1f"] < ceiling["f1_1f"] and chance["colour"] == ceiling["colour"]  # same pictures
    assert results["pairs"] == {"sync": 5, "async": 5 * 5}  # 2 shifts, muted, reversed, swapped per clip
    assert results["auroc"]["event_f1_1f"] > 0.9
    assert results["protocol"]["async_shift_frames"] == (3, 12)
    table = markdown(results)
    assert "| ceiling | 5 |" in table and "AUROC sync vs async (5 sync, 25 async pairs)" in table


def test_script_writes_json_and_table(mini, tmp_path, capsys):
    import sys

    from conftest import REPO

    sys.path.insert(0, str(REPO / "scripts" / "eval"))
    try:
        import sync_bench
    finally:
        sys.path.pop(0)
    out = tmp_path / "bench.json"
    assert sync_bench.main(["--data-csv", str(mini["stage3_jav"]), "--output-file", str(out), "--num-clips", "2"]) == 0
    assert json.loads(out.read_text())["ceiling"]["clips"] == 2
    assert out.with_suffix(".md").read_text().startswith("| condition |")
    assert sync_bench.main(["--data-csv", str(tmp_path / "none.csv"), "--output-file", str(out)]) == 2
    assert "no such file" in capsys.readouterr().err
