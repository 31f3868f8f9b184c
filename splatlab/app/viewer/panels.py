"""The viewer's GUI tabs: View, Paths, Edit, Train and Plugins. Callbacks are small and wrapped
by ``Viewer.guard`` so an exception becomes a browser notification."""

from __future__ import annotations

import tempfile
import threading
import time
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from .render import ViewCamera, c2w_to_wxyz_position, subset_params

if TYPE_CHECKING:
    from .server import Viewer

DISPLAYS = ("browser splats", "server render")


def _png_bytes(img: np.ndarray) -> bytes:
    import imageio.v3 as iio

    return iio.imwrite("<bytes>", img, extension=".png")


# ------------------------------------------------------------------------------ View


def build_view_panel(v: Viewer) -> None:
    gui = v.server.gui
    g = v.gui_values
    v._status_md = gui.add_markdown(v._status_text())
    display = gui.add_dropdown(
        "Display",
        DISPLAYS,
        initial_value=g["display"],
        hint="browser splats: WebGL, RGB from SH 0; server render: full SH, all modes",
    )
    mode = gui.add_dropdown("Render mode", tuple(v.modes), initial_value="RGB")
    res = gui.add_slider("Resolution", min=64, max=2048, step=32, initial_value=g["max_resolution"])
    mres = gui.add_slider(
        "Moving resolution", min=32, max=1024, step=16, initial_value=g["moving_resolution"]
    )
    sh = gui.add_slider(
        "SH degree",
        min=0,
        max=max(v.max_sh, 1),
        step=1,
        initial_value=v.max_sh,
        disabled=v.max_sh == 0,
    )
    bg = gui.add_rgb("Background", (0, 0, 0))
    with gui.add_folder("Depth", expand_by_default=False):
        near = gui.add_number("Near (0 = auto)", 0.0, min=0.0, step=0.01)
        far = gui.add_number("Far (0 = auto)", 0.0, min=0.0, step=0.01)
    show_cams = gui.add_checkbox("Training cameras", True, disabled=v._viewmats() is None)
    show_pts = gui.add_checkbox("SfM points", False, disabled=v.source.points is None)
    pt_size = gui.add_slider(
        "Point size",
        min=0.0005,
        max=0.05,
        step=0.0005,
        initial_value=0.005,
        disabled=v.source.points is None,
    )
    shot = gui.add_button("Screenshot (PNG)")
    v.gui_handles = {"display": display, "mode": mode, "resolution": res, "sh_degree": sh}

    def set_display(value: str) -> None:
        g["display"] = value
        if v._splat_handle is not None:
            v._splat_handle.visible = value == DISPLAYS[0]
        v.changed()

    @display.on_update
    @v.guard
    def _(_: Any) -> None:
        if display.value == DISPLAYS[0] and g["mode"] != "RGB":
            mode.value = "RGB"  # the browser path has RGB only
        set_display(display.value)

    @mode.on_update
    @v.guard
    def _(_: Any) -> None:
        g["mode"] = mode.value
        if mode.value != "RGB" and display.value != DISPLAYS[1]:
            display.value = DISPLAYS[1]
            set_display(DISPLAYS[1])
        v.changed()

    def bind(handle: Any, key: str, conv: Any = lambda x: x) -> None:
        @handle.on_update
        @v.guard
        def _(_: Any) -> None:
            g[key] = conv(handle.value)
            v.changed()

    bind(res, "max_resolution", int)
    bind(mres, "moving_resolution", int)
    bind(sh, "sh_degree", int)
    bind(bg, "background", lambda c: tuple(float(x) / 255.0 for x in c))
    bind(near, "near", float)
    bind(far, "far", float)

    @show_cams.on_update
    @v.guard
    def _(_: Any) -> None:
        v._show_frustums = bool(show_cams.value)
        for f in v._frustums:
            f.visible = show_cams.value and f is not v._hidden_frustum

    @show_pts.on_update
    @v.guard
    def _(_: Any) -> None:
        if v._points_handle is not None:
            v._points_handle.visible = show_pts.value

    @pt_size.on_update
    @v.guard
    def _(_: Any) -> None:
        if v._points_handle is not None:
            v._points_handle.point_size = float(pt_size.value)

    @shot.on_click
    @v.guard
    def _(event: Any) -> None:
        cam = v.client_camera(event.client)
        if cam is None:
            raise RuntimeError("this browser has not sent its camera yet")
        img = v.render(cam.scaled(int(g["max_resolution"])), g["mode"])
        event.client.send_file_download("screenshot.png", _png_bytes(img))


# ------------------------------------------------------------------------------ Paths


