"""How a scene is fitted: one trainer composed of registered extensions (strategy, appearance,
fields), see :mod:`splatlab.training.extension` and :mod:`splatlab.training.registry`."""
