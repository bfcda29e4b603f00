"""Feature networks of the JavisBench evaluator, one module per network."""
