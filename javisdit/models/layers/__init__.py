"""Building blocks shared by the diffusion backbones: attention, norms, embeddings, MLP."""
