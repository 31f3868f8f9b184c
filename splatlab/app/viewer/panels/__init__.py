"""The viewer's tabs, one module per tab. Each tab is a class built with its
:class:`~splatlab.app.viewer.context.ViewerPanelContext` (the same ``PanelContext`` plugins get)
that keeps its GUI handles and state as its own attributes:

- ``view.ViewPanel`` (View): display, render mode, resolution, SH, background, cameras, points;
- ``paths.PathPanel`` (Paths): keyframes, camera_path.json, mp4;
- ``edit.EditPanel`` (Edit): crop box and filters (a selection filter of the viewer), export;
- ``query.QueryPanel`` / ``segment.SegmentPanel`` (Query / Segment): feature fields;
- ``train.TrainPanel`` (Train): live training;
- ``plugins.PluginsPanel`` (Plugins): one folder per registered plugin, each with its own context.
"""

from __future__ import annotations

from typing import Any

from .paths import KeyframePath, render_path_video

__all__ = ["builtin_panels", "KeyframePath", "render_path_video"]


def builtin_panels(viewer: Any, training: Any = None) -> list[tuple[str, type]]:
    """(tab title, panel class) in tab order for ``viewer``."""
    from .edit import EditPanel
    from .paths import PathPanel
    from .plugins import PluginsPanel
    from .view import ViewPanel

    tabs: list[tuple[str, type]] = [("View", ViewPanel), ("Paths", PathPanel), ("Edit", EditPanel)]
    field = viewer.feature_field
    if field is not None:
        from .query import QueryPanel
        from .segment import SegmentPanel

        if field.text_aligned:
            tabs.append(("Query", QueryPanel))
        tabs.append(("Segment", SegmentPanel))
    if training is not None:
        from .train import TrainPanel

        tabs.append(("Train", TrainPanel))
    tabs.append(("Plugins", PluginsPanel))
    return tabs
