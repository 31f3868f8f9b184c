"""The View tab: display path, render mode, resolutions, SH degree, background, depth range,
training cameras, SfM points, screenshot."""

from __future__ import annotations

from typing import Any

from ....plugins.base import encode_png

DISPLAYS = ("browser splats", "server render")


class ViewPanel:
    """Display settings of the viewer (``viewer.gui_values``) and the status line."""

    def __init__(self, ctx: Any) -> None:
        self.ctx = ctx
        v = ctx.viewer
        gui = ctx.gui
        g = v.gui_values
        self.status = gui.add_markdown(v.status_text())
        self.display = gui.add_dropdown(
            "Display",
            DISPLAYS,
            initial_value=g["display"],
            hint="browser splats: WebGL, RGB from SH 0; server render: full SH, all modes",
        )
        self.mode = gui.add_dropdown("Render mode", tuple(v.modes), initial_value="RGB")
        self.resolution = gui.add_slider(
            "Resolution", min=64, max=2048, step=32, initial_value=g["max_resolution"]
        )
        self.moving_resolution = gui.add_slider(
            "Moving resolution", min=32, max=1024, step=16, initial_value=g["moving_resolution"]
        )
        self.sh_degree = gui.add_slider(
            "SH degree",
            min=0,
            max=max(v.max_sh, 1),
            step=1,
            initial_value=v.max_sh,
            disabled=v.max_sh == 0,
        )
        self.background = gui.add_rgb("Background", (0, 0, 0))
        with gui.add_folder("Depth", expand_by_default=False):
            self.near = gui.add_number("Near (0 = auto)", 0.0, min=0.0, step=0.01)
            self.far = gui.add_number("Far (0 = auto)", 0.0, min=0.0, step=0.01)
        self.show_cams = gui.add_checkbox("Training cameras", True, disabled=v._viewmats() is None)
        self.show_pts = gui.add_checkbox("SfM points", False, disabled=v.source.points is None)
        self.point_size = gui.add_slider(
            "Point size",
            min=0.0005,
            max=0.05,
            step=0.0005,
            initial_value=0.005,
            disabled=v.source.points is None,
        )
        self.screenshot = gui.add_button("Screenshot (PNG)")
        self._bind()

    def _bind(self) -> None:
        ctx, v = self.ctx, self.ctx.viewer
        g = v.gui_values
        display, mode = self.display, self.mode

        @display.on_update
        @ctx.guard
        def _(_: Any) -> None:
            if display.value == DISPLAYS[0] and g["mode"] != "RGB":
                mode.value = "RGB"  # the browser path has RGB only
            v.set_display(display.value)

        @mode.on_update
        @ctx.guard
        def _(_: Any) -> None:
            if mode.value != g["mode"]:
                v.set_mode(mode.value)

        def bind(handle: Any, key: str, conv: Any = lambda x: x) -> None:
            @handle.on_update
            @ctx.guard
            def _(_: Any) -> None:
                g[key] = conv(handle.value)
                v.changed()

        bind(self.resolution, "max_resolution", int)
        bind(self.moving_resolution, "moving_resolution", int)
        bind(self.sh_degree, "sh_degree", int)
        bind(self.background, "background", lambda c: tuple(float(x) / 255.0 for x in c))
        bind(self.near, "near", float)
        bind(self.far, "far", float)

        self.show_cams.on_update(ctx.guard(lambda _: v.set_frustums_visible(self.show_cams.value)))
        self.show_pts.on_update(ctx.guard(lambda _: v.set_points_visible(self.show_pts.value)))
        self.point_size.on_update(
            ctx.guard(
                lambda _: v.set_points_visible(self.show_pts.value, float(self.point_size.value))
            )
        )

        @self.screenshot.on_click
        @ctx.guard
        def _(event: Any) -> None:
            cam = v.client_camera(event.client)
            if cam is None:
                raise RuntimeError("this browser has not sent its camera yet")
            img = v.render(cam.scaled(int(g["max_resolution"])), g["mode"])
            event.client.send_file_download("screenshot.png", encode_png(img))

        # follow the viewer: modes added / removed by panels, mode and display set elsewhere
        v.on("modes", self._on_modes)
        v.on("mode", self._on_mode)
        v.on("display", self._on_display)
        v.on("frame", lambda ms: setattr(self.status, "content", v.status_text(ms)))
        v.on("scene", lambda: setattr(self.status, "content", v.status_text()))

    def _on_modes(self, modes: list[str]) -> None:
        current = self.ctx.viewer.gui_values["mode"]
        self.mode.options = tuple(modes)
        if current in modes and self.mode.value != current:
            self.mode.value = current

    def _on_mode(self, mode: str) -> None:
        if self.mode.value != mode:
            self.mode.value = mode

    def _on_display(self, display: str) -> None:
        if self.display.value != display:
            self.display.value = display
