"""Feature 3DGS (Zhou et al., CVPR 2024): distilled per-Gaussian features (the ``features`` field),
the queryable field of a trained scene, text queries and clicks."""
