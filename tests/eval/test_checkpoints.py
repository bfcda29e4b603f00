"""Finding the evaluation networks' files, and fetching them only when asked."""

import pytest

from javisdit.errors import MissingWeightsError
from javisdit.eval.checkpoints import SOURCES, file_hash, find_checkpoint


def test_published_names_and_alternatives(tmp_path):
    (tmp_path / "open_clip_pytorch_model.bin").write_bytes(b"x")
    assert find_checkpoint("clip", tmp_path) == tmp_path / "open_clip_pytorch_model.bin"
    (tmp_path / "clap-htsat-unfused").mkdir()
    assert find_checkpoint("clap", tmp_path) == tmp_path / "clap-htsat-unfused"
    with pytest.raises(MissingWeightsError) as err:
        find_checkpoint("cavp", tmp_path)
    message = str(err.value)
    assert "cavp_epoch66.ckpt" in message and SOURCES["cavp"].url in message and str(tmp_path) in message
    assert "\n" not in message and "--download" in message


def test_download_only_when_asked(tmp_path, monkeypatch):
    import huggingface_hub
    import torch.hub

    calls = []

    def fake_file(url, dst, progress=True):
        calls.append((url, dst))
        open(dst, "wb").write(b"weights")

    def fake_snapshot(repo_id, local_dir):
        calls.append((repo_id, str(local_dir)))
        (local_dir / "config.json").parent.mkdir(parents=True)
        (local_dir / "config.json").write_text("{}")

    monkeypatch.setattr(torch.hub, "download_url_to_file", fake_file)
    monkeypatch.setattr(huggingface_hub, "snapshot_download", fake_snapshot)
    path = find_checkpoint("i3d", tmp_path, download=True)
    assert path == tmp_path / "i3d_pretrained_400.pt" and path.read_bytes() == b"weights"
    assert calls == [(SOURCES["i3d"].url, str(path))]
    folder = find_checkpoint("clap", tmp_path, download=True)
    assert folder == tmp_path / "clap-htsat-unfused" and (folder / "config.json").is_file()
    assert calls[1][0] == "laion/clap-htsat-unfused" and not (tmp_path / "clap-htsat-unfused.partial").exists()
    assert find_checkpoint("i3d", tmp_path, download=True) == path and len(calls) == 2  # present: not fetched again
    assert file_hash(path) == file_hash(path) and file_hash(path).startswith("sha256:")


def test_failed_download_is_one_line(tmp_path, monkeypatch):
    import torch.hub

    def offline(url, dst, progress=True):
        raise OSError("network unreachable")

    monkeypatch.setattr(torch.hub, "download_url_to_file", offline)
    with pytest.raises(MissingWeightsError, match=r"AudioCLIP-Full-Training\.pt.*downloading it failed "
                                                  r"\(OSError: network unreachable\)"):
        find_checkpoint("audioclip", tmp_path, download=True)
    assert not (tmp_path / "AudioCLIP-Full-Training.pt").exists()
