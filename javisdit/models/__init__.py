"""Networks and frozen encoders. Importing this package registers them in ``javisdit.registry.MODELS``."""

from javisdit.models import prior, stdit  # noqa: F401  (registers STIBPrior, STDiT3-*, VASTDiT3-*)
