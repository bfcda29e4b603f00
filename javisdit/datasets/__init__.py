"""Training datasets. Importing this package registers them in ``javisdit.registry.DATASETS``."""
