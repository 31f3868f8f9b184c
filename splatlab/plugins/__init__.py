"""splatlab.plugins."""
