"""Networks and frozen encoders. Importing this package registers them in ``javisdit.registry.MODELS``."""

from javisdit.models import prior, stdit, text, vae, wan  # noqa: F401  (registers every model type)
