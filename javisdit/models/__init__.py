"""Networks and frozen encoders. Importing this package registers them in ``javisdit.registry.MODELS``."""
