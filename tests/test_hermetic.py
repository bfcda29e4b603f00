"""The suite passes in any order: a test that set up the scripts' logging leaves nothing behind."""

from __future__ import annotations

import logging
import os
import subprocess
import sys
from pathlib import Path

from javisdit.utils.logging import setup_logging

REPO = Path(__file__).resolve().parents[1]


def test_setup_logging_does_not_leak_into_later_tests():
    # In-process, in this order: the CLI test sets up the scripts' logging (propagate=False on the
    # `javisdit` logger); the tokenizer test then reads the prior's warning through caplog.
    first = "tests/test_cli.py::test_pipeline_receives_the_merged_config"
    second = "tests/models/prior/test_stib.py::test_tokenizer_truncates_like_imagebind"
    result = subprocess.run(
        [sys.executable, "-m", "pytest", "-q", "-p", "no:randomly", "-p", "no:random_order", "-p", "no:cacheprovider",
         first, second],
        cwd=REPO, env={**os.environ, "PYTHONPATH": str(REPO)}, capture_output=True, text=True, timeout=300,
    )
    assert "2 passed" in result.stdout, result.stdout[-3000:] + result.stderr[-2000:]


def test_logger_state_is_restored_between_tests():
    logger = logging.getLogger("javisdit")
    # the autouse fixture of conftest.py undoes this after the test
    setup_logging()
    assert logger.propagate is False and any(getattr(h, "_javisdit", False) for h in logger.handlers)


def test_logger_state_was_restored():
    logger = logging.getLogger("javisdit")
    assert logger.propagate is True
    assert not any(getattr(h, "_javisdit", False) for h in logger.handlers)
