"""splatlab.rendering.shading."""