class KeyframePath:
    """Keyframes (OpenCV viewmats + vertical fov) and the path through them."""

    def __init__(self) -> None:
        self.viewmats: list[np.ndarray] = []
        self.fovs: list[float] = []

    def add(self, cam: ViewCamera) -> None:
        self.viewmats.append(cam.viewmat.copy())
        self.fovs.append(float(np.rad2deg(2 * np.arctan(cam.height / 2 / cam.K[1, 1]))))

    def frames(
        self, n: int, width: int, height: int, closed: bool
    ) -> tuple[np.ndarray, np.ndarray]:
        from ...scene.camera_path import interpolate_path, intrinsics_from_fov

        if not self.viewmats:
            raise ValueError("add at least one keyframe first")
        Ks = intrinsics_from_fov(np.asarray(self.fovs), width, height)
        return interpolate_path(
            np.stack(self.viewmats), Ks, n, closed=closed and len(self.viewmats) > 2
        )

    def to_camera_path(self, n: int, width: int, height: int, fps: float, closed: bool) -> Any:
        from ...scene.camera_path import CameraPath
        from ...scene.cameras import opencv_viewmat_to_opengl_c2w

        vms, Ks = self.frames(n, width, height, closed)
        keys = [
            {
                "matrix": [float(x) for x in opencv_viewmat_to_opengl_c2w(vm).reshape(-1)],
                "fov": fov,
                "aspect": width / height,
            }
            for vm, fov in zip(self.viewmats, self.fovs)
        ]
        return CameraPath(
            vms,
            Ks,
            width,
            height,
            fps=fps,
            seconds=n / fps,
            keyframes=keys,
            extra={"is_cycle": closed},
        )

    def load(self, cp: Any) -> None:
        vms, Ks = cp.keyframe_cameras()
        if len(vms) == 0:  # no viewer keyframes stored: use (at most 30) of the frames
            idx = np.unique(
                np.linspace(0, len(cp.viewmats) - 1, min(len(cp.viewmats), 30)).round().astype(int)
            )
            vms, Ks = cp.viewmats[idx], cp.Ks[idx]
        self.viewmats = [np.asarray(m) for m in vms]
        self.fovs = [float(np.rad2deg(2 * np.arctan(cp.height / 2 / K[1, 1]))) for K in Ks]


def build_path_panel(v: Viewer) -> None:
    from ...scene.camera_path import read_camera_path, write_camera_path

    gui = v.server.gui
    path = KeyframePath()
    v.keyframes = path
    info = gui.add_markdown("0 keyframes")
    add = gui.add_button("Add keyframe (current view)")
    with gui.add_folder("Edit keyframes", expand_by_default=False):
        undo = gui.add_button("Remove last")
        clear = gui.add_button("Clear")
    n_frames = gui.add_number("Frames", 90, min=2, max=10000, step=1)
    fps = gui.add_number("FPS", 30, min=1, max=120, step=1)
    size = gui.add_vector2("Render size (W, H)", (640, 480), min=(16, 16), max=(4096, 4096), step=1)
    closed = gui.add_checkbox("Loop", False)
    preview = gui.add_button("Preview in this browser")
    save = gui.add_button("Save camera_path.json")
    load = gui.add_upload_button("Load camera_path.json", mime_type="application/json")
    render = gui.add_button("Render path to mp4")
    bar = gui.add_progress_bar(0.0, visible=False)
    busy = threading.Lock()

    def refresh() -> None:
        info.content = f"{len(path.viewmats)} keyframes"
        v.server.scene.remove_by_name("/path")
        if len(path.viewmats) >= 2:
            w, h = (int(x) for x in size.value)
            vms, _ = path.frames(max(2 * len(path.viewmats), 50), w, h, closed.value)
            pts = np.linalg.inv(vms)[:, :3, 3]
            v.server.scene.add_spline_catmull_rom(
                "/path", points=pts, line_width=2.0, color=(255, 200, 0)
            )

    @add.on_click
    @v.guard
    def _(event: Any) -> None:
        cam = v.client_camera(event.client)
        if cam is None:
            raise RuntimeError("this browser has not sent its camera yet")
        path.add(cam)
        refresh()

    @undo.on_click
    @v.guard
    def _(_: Any) -> None:
        if path.viewmats:
            path.viewmats.pop()
            path.fovs.pop()
        refresh()

    @clear.on_click
    @v.guard
    def _(_: Any) -> None:
        path.viewmats.clear()
        path.fovs.clear()
        refresh()

    @preview.on_click
    @v.guard
    def _(event: Any) -> None:
        w, h = (int(x) for x in size.value)
        vms, Ks = path.frames(int(n_frames.value), w, h, closed.value)
        client, dt = event.client, 1.0 / float(fps.value)
        for vm, K in zip(vms, Ks):
            wxyz, pos = c2w_to_wxyz_position(vm)
            with client.atomic():
                client.camera.fov = float(2 * np.arctan(h / 2 / K[1, 1]))
                client.camera.position = pos
                client.camera.wxyz = wxyz
            time.sleep(dt)

    @save.on_click
    @v.guard
    def _(event: Any) -> None:
        w, h = (int(x) for x in size.value)
        cp = path.to_camera_path(int(n_frames.value), w, h, float(fps.value), closed.value)
        out = v.source.out_dir / "camera_path.json"
        write_camera_path(out, cp)
        event.client.send_file_download("camera_path.json", out.read_bytes())
        event.client.add_notification("Camera path saved", str(out), auto_close_seconds=5.0)

    @load.on_upload
    @v.guard
    def _(event: Any) -> None:
        from ...plugins.base import check_upload

        f = load.value
        check_upload(f.name, f.content, (".json",), v.max_upload_bytes)
        with tempfile.TemporaryDirectory() as d:
            p = Path(d) / "camera_path.json"
            p.write_bytes(f.content)
            cp = read_camera_path(p)
        path.load(cp)
        size.value = (cp.width, cp.height)
        fps.value = cp.fps
        n_frames.value = len(cp)
        refresh()

    @render.on_click
    @v.guard
    def _(event: Any) -> None:
        if not busy.acquire(blocking=False):
            raise RuntimeError("a video is already being rendered")
        try:
            w, h = (int(x) for x in size.value)
            vms, Ks = path.frames(int(n_frames.value), w, h, closed.value)
            bar.visible = True
            out = v.source.out_dir / "camera_path.mp4"
            render_path_video(
                v,
                vms,
                Ks,
                w,
                h,
                float(fps.value),
                out,
                progress=lambda i, n: setattr(bar, "value", 100.0 * i / n),
            )
            event.client.send_file_download("camera_path.mp4", out.read_bytes())
        finally:
            bar.visible = False
            busy.release()


