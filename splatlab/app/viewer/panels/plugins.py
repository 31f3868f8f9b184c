"""The Plugins tab: one folder per registered plugin, each built by the plugin's ``panel(ctx)``
with its own :class:`~splatlab.app.viewer.context.ViewerPanelContext` (job slot, report)."""

from __future__ import annotations

from typing import Any


class PluginsPanel:
    """``self.plugins``: name -> plugin class; ``self.instances``: name -> the plugin object
    whose ``panel`` was built; the contexts are ``viewer.contexts[name]``."""

    def __init__(self, ctx: Any) -> None:
        from ....plugins.base import discover_plugins
        from ..context import ViewerPanelContext

        self.ctx = ctx
        v = ctx.viewer
        gui = ctx.gui
        self.plugins, self.load_errors = discover_plugins(extra=v.cfg.plugins)
        self.instances: dict[str, Any] = {}
        if not self.plugins:
            gui.add_markdown("No plugins installed (entry-point group `splatlab.plugins`).")
        for name, cls in self.plugins.items():
            with gui.add_folder(name) as folder:
                pctx = ViewerPanelContext(v, name, folder)
                v.contexts[name] = pctx
                try:
                    plugin = cls()
                    plugin.panel(pctx)
                    self.instances[name] = plugin
                except Exception as e:  # a broken panel must not take the viewer down
                    v.errors.append(f"panel {name}: {type(e).__name__}: {e}")
                    gui.add_markdown(f"**panel failed to build**: `{type(e).__name__}: {e}`")
        for err in self.load_errors:
            gui.add_markdown(f"**plugin {err.name} not loaded** ({err.target}): `{err.error}`")
