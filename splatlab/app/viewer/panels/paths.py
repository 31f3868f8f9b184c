"""The Paths tab: keyframes from the current view, a spline preview, camera_path.json (nerfstudio
format) save / load, and an mp4 rendered as a background job."""

from __future__ import annotations

import os
import tempfile
import time
from pathlib import Path
from typing import Any

import numpy as np

from ..render import ViewCamera, c2w_to_wxyz_position


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
        from ....scene.camera_path import interpolate_path, intrinsics_from_fov

        if not self.viewmats:
            raise ValueError("add at least one keyframe first")
        Ks = intrinsics_from_fov(np.asarray(self.fovs), width, height)
        return interpolate_path(
            np.stack(self.viewmats), Ks, n, closed=closed and len(self.viewmats) > 2
        )

    def to_camera_path(self, n: int, width: int, height: int, fps: float, closed: bool) -> Any:
        from ....scene.camera_path import CameraPath
        from ....scene.cameras import opencv_viewmat_to_opengl_c2w

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


class PathPanel:
    """Keyframes (``self.path``) and what is made of them."""

    def __init__(self, ctx: Any) -> None:
        self.ctx = ctx
        gui = ctx.gui
        self.path = KeyframePath()
        self.info = gui.add_markdown("0 keyframes")
        self.add = gui.add_button("Add keyframe (current view)")
        with gui.add_folder("Edit keyframes", expand_by_default=False):
            self.undo = gui.add_button("Remove last")
            self.clear = gui.add_button("Clear")
        self.n_frames = gui.add_number("Frames", 90, min=2, max=10000, step=1)
        self.fps = gui.add_number("FPS", 30, min=1, max=120, step=1)
        self.size = gui.add_vector2(
            "Render size (W, H)", (640, 480), min=(16, 16), max=(4096, 4096), step=1
        )
        self.closed = gui.add_checkbox("Loop", False)
        self.preview = gui.add_button("Preview in this browser")
        self.save = gui.add_button("Save camera_path.json")
        self.load = gui.add_upload_button("Load camera_path.json", mime_type="application/json")
        self.render = gui.add_button("Render path to mp4")
        self._bind()

    def _wh(self) -> tuple[int, int]:
        w, h = (int(x) for x in self.size.value)
        return w, h

    def refresh(self) -> None:
        v, path = self.ctx.viewer, self.path
        self.info.content = f"{len(path.viewmats)} keyframes"
        v.server.scene.remove_by_name("/path")
        if len(path.viewmats) >= 2:
            w, h = self._wh()
            vms, _ = path.frames(max(2 * len(path.viewmats), 50), w, h, self.closed.value)
            pts = np.linalg.inv(vms)[:, :3, 3]
            v.server.scene.add_spline_catmull_rom(
                "/path", points=pts, line_width=2.0, color=(255, 200, 0)
            )

    def _bind(self) -> None:
        from ....scene.camera_path import read_camera_path, write_camera_path

        ctx, v, path = self.ctx, self.ctx.viewer, self.path

        @self.add.on_click
        @ctx.guard
        def _(event: Any) -> None:
            cam = v.client_camera(event.client)
            if cam is None:
                raise RuntimeError("this browser has not sent its camera yet")
            path.add(cam)
            self.refresh()

        @self.undo.on_click
        @ctx.guard
        def _(_: Any) -> None:
            if path.viewmats:
                path.viewmats.pop()
                path.fovs.pop()
            self.refresh()

        @self.clear.on_click
        @ctx.guard
        def _(_: Any) -> None:
            path.viewmats.clear()
            path.fovs.clear()
            self.refresh()

        @self.preview.on_click
        @ctx.guard
        def _(event: Any) -> None:
            w, h = self._wh()
            vms, Ks = path.frames(int(self.n_frames.value), w, h, self.closed.value)
            client, dt = event.client, 1.0 / float(self.fps.value)
            for vm, K in zip(vms, Ks):
                wxyz, pos = c2w_to_wxyz_position(vm)
                with client.atomic():
                    client.camera.fov = float(2 * np.arctan(h / 2 / K[1, 1]))
                    client.camera.position = pos
                    client.camera.wxyz = wxyz
                time.sleep(dt)

        @self.save.on_click
        @ctx.guard
        def _(event: Any) -> None:
            w, h = self._wh()
            cp = path.to_camera_path(
                int(self.n_frames.value), w, h, float(self.fps.value), self.closed.value
            )
            out = ctx.out_dir / "camera_path.json"
            write_camera_path(out, cp)
            ctx.download("camera_path.json", out)
            ctx.notify("Camera path saved", str(out))

        @self.load.on_upload
        @ctx.guard
        def _(event: Any) -> None:
            f = self.load.value
            ctx.check_upload(f.name, f.content, (".json",), v.max_upload_bytes)
            with tempfile.TemporaryDirectory() as d:
                p = Path(d) / "camera_path.json"
                p.write_bytes(f.content)
                cp = read_camera_path(p)
            path.load(cp)
            self.size.value = (cp.width, cp.height)
            self.fps.value = cp.fps
            self.n_frames.value = len(cp)
            self.refresh()

        @self.render.on_click
        @ctx.guard
        def _(event: Any) -> None:
            w, h = self._wh()
            vms, Ks = path.frames(int(self.n_frames.value), w, h, self.closed.value)
            fps = float(self.fps.value)
            out = ctx.out_dir / "camera_path.mp4"
            mode = v.gui_values["mode"]

            def job(progress: Any) -> Path:
                return render_path_video(
                    v,
                    vms,
                    Ks,
                    w,
                    h,
                    fps,
                    out,
                    progress=lambda i, n: progress(i / n, f"{i}/{n}"),
                    mode=mode,
                )

            ctx.run_job(job, label="Render path to mp4", on_done=lambda p: ctx.download(p.name, p))


def render_path_video(
    v: Any,
    viewmats: np.ndarray,
    Ks: np.ndarray,
    width: int,
    height: int,
    fps: float,
    out: Path,
    progress: Any = None,
    mode: str | None = None,
) -> Path:
    """Render frames [F] (viewmats [F, 4, 4], Ks [F, 3, 3]) in ``mode`` (default: the current
    one) into ``out`` (.mp4, written to a temporary name and renamed when complete; a cancel or
    an error leaves no file)."""
    import imageio.v2 as iio2

    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = out.with_name(f".{out.stem}.tmp{out.suffix}")
    params = v.displayed_params()
    mode = v.gui_values["mode"] if mode is None else mode
    writer = iio2.get_writer(tmp, fps=fps, codec="libx264", quality=8, macro_block_size=1)
    try:
        for i, (vm, K) in enumerate(zip(viewmats, Ks)):
            writer.append_data(v.render(ViewCamera(vm, K, width, height), mode, params=params))
            if progress is not None:
                progress(i + 1, len(viewmats))
    except BaseException:
        writer.close()
        tmp.unlink(missing_ok=True)
        raise
    writer.close()
    os.replace(tmp, out)
    return out
