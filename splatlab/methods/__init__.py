"""Training methods, one folder each, registered in the ``splatlab.methods`` entry-point group
(pyproject.toml): ``gaussianshader`` (an appearance) and ``feature3dgs`` (the ``features`` field)."""
