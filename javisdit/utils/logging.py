"""Process-wide logging set-up, done once by each script (rank 0 talks, other ranks only warn)."""

from __future__ import annotations

import logging
import os
import sys

_FORMAT = "[%(asctime)s %(levelname)s %(name)s] %(message)s"
_DATEFMT = "%Y-%m-%d %H:%M:%S"


def get_rank() -> int:
    """This process's global rank from the torchrun environment (0 when not launched by torchrun)."""
    return int(os.environ.get("RANK", "0"))


def setup_logging(level: int = logging.INFO, log_file: str | None = None, rank: int | None = None) -> None:
    """Send the ``javisdit`` loggers to stderr (and ``log_file``) on rank 0; other ranks log warnings only.

    Calling it again replaces the handlers it installed before, so it is safe to call from tests.
    """
    rank = get_rank() if rank is None else rank
    root = logging.getLogger("javisdit")
    for handler in list(root.handlers):
        if getattr(handler, "_javisdit", False):
            root.removeHandler(handler)
            handler.close()
    handlers: list[logging.Handler] = [logging.StreamHandler(sys.stderr)]
    if log_file is not None and rank == 0:
        handlers.append(logging.FileHandler(log_file))
    for handler in handlers:
        handler.setFormatter(logging.Formatter(_FORMAT, _DATEFMT))
        handler._javisdit = True  # type: ignore[attr-defined]
        root.addHandler(handler)
    root.setLevel(level if rank == 0 else max(level, logging.WARNING))
    root.propagate = False
