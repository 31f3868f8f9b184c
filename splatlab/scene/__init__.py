"""splatlab.scene."""
