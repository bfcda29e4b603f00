"""Repository-level promises: the README's two set-up commands and CI running the same test command."""

import re


def _commands(readme: str) -> list[str]:
    setup = readme.split("## Set-up", 1)[1].split("\n## ", 1)[0]
    return [block.strip() for block in re.findall(r"```bash\n(.*?)```", setup, flags=re.S)]


def test_readme_has_two_setup_commands(repo):
    commands = _commands((repo / "README.md").read_text())
    assert len(commands) == 2
    assert all("\n" not in command for command in commands)  # one command each, copy-pasteable
    assert "scripts/inference.py" in commands[0] and "pytest" in commands[1]


def test_ci_runs_the_readme_test_command(repo):
    test_command = _commands((repo / "README.md").read_text())[1]
    ci_lines = [line.strip() for line in (repo / ".ci" / "run").read_text().splitlines()]
    assert test_command in ci_lines
