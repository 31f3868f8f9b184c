"""Buttons shared by the Query and Segment tabs: Delete / Extract / Export PLY / Restore, acting
on a panel's current mask."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import numpy as np

from ..render import subset_params


class SelectionActions:
    """The four buttons (``self.handles``) acting on ``current() -> bool [N] | None``."""

    def __init__(self, ctx: Any, prefix: str, current: Callable[[], np.ndarray | None]) -> None:
        self.ctx = ctx
        self.prefix = prefix
        self.current = current
        self.last_export: Any = None
        gui = ctx.gui
        v = ctx.viewer
        delete = gui.add_button(
            "Delete selected", hint="Remove them from the scene shown (files untouched)"
        )
        extract = gui.add_button("Extract selected", hint="Keep only them in the scene shown")
        export = gui.add_button("Export selected as PLY")
        restore = gui.add_button("Restore the full scene")
        self.handles = {"delete": delete, "extract": extract, "export": export, "restore": restore}
        delete.on_click(
            ctx.guard(lambda _: v.replace_scene(subset_params(v.source.snapshot(), ~self.mask())))
        )
        extract.on_click(
            ctx.guard(lambda _: v.replace_scene(subset_params(v.source.snapshot(), self.mask())))
        )
        restore.on_click(ctx.guard(lambda _: v.restore_scene()))
        export.on_click(ctx.guard(self._export))

    def __getitem__(self, key: str) -> Any:
        return self.handles[key]

    def mask(self) -> np.ndarray:
        m = self.current()
        if m is None or not np.asarray(m).any():
            raise ValueError("nothing is selected")
        n = self.ctx.viewer.source.n_gaussians
        if len(m) != n:
            raise ValueError(
                f"the selection was made on a scene of {len(m):,} Gaussians; the scene now has "
                f"{n:,} (after a delete / extract / restore): select again"
            )
        return np.asarray(m, bool)

    def _export(self, event: Any) -> None:
        import torch

        from ....scene.query import export_selection_ply

        ctx, v = self.ctx, self.ctx.viewer
        m = self.mask()
        params = {k: torch.as_tensor(t) for k, t in v.source.snapshot().items()}
        out = ctx.out_dir / f"{self.prefix}_selection.ply"
        transform = None if np.allclose(v.source.transform, np.eye(4)) else v.source.transform
        export_selection_ply(out, params, torch.from_numpy(m), transform=transform)
        self.last_export = out
        if getattr(event, "client", None) is not None:
            ctx.download(out.name, out)
            ctx.notify("Selection exported", f"{int(m.sum()):,} Gaussians -> {out}")
