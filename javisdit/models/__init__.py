"""Networks and frozen encoders. Importing this package registers them in ``javisdit.registry.MODELS``."""

from javisdit.models import stdit  # noqa: F401  (registers STDiT3-* and VASTDiT3-*)
