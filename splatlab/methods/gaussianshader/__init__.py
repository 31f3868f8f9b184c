"""GaussianShader (Jiang et al., CVPR 2024): reflective shading as the ``gaussianshader`` appearance."""
