"""JavisDiT: joint audio-video generation with a diffusion transformer and spatio-temporal priors."""

__version__ = "0.1.0"
