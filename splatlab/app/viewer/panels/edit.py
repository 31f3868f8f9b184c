"""The Edit tab: a crop box, opacity and scale filters (together a selection filter of the
viewer), "show only the selection", and the selection exported as a PLY."""

from __future__ import annotations

from typing import Any

import numpy as np

from ..render import selection_mask, subset_params


class EditPanel:
    """The crop box and filters; the viewer ANDs :meth:`mask` into its selection."""

    def __init__(self, ctx: Any) -> None:
        self.ctx = ctx
        v = ctx.viewer
        gui = ctx.gui
        params = v.source.snapshot()
        means = params["means"].detach().cpu().numpy()
        lo, hi = np.percentile(means, [2, 98], axis=0) if len(means) else (np.zeros(3), np.ones(3))
        self.center = (lo + hi) / 2
        self.extent = np.maximum(hi - lo, 1e-3)
        log_s = (
            params["scales"].detach().cpu().numpy().max(axis=1) / np.log(10)
            if len(means)
            else np.zeros(1)
        )
        self.s_lo = float(np.floor(log_s.min() * 10) / 10)
        self.s_hi = float(np.ceil(log_s.max() * 10) / 10 + 0.1)
        self.info = gui.add_markdown("")
        self.crop = gui.add_checkbox("Crop box", False)
        self.box_size = gui.add_vector3(
            "Box size", tuple(float(x) for x in self.extent), min=(0, 0, 0), step=0.01
        )
        self.min_opacity = gui.add_slider(
            "Min opacity", min=0.0, max=1.0, step=0.005, initial_value=0.0
        )
        self.max_scale = gui.add_slider(
            "Max scale (log10)", min=self.s_lo, max=self.s_hi, step=0.05, initial_value=self.s_hi
        )
        self.apply = gui.add_checkbox("Show only the selection", False)
        self.export = gui.add_button("Export selection as PLY")
        self.controls: Any = None  # the crop box's transform gizmo
        self.box: Any = None
        self.last_export: Any = None
        v.selection_filters.append(self)
        self._bind()
        v.on("selection", self._show_count)
        v.on("scene", self._show_count)
        self._show_count()

    # ------------------------------------------------------------ selection filter
    def settings(self) -> tuple:
        c = self.controls
        box = (
            (tuple(c.position), tuple(c.wxyz), tuple(self.box_size.value))
            if self.crop.value and c is not None
            else None
        )
        max_scale = (
            float(10**self.max_scale.value) if self.max_scale.value < self.s_hi else float("inf")
        )
        return box, float(self.min_opacity.value), max_scale

    def selection_key(self) -> Any:
        return repr(self.settings())

    def mask(self, params: dict[str, Any]) -> np.ndarray:
        box, min_opacity, max_scale = self.settings()
        kw: dict[str, Any] = {"min_opacity": min_opacity, "max_scale": max_scale}
        if box is not None:
            kw.update(box_center=box[0], box_wxyz=box[1], box_size=box[2])
        return selection_mask(params, **kw)

    # ------------------------------------------------------------ GUI
    def _show_count(self) -> None:
        mask = self.ctx.viewer.selection()
        self.info.content = f"selected **{int(mask.sum()):,}** of {mask.size:,} Gaussians"

    def update(self) -> None:
        if self.box is not None:
            self.box.dimensions = tuple(self.box_size.value)
        self.ctx.viewer.selection_changed()

    def _bind(self) -> None:
        ctx, v = self.ctx, self.ctx.viewer

        @self.crop.on_update
        @ctx.guard
        def _(_: Any) -> None:
            if self.crop.value and self.controls is None:
                c = v.server.scene.add_transform_controls(
                    "/crop", scale=float(self.extent.max()) * 0.6, position=tuple(self.center)
                )
                self.box = v.server.scene.add_box(
                    "/crop/box",
                    color=(255, 120, 0),
                    dimensions=tuple(self.box_size.value),
                    wireframe=True,
                )
                self.controls = c
                c.on_update(lambda _: ctx.guard(lambda e: self.update())(None))
            elif not self.crop.value and self.controls is not None:
                self.controls.remove()
                self.controls = self.box = None
            self.update()

        for h in (self.box_size, self.min_opacity, self.max_scale):
            h.on_update(ctx.guard(lambda _: self.update()))

        @self.apply.on_update
        @ctx.guard
        def _(_: Any) -> None:
            v.set_filter_view(self.apply.value)

        @self.export.on_click
        @ctx.guard
        def _(event: Any) -> None:
            import torch

            from ....scene.gaussians import save_ply

            mask = v.selection()
            if not mask.any():
                raise ValueError("the selection is empty; widen the crop box or the filters")
            sel = subset_params(v.source.snapshot(), mask)
            out = ctx.out_dir / "selection.ply"
            transform = None if np.allclose(v.source.transform, np.eye(4)) else v.source.transform
            save_ply(out, {k: torch.as_tensor(t) for k, t in sel.items()}, transform=transform)
            self.last_export = out
            if event is not None and getattr(event, "client", None) is not None:
                ctx.download("selection.ply", out)
                ctx.notify("Selection exported", f"{int(mask.sum()):,} Gaussians -> {out}")