def render_path_video(
    v: Viewer,
    viewmats: np.ndarray,
    Ks: np.ndarray,
    width: int,
    height: int,
    fps: float,
    out: Path,
    progress: Any = None,
) -> Path:
    """Render frames [F] (viewmats [F, 4, 4], Ks [F, 3, 3]) in the current mode into ``out``
    (.mp4, written to a temporary name and renamed when complete)."""
    import os

    import imageio.v2 as iio2

    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = out.with_name(f".{out.stem}.tmp{out.suffix}")
    params = v.displayed_params()
    writer = iio2.get_writer(tmp, fps=fps, codec="libx264", quality=8, macro_block_size=1)
    try:
        for i, (vm, K) in enumerate(zip(viewmats, Ks)):
            writer.append_data(
                v.render(ViewCamera(vm, K, width, height), v.gui_values["mode"], params=params)
            )
            if progress is not None:
                progress(i + 1, len(viewmats))
    except BaseException:
        writer.close()
        tmp.unlink(missing_ok=True)
        raise
    writer.close()
    os.replace(tmp, out)
    return out


# ------------------------------------------------------------------------------ Edit


def build_edit_panel(v: Viewer) -> None:
    import torch

    gui = v.server.gui
    g = v.gui_values
    params = v.source.snapshot()
    means = params["means"].detach().cpu().numpy()
    lo, hi = np.percentile(means, [2, 98], axis=0) if len(means) else (np.zeros(3), np.ones(3))
    center = (lo + hi) / 2
    extent = np.maximum(hi - lo, 1e-3)
    log_s = (
        params["scales"].detach().cpu().numpy().max(axis=1) / np.log(10)
        if len(means)
        else np.zeros(1)
    )
    s_lo, s_hi = float(np.floor(log_s.min() * 10) / 10), float(np.ceil(log_s.max() * 10) / 10 + 0.1)

    info = gui.add_markdown("")
    crop = gui.add_checkbox("Crop box", False)
    box_size = gui.add_vector3(
        "Box size", tuple(float(x) for x in extent), min=(0, 0, 0), step=0.01
    )
    min_opa = gui.add_slider("Min opacity", min=0.0, max=1.0, step=0.005, initial_value=0.0)
    max_scale = gui.add_slider(
        "Max scale (log10)", min=s_lo, max=s_hi, step=0.05, initial_value=s_hi
    )
    apply_view = gui.add_checkbox("Show only the selection", False)
    export = gui.add_button("Export selection as PLY")
    state: dict[str, Any] = {"controls": None, "box": None}
    v.edit_handles = {
        "crop": crop,
        "min_opacity": min_opa,
        "max_scale": max_scale,
        "apply": apply_view,
        "export": export,
    }

    def update(refresh_splats: bool = True) -> None:
        c = state["controls"]
        g["crop"] = (
            (tuple(c.position), tuple(c.wxyz), tuple(box_size.value)) if crop.value and c else None
        )
        g["min_opacity"] = float(min_opa.value)
        g["max_scale"] = float(10**max_scale.value) if max_scale.value < s_hi else float("inf")
        g["filter_view"] = bool(apply_view.value)
        mask = v.selection()
        info.content = f"selected **{int(mask.sum()):,}** of {mask.size:,} Gaussians"
        if state["box"] is not None:
            state["box"].dimensions = tuple(box_size.value)
        if refresh_splats and g["filter_view"]:
            v.refresh_splats()
        v.changed()

    @crop.on_update
    @v.guard
    def _(_: Any) -> None:
        if crop.value and state["controls"] is None:
            c = v.server.scene.add_transform_controls(
                "/crop", scale=float(extent.max()) * 0.6, position=tuple(center)
            )
            state["box"] = v.server.scene.add_box(
                "/crop/box", color=(255, 120, 0), dimensions=tuple(box_size.value), wireframe=True
            )
            state["controls"] = c

            @c.on_update
            def _(_: Any) -> None:
                v.guard(lambda e: update())(None)

        elif not crop.value and state["controls"] is not None:
            state["controls"].remove()
            state["controls"] = state["box"] = None
        update()

    for h in (box_size, min_opa, max_scale):
        h.on_update(v.guard(lambda _: update()))

    @apply_view.on_update
    @v.guard
    def _(_: Any) -> None:
        update(refresh_splats=False)
        v.refresh_splats()

    @export.on_click
    @v.guard
    def _(event: Any) -> None:
        from ...scene.gaussians import save_ply

        mask = v.selection()
        if not mask.any():
            raise ValueError("the selection is empty; widen the crop box or the filters")
        sel = subset_params(v.source.snapshot(), mask)
        out = v.source.out_dir / "selection.ply"
        transform = None if np.allclose(v.source.transform, np.eye(4)) else v.source.transform
        save_ply(out, {k: torch.as_tensor(t) for k, t in sel.items()}, transform=transform)
        if event is not None and getattr(event, "client", None) is not None:
            event.client.send_file_download("selection.ply", out.read_bytes())
            event.client.add_notification(
                "Selection exported",
                f"{int(mask.sum()):,} Gaussians -> {out}",
                auto_close_seconds=5.0,
            )

    v._edit_update = update
    update(refresh_splats=False)


