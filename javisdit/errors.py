"""Errors that mean "the user asked for something we cannot do", reported without a traceback."""


class UserError(Exception):
    """A mistake in the user's input (flags, config, files): the scripts print it as one line and exit 2."""


class ConfigError(UserError, ValueError):
    """An invalid config value, CLI flag or ``--cfg-options`` override."""


class MissingWeightsError(UserError, FileNotFoundError):
    """Weights that are neither on disk nor downloadable; the message says how to get them."""


class WeightsMismatchError(UserError, ValueError):
    """A checkpoint whose keys or shapes do not fit the model; the message lists them."""
