"""The browser viewer (viser): ``Viewer``, ``run_viewer``, ``attach_training_viewer``."""

from .server import Viewer, ViewerConfig, run_viewer
from .training import TrainingViewer, attach_training_viewer

__all__ = ["Viewer", "ViewerConfig", "run_viewer", "TrainingViewer", "attach_training_viewer"]
