"""splatlab.models."""
