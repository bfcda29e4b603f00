"""Feature networks of the JavisBench evaluator, one module per network."""


def pick_preset(presets: dict[str, dict], size: str, network: str) -> dict:
    """``presets[size]``, or a ValueError naming the network and the valid sizes."""
    if size not in presets:
        raise ValueError(f"unknown {network} size {size!r}; valid: {', '.join(presets)}")
    return presets[size]
