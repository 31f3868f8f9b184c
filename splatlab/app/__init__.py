"""splatlab.app."""
