"""Repository-level promises: the README's two set-up commands and CI running the same test command."""

from conftest import readme_setup_commands


def test_readme_has_two_setup_commands():
    commands = readme_setup_commands()
    assert len(commands) == 2
    assert all("\n" not in command for command in commands)  # one command each, copy-pasteable
    assert "scripts/inference.py" in commands[0] and "pytest" in commands[1]


def test_ci_runs_the_readme_test_command(repo):
    test_command = readme_setup_commands()[1]
    ci_lines = [line.strip() for line in (repo / ".ci" / "run").read_text().splitlines()]
    assert test_command in ci_lines
