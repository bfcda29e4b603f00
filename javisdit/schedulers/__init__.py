"""Diffusion schedulers. Importing this package registers them in ``javisdit.registry.SCHEDULERS``."""
