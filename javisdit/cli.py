"""What ``scripts/*.py`` run: parse the command line, set up logging, hand the config to a pipeline.

User mistakes (bad flags, configs, files) end the process with one ``error: ...`` line and exit
code 2, never a traceback.
"""

from __future__ import annotations

import importlib
import logging
import pprint
import sys
from collections.abc import Callable, Sequence
from typing import Any

from mmengine.config import Config

from javisdit.config import parse_command_line
from javisdit.errors import UserError
from javisdit.utils.logging import setup_logging

logger = logging.getLogger(__name__)

#: mode -> "module:function" of the pipeline that runs a merged config.
PIPELINES: dict[str, str] = {
    "inference": "javisdit.inference:run",
    "train": "javisdit.training:run",
    "train_prior": "javisdit.training:run_prior",
    "train_vae": "javisdit.training:run_autoencoder",
    "extract": "javisdit.training.features:run",
}


def format_config(cfg: Config) -> str:
    """The merged config as Python assignments, in the config's own key order."""
    lines = []
    for key, value in cfg.to_dict().items():
        indent = " " * (len(key) + 3)
        text = pprint.pformat(value, width=110 - len(indent), sort_dicts=False)
        lines.append(f"{key} = " + text.replace("\n", "\n" + indent))
    return "\n".join(lines) + "\n"


def _pipeline(mode: str) -> Callable[[Config], Any]:
    target = PIPELINES[mode]
    module_name, _, function = target.partition(":")
    try:
        module = importlib.import_module(module_name)
    except ModuleNotFoundError as err:
        if err.name != module_name:
            raise
        raise UserError(f"the {mode} pipeline ({module_name}) is not part of this version of javisdit") from None
    return getattr(module, function)


def main(mode: str, argv: Sequence[str] | None = None, prog: str | None = None) -> int:
    """Run the script of ``mode`` (``inference``, ``train``, ``train_prior``, ``train_vae``, ``extract``); returns the
    exit code."""
    try:
        cfg, args = parse_command_line(mode, argv, prog=prog)
        if args.print_config:
            sys.stdout.write(format_config(cfg))
            return 0
        setup_logging()
        logger.info("config %s merged with the command line", args.config)
        _pipeline(mode)(cfg)
    except UserError as err:
        sys.stderr.write(f"error: {err}\n")
        return 2
    return 0
