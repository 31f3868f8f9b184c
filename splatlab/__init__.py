"""splatlab: an open workbench for 3D Gaussian Splatting research."""

__version__ = "0.1.0"
