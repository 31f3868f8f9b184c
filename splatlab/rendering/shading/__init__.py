"""splatlab.rendering.shading: physically based shading of Gaussians (GaussianShader).

``envmap``: learnable cube-map light with GGX-prefiltered mips; ``brdf``: split-sum lookup table;
``gaussianshader``: per-Gaussian shading function, normals and the method's losses.
"""

from .brdf import lut_lookup, split_sum_lut
from .envmap import EnvironmentMap, ggx_prefilter_matrix, sample_cube
from .gaussianshader import (
    SHADING_KEYS,
    ShadedGaussians,
    camera_center,
    gaussian_normals,
    normals_from_depth,
    shade_gaussians,
    shortest_axis,
)

__all__ = [
    "SHADING_KEYS",
    "EnvironmentMap",
    "ShadedGaussians",
    "camera_center",
    "gaussian_normals",
    "ggx_prefilter_matrix",
    "lut_lookup",
    "normals_from_depth",
    "sample_cube",
    "shade_gaussians",
    "shortest_axis",
    "split_sum_lut",
]
