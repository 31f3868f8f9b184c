"""splatlab.rendering.backends."""
