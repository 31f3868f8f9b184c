"""Turning a scene into pixels: the rasterization contract and its backends."""

from .rasterize import RENDER_MODES, rasterize

__all__ = ["rasterize", "RENDER_MODES"]