# ------------------------------------------------------------------------------ Train


def build_train_panel(v: Viewer, training: Any) -> None:
    import viser.uplot as uplot

    gui = v.server.gui
    stats_md = gui.add_markdown("waiting for the first step...")
    pause = gui.add_button("Pause training", icon=None)
    refresh_s = gui.add_slider(
        "Refresh splats every (s)", min=0.5, max=30.0, step=0.5, initial_value=2.0
    )
    plot = gui.add_uplot(
        data=(np.zeros(1), np.zeros(1)),
        series=(uplot.Series(label="step"), uplot.Series(label="loss", stroke="orange", width=2)),
        title="training loss",
        aspect=1.6,
    )
    training.gui = {"stats": stats_md, "pause": pause, "plot": plot, "refresh_s": refresh_s}

    @pause.on_click
    @v.guard
    def _(_: Any) -> None:
        ctl = training.trainer.control
        if ctl.paused:
            ctl.resume()
            pause.label = "Pause training"
        else:
            ctl.pause()
            pause.label = "Resume training"


# ------------------------------------------------------------------------------ Plugins


def build_plugins_panel(v: Viewer) -> None:
    from ...plugins.base import discover_plugins
    from .server import ViewerContext

    gui = v.server.gui
    plugins, errors = discover_plugins(extra=v.cfg.plugins)
    v.plugins = plugins
    if not plugins:
        gui.add_markdown("No plugins installed (entry-point group `splatlab.plugins`).")
    for name, cls in plugins.items():
        with gui.add_folder(name) as folder:
            ctx = ViewerContext(v, gui, name, folder)
            try:
                cls().panel(ctx)
            except Exception as e:  # a broken panel must not take the viewer down
                v.errors.append(f"panel {name}: {type(e).__name__}: {e}")
                gui.add_markdown(f"**panel failed to build**: `{type(e).__name__}: {e}`")
    for err in errors:
        gui.add_markdown(f"**plugin {err.name} not loaded** ({err.target}): `{err.error}`")
