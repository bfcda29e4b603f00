"""Diffusion schedulers. Importing this package registers them in ``javisdit.registry.SCHEDULERS``."""

from javisdit.registry import SCHEDULERS
from javisdit.schedulers.rflow import RFlow, timestep_transform

__all__ = ["RFlow", "timestep_transform"]

SCHEDULERS.register_module(name="rflow", module=RFlow)
