"""Prompt lists and output names."""

from pathlib import Path

import pytest

from javisdit.errors import UserError
from javisdit.inference.prompts import Prompt, load_prompts, output_stem, safe_file_name


def test_prompts_from_the_command_line_are_numbered_from_start_index():
    prompts = load_prompts(["a", "b"], start_index=5)
    assert [(p.index, p.text) for p in prompts] == [(5, "a"), (6, "b")]


def test_txt_file_sliced(tmp_path):
    path = tmp_path / "p.txt"
    path.write_text("one\n\n two \nthree\nfour\n")
    prompts = load_prompts(prompt_path=str(path), start_index=1, end_index=3)
    assert [(p.index, p.text) for p in prompts] == [(1, "two"), (2, "three")]


def test_csv_file(tmp_path):
    path = tmp_path / "p.csv"
    path.write_text('path,text,audio_text\nx.mp4,"a dog, barking",barks\ny.mp4,rain,\n')
    prompts = load_prompts(prompt_path=str(path))
    assert prompts == [Prompt(0, "a dog, barking", "barks"), Prompt(1, "rain", None)]


@pytest.mark.parametrize(
    "content, name, message",
    [(None, "missing.txt", "no such file"), ("", "empty.txt", "holds no prompts"),
     ("path,caption\nx,y\n", "bad.csv", "the CSV has no 'text' column \\(columns: path, caption\\)")],
)
def test_bad_prompt_files(tmp_path, content, name, message):
    path = tmp_path / name
    if content is not None:
        path.write_text(content)
    with pytest.raises(UserError, match=message):
        load_prompts(prompt_path=str(path))


def test_other_errors(tmp_path):
    with pytest.raises(UserError, match="no prompts: pass --prompt"):
        load_prompts()
    with pytest.raises(UserError, match="prompt 1 is empty"):
        load_prompts(["a", "  "])
    (tmp_path / "p.txt").write_text("a\nb\n")
    with pytest.raises(UserError, match="no prompts between --start-index 5"):
        load_prompts(prompt_path=str(tmp_path / "p.txt"), start_index=5)


def test_names():
    assert safe_file_name("A dog/cat: ../../etc? *yes*") == "A dog_cat_ .._.._etc_ _yes_"
    assert safe_file_name("...hidden") == "hidden" and safe_file_name("???") == "_"
    assert len(safe_file_name("x" * 500)) == 150
    p = Prompt(7, "a dog barks")
    assert output_stem(Path("out"), p, None, False, 0, 1) == Path("out/sample_0007")
    assert output_stem(Path("out"), p, "clip", False, 2, 3) == Path("out/clip_0007-2")
    assert output_stem(Path("out"), p, "v1-", True, 0, 1) == Path("out/v1-a dog barks")
