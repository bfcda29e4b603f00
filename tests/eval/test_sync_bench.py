"""The data side of the mini synchronisation benchmark on a few generated bouncing-ball clips."""

import json

import pytest

from javisdit.datasets.bouncing import make_mini_dataset
from javisdit.errors import UserError
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


def test_generated_rows_score_every_condition(mini, tmp_path):
    """The model rows with the tiny random model: every condition scores the same captions and seeds, the
    clips are kept when asked, and the protocol names the sampler and the sizes."""
    from conftest import REPO
    from javisdit.config import parse_configs
    from javisdit.eval.sync_bench import CONDITIONS, generated_rows

    cfg = parse_configs("inference", [str(REPO / "configs/tiny/inference.py"), "--cfg-options",
                                      "scheduler.num_sampling_steps=2", "scheduler.cfg_scale={'video':2,'audio':5}",
                                      "scheduler.cfg_interval=[0.0,0.5]", "scheduler.sync_guidance={'audio':2}",
                                      "audio_after_video=true"])
    results = generated_rows(cfg, mini["stage3_jav"], num_clips=2, seed=5, batch_size=2, save_dir=tmp_path)
    for name in CONDITIONS:
        assert results[name]["clips"] == 2 and 0.0 <= results[name]["f1_2f"] <= 1.0
    assert results["model, swapped audio (chance)"]["clips"] == 2
    protocol = results["protocol"]
    assert protocol["sampling_steps"] == 2 and protocol["clip"] == {"frames": 17, "height": 144, "width": 256}
    assert protocol["seeds"] == "clip i: 5 + i" and protocol["captions"] == 2
    assert protocol["cfg_scale"] == {"video": 2.0, "audio": 5.0} and protocol["cfg_interval"] == [0.0, 0.5]
    assert protocol["audio_after_video"] is True and protocol["sync_guidance"] == {"audio": 2.0}
    assert sorted(p.name for p in (tmp_path / "model").iterdir()) == ["sample_0000.mp4", "sample_0001.mp4"]
    assert (tmp_path / "model_null_ST-prior" / "sample_0001.mp4").is_file()
    # v2a keeps the data clip's picture: both v2a rows score the same picture, only their sound differs
    v2a, v2a_alone = results["v2a: sound for the data clip's picture"], results["v2a, no video-audio cross-attention"]
    assert v2a["colour"] == v2a_alone["colour"] and v2a["clips"] == 2
    assert (tmp_path / "v2a_sound_for_the_data_clips_picture" / "sample_0001.mp4").is_file()
    with pytest.raises(UserError, match="unknown condition"):
        generated_rows(cfg, mini["stage3_jav"], num_clips=1, conditions=["model, no T5"])
    with pytest.raises(UserError, match="no captions"):  # 6 clips hold no held-out one (every tenth is)
        generated_rows(cfg, mini["heldout"], num_clips=2)


class _Identity:
    """Stands in for both autoencoders: the latents are the input itself."""

    def eval(self):
        return self

    def encode(self, x):
        return x

    def encode_waveform(self, wave, seconds):
        return wave

    def decode(self, z, num_frames=None, *args):
        return z if num_frames is None or z.dim() == 5 else z[:, :num_frames]


def test_autoencoder_row_and_script_flags(mini, tmp_path, capsys, monkeypatch):
    """The clips through the config's autoencoders are scored like generated clips: through lossless ones
    they score as the data do; the script adds that row without generating when --num-generated is 0."""
    import sys

    import javisdit.registry
    from conftest import REPO
    from javisdit.config import parse_configs
    from javisdit.eval.sync_bench import autoencoded_rows

    cfg = parse_configs("inference", [str(REPO / "configs/tiny/inference.py"), "--num-frames", "48"])
    with monkeypatch.context() as patch:
        patch.setattr(javisdit.registry, "build_module", lambda spec, registry: _Identity())
        row = autoencoded_rows(cfg, mini["stage3_jav"], num_clips=3)["data through the autoencoders"]
    assert row["clips"] == 3 and row["colour"] >= 0.95 and row["f1_1f"] >= 0.9 and row["material"] >= 0.9
    with pytest.raises(UserError, match="49 needed"):
        autoencoded_rows(parse_configs("inference", [str(REPO / "configs/tiny/inference.py"), "--num-frames", "49"]),
                         mini["stage3_jav"], num_clips=1)
    sys.path.insert(0, str(REPO / "scripts" / "eval"))
    try:
        import sync_bench
    finally:
        sys.path.pop(0)
    out = tmp_path / "bench.json"
    args = ["--data-csv", str(mini["stage3_jav"]), "--output-file", str(out), "--num-clips", "2"]
    assert sync_bench.main([*args, "--config", str(REPO / "configs/tiny/inference.py"), "--autoencoders",
                            "--num-generated", "0"]) == 0
    results = json.loads(out.read_text())
    assert results["data through the autoencoders"]["clips"] == 2 and "model" not in results
    assert set(results["protocol"]) == {"data"}
    assert sync_bench.main([*args, "--autoencoders"]) == 2
    assert "--autoencoders needs --config" in capsys.readouterr().err


def test_summary_pools_event_counts_over_clips():
    """Precision, recall and F1 come from the event counts summed over clips (not a mean of per-clip F1s)."""
    from javisdit.eval.sync_bench import _summary

    def clip(tp, fp, fn, offset):
        return {"tp_1f": tp, "fp_1f": fp + 1, "fn_1f": fn + 1, "tp_2f": tp, "fp_2f": fp, "fn_2f": fn,
                "median_offset_ms": offset, "colour": 1.0, "material": 0.5}

    out = _summary([clip(3, 1, 0, 10.0), clip(1, 3, 4, -30.0), clip(0, 0, 2, None)])
    assert out["precision_2f"] == pytest.approx(4 / 8) and out["recall_2f"] == pytest.approx(4 / 10)
    assert out["f1_2f"] == pytest.approx(2 * 0.5 * 0.4 / 0.9)
    assert out["precision_1f"] == pytest.approx(4 / 11) and out["recall_1f"] == pytest.approx(4 / 13)
    assert out["median_offset_ms"] == pytest.approx(-10.0) and out["clips"] == 3
    table = markdown({"model": out})
    assert "| model | 3 | 1.000 | 0.500 | 0.333 | 0.500 | 0.400 | 0.444 | -10.0 |" in table
