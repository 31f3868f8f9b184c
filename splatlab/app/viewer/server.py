"""The browser viewer: a viser server with two display paths.

- browser splats: viser's WebGL splat renderer (RGB from SH degree 0), fast on a CPU server;
  positions and covariances are sent in units of :func:`render.covariance_scale` (node scale
  restores them) so viser's float16 covariances stay accurate;
- server render: our rasterizer (full SH, every render mode) streamed per client with
  ``set_background_image``: low resolution while the camera moves, full resolution once it has
  been still for ``idle_s``. Each client has one render thread that always renders the LATEST
  camera, so stale frames never queue.

An exception in a render or a panel callback becomes an error notification in the browsers;
the server keeps serving.

Panels (the built-in tabs in ``panels/`` and every plugin) each get a
:class:`~splatlab.app.viewer.context.ViewerPanelContext` (the ``PanelContext`` contract of
``splatlab.plugins.panel``) and keep their state in their own objects; the viewer holds only
what is shared: the scene(s), the render modes, the selection, the display settings, and events
("scene", "selection", "modes", "mode", "frame") that panels subscribe to.
"""

from __future__ import annotations

import dataclasses
import functools
import logging
import threading
import time
import traceback
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

import numpy as np
import tyro

from .context import RenderMode
from .render import (
    ViewCamera,
    browser_splat_arrays,
    c2w_to_wxyz_position,
    camera_from_viser,
    render_modes,
    render_selection,
    render_view,
    scene_up_direction,
    subset_params,
)
from .source import SceneSource, load_source

__all__ = ["ViewerConfig", "Viewer", "run_viewer", "bind_warning"]

logger = logging.getLogger(__name__)

SELECTION_MODE = "selection"
QUERY_HEATMAP_MODE = "query heatmap"  # added by the Query panel
DISPLAY_BROWSER = "browser splats"
DISPLAY_SERVER = "server render"


@dataclass
class ViewerConfig:
    """Options of ``splatlab view``."""

    scene: tyro.conf.Positional[Path]
    """Run directory, checkpoint (.pt), .ply or .splat to show."""
    host: str = "127.0.0.1"
    """Interface to listen on; 127.0.0.1 keeps the viewer local (0.0.0.0 shares it on the network)."""
    port: int = 8080
    """TCP port of the viewer."""
    display: Literal["browser", "server"] = "browser"
    """Start with browser splats (WebGL, RGB from SH degree 0) or server renders (full SH, all modes)."""
    max_resolution: int = 640
    """Longest side, in pixels, of server renders once the camera stops."""
    moving_resolution: int = 192
    """Longest side of server renders while the camera moves."""
    idle_s: float = 0.2
    """Seconds without camera motion before the full-resolution render."""
    jpeg_quality: int = 90
    """JPEG quality of streamed server renders."""
    max_browser_splats: int = 3_000_000
    """At most this many Gaussians are sent to the browser (the most opaque ones)."""
    max_frustums: int = 200
    """At most this many training-camera frustums are drawn."""
    plugins: tuple[str, ...] = ()
    """Extra plugins to load ('package.module:Class'), besides the splatlab.plugins entry points."""
    max_upload_mb: float = 20.0
    """Largest file a browser may upload (camera paths, plugin inputs)."""
    out_dir: Path | None = None
    """Where exports, camera paths and videos are written (default: <scene folder>/viewer)."""
    load_points: bool = True
    """Show the dataset's SfM points when the run's dataset has them (COLMAP / nerfstudio)."""


def _error_text(e: BaseException) -> str:
    return f"{type(e).__name__}: {e}"


class ClientRenderer:
    """One browser's server-render loop: always renders the latest camera; low resolution while
    it moves, full resolution once it stops."""

    def __init__(self, viewer: Viewer, client: Any) -> None:
        self.viewer = viewer
        self.client = client
        self._wake = threading.Event()
        self._stop = False
        self._last_move = 0.0
        self._rendered_key: Any = None
        self._last_error: str | None = None
        self.frames = 0
        self.last_ms = 0.0
        self._cleared = True
        self.thread = threading.Thread(
            target=self._loop, name=f"render-client-{client.client_id}", daemon=True
        )
        self.thread.start()

    def camera_moved(self) -> None:
        self._last_move = time.monotonic()
        self._wake.set()

    def wake(self) -> None:
        self._wake.set()

    def stop(self) -> None:
        self._stop = True
        self._wake.set()

    def _camera_state(self) -> tuple | None:
        cam = self.client.camera
        try:
            return (
                tuple(np.round(cam.wxyz, 7)),
                tuple(np.round(cam.position, 7)),
                round(float(cam.fov), 7),
                int(cam.image_width),
                int(cam.image_height),
            )
        except AssertionError:  # no camera message from this browser yet
            return None

    def _loop(self) -> None:
        v = self.viewer
        while not self._stop:
            self._wake.wait(timeout=0.05)
            self._wake.clear()
            if self._stop:
                break
            if not v.server_render_active():
                if not self._cleared:
                    self._clear()
                continue
            state = self._camera_state()
            if state is None or state[3] <= 0 or state[4] <= 0:
                continue
            moving = time.monotonic() - self._last_move < v.cfg.idle_s
            level = "low" if moving else "full"
            key = (state, v.settings_version, v.source.version, level)
            if key == self._rendered_key or (
                moving and self._rendered_key is not None and self._rendered_key[:3] == key[:3]
            ):
                continue
            self._render(state, level, key)

    def _clear(self) -> None:
        try:
            self.client.scene.set_background_image(None)
        except Exception:  # the browser went away
            pass
        self._cleared = True
        self._rendered_key = None

    def _render(self, state: tuple, level: str, key: Any) -> None:
        v = self.viewer
        wxyz, pos, fov, w, h = state
        cam = camera_from_viser(np.array(wxyz), np.array(pos), fov, w, h)
        side = (
            v.gui_values["moving_resolution"] if level == "low" else v.gui_values["max_resolution"]
        )
        cam = cam.scaled(int(side))
        t0 = time.perf_counter()
        try:
            img = v.render(cam, v.gui_values["mode"])
        except Exception as e:
            msg = _error_text(e)
            logger.error("render failed: %s\n%s", msg, traceback.format_exc())
            if msg != self._last_error:
                v.notify_error("Render failed", msg, client=self.client)
            self._last_error = msg
            self._rendered_key = key
            return
        self._last_error = None
        self.last_ms = (time.perf_counter() - t0) * 1000.0
        try:
            self.client.scene.set_background_image(
                img, format="jpeg", jpeg_quality=v.cfg.jpeg_quality
            )
        except Exception:  # the browser went away
            return
        self._cleared = False
        self.frames += 1
        self._rendered_key = key
        v.on_frame(self, level)


@dataclass
class SideScene:
    """A second scene shown beside the current one (shifted by ``offset`` along x)."""

    params: dict[str, Any]  # in the viewer's frame, already shifted
    name: str
    offset: np.ndarray


class Viewer:
    """A running viewer (non-blocking): ``Viewer(cfg)`` or ``Viewer(cfg, source=...)``; ``.port``,
    ``.stop()``. :func:`run_viewer` blocks on one.

    ``panels`` maps tab titles to the built-in panel objects and ``contexts`` every panel name
    (tabs and plugins) to its :class:`~splatlab.app.viewer.context.ViewerPanelContext`."""

    def __init__(
        self, cfg: ViewerConfig, source: SceneSource | None = None, training: Any = None
    ) -> None:
        import viser

        self.cfg = cfg
        self.source = (
            source if source is not None else load_source(Path(cfg.scene), cfg.load_points)
        )
        if cfg.out_dir is not None:
            self.source.out_dir = Path(cfg.out_dir)
        self.max_upload_bytes = int(cfg.max_upload_mb * 1024 * 1024)
        self.settings_version = 0
        self.renderers: dict[int, ClientRenderer] = {}
        self._lock = threading.Lock()
        self.errors: list[str] = []  # every error shown to browsers (tests, logs)
        self._listeners: dict[str, list[Callable[..., None]]] = {}
        params = self.source.snapshot()
        self.feature_field = self.source.feature_field
        self.original_params = params  # "Restore the full scene" after delete / extract
        # modes added by panels (PanelContext.add_render_mode): name -> RenderMode
        self.mode_fns: dict[str, RenderMode] = {}
        self._picked: np.ndarray | None = None  # the selection set by panels (query, plugins)
        self._picked_id = 0
        # objects with selection_key() and mask(params) -> bool [N] (the Edit tab's crop box)
        self.selection_filters: list[Any] = []
        self.side: SideScene | None = None
        base = render_modes(params)
        fn_modes = [m for m in self.source.render_fn_modes if m not in base]
        self.modes = [*base[:4], *fn_modes, *base[4:], SELECTION_MODE]
        from ...rendering.splats import splat_sh_degree

        self.max_sh = splat_sh_degree(params)
        self.gui_values: dict[str, Any] = {
            "mode": "RGB",
            "max_resolution": cfg.max_resolution,
            "moving_resolution": cfg.moving_resolution,
            "sh_degree": self.max_sh,
            "background": (0.0, 0.0, 0.0),
            "near": 0.0,
            "far": 0.0,
            "display": DISPLAY_SERVER if cfg.display == "server" else DISPLAY_BROWSER,
            "filter_view": False,
        }
        self._selection_cache: tuple[Any, np.ndarray] | None = None
        self.server = viser.ViserServer(
            host=cfg.host, port=cfg.port, label="splatlab", verbose=False
        )
        self._install_upload_cap()
        self.server.scene.set_up_direction(tuple(scene_up_direction(self._viewmats())))
        self._splat_handle: Any = None
        self._side_handle: Any = None
        self._frustums: list[Any] = []
        self._frustum_of: dict[int, Any] = {}
        self._hidden_frustum: Any = None
        self.frustums_visible = True
        self._points_handle: Any = None
        self.panels: dict[str, Any] = {}
        self.contexts: dict[str, Any] = {}
        self._build_gui(training)
        self.refresh_splats()
        self._add_frustums()
        self._add_points()
        self.server.on_client_connect(self._on_connect)
        self.server.on_client_disconnect(self._on_disconnect)

    # ----------------------------------------------------------------- basics
    @property
    def port(self) -> int:
        return int(self.server.get_port())

    @property
    def url(self) -> str:
        return f"http://{self.cfg.host}:{self.port}"

    def stop(self) -> None:
        for ctx in list(self.contexts.values()):
            ctx.cancel_job()
        for r in list(self.renderers.values()):
            r.stop()
        self.server.stop()

    def panel(self, name: str) -> Any:
        """The built-in panel object of tab ``name`` ("View", "Paths", "Edit", "Query", ...)."""
        if name not in self.panels:
            raise KeyError(f"no panel {name!r}; panels: {sorted(self.panels)}")
        return self.panels[name]

    def context(self, name: str) -> Any:
        """The PanelContext of panel or plugin ``name``."""
        if name not in self.contexts:
            raise KeyError(f"no panel context {name!r}; contexts: {sorted(self.contexts)}")
        return self.contexts[name]

    def _viewmats(self) -> np.ndarray | None:
        c = self.source.cameras
        return None if c is None or len(c.viewmats) == 0 else np.asarray(c.viewmats)

    def _install_upload_cap(self) -> None:
        """Bound what an upload can make the server hold: refused at once when its announced size
        is over the cap, and dropped as soon as the bytes RECEIVED pass the announced size or the
        cap (a hostile client may announce 100 bytes and send megabytes of parts). Viser buffers
        a part before this handler runs, so at most one part is held beyond the limit; then the
        transfer's buffer is released. The panel callbacks check size, type and content again."""
        from viser import _messages

        gui = self.server.gui
        cap = self.max_upload_bytes
        received: dict[str, int] = {}

        def refuse(client_id: int, message: Any, total: int, what: str) -> None:
            transfer = message.transfer_uuid
            states = getattr(gui, "_current_file_upload_states", {})
            states.pop(transfer, None)
            received.pop(transfer, None)
            client = self.server.get_clients().get(client_id)
            if client is not None:
                # The browser's upload button stays disabled (spinner) until the acknowledged
                # bytes reach the file's size: end its transfer, and hide the client's own
                # "Uploading ..." notification so only "Upload refused" is shown.
                conn = client._websock_connection
                conn.queue_message(_messages.FileTransferPartAck(
                    source_component_uuid=message.source_component_uuid, transfer_uuid=transfer,
                    transferred_bytes=max(int(total), 0), total_bytes=max(int(total), 0)))
                conn.queue_message(_messages.RemoveNotificationMessage(uuid=f"upload-{transfer}"))
            self.notify_error("Upload refused", f"{what}; the limit is {cap / 2**20:.1f} MiB", client=client)

        def on_start(client_id: int, message: Any) -> None:
            if message.size_bytes > cap:
                refuse(client_id, message, message.size_bytes,
                       f"{message.filename} is {message.size_bytes / 2**20:.1f} MiB")

        def on_part(client_id: int, message: Any) -> None:
            states = getattr(gui, "_current_file_upload_states", {})
            for t in [t for t in received if t not in states]:  # finished or dropped transfers
                received.pop(t, None)
            state = states.get(message.transfer_uuid)
            if state is None:
                return
            n = received.get(message.transfer_uuid, 0) + len(message.content)
            received[message.transfer_uuid] = n
            announced = int(state.get("total_bytes", cap)) if isinstance(state, dict) else cap
            if n > min(cap, announced):
                refuse(client_id, message, announced,
                       f"an upload sent {n / 2**20:.1f} MiB, more than it announced ({announced} bytes)")

        ws = self.server._websock_server
        ws.register_handler(_messages.FileTransferStartUpload, on_start)
        ws.register_handler(_messages.FileTransferPart, on_part)

    def notify_error(self, title: str, body: str, client: Any = None) -> None:
        """Show an error notification in one browser (or all) and remember it."""
        self.errors.append(f"{title}: {body}")
        self.notify(title, body, client=client, color="red", seconds=15.0)

    def notify(
        self,
        title: str,
        body: str = "",
        client: Any = None,
        color: Any = None,
        seconds: float = 5.0,
    ) -> None:
        """A notification in one browser (or all)."""
        targets = [client] if client is not None else list(self.server.get_clients().values())
        for c in targets:
            try:
                c.add_notification(title, body, color=color, auto_close_seconds=seconds)
            except Exception:  # the browser went away
                pass

    def guard(
        self, fn: Callable[[Any], Any], where: str = "", context: Any = None
    ) -> Callable[[Any], Any]:
        """Wrap a GUI callback: an exception becomes an error notification in the browser that
        triggered it; the server keeps serving."""

        @functools.wraps(fn)
        def wrapped(event: Any) -> Any:
            client = getattr(event, "client", None)
            if context is not None and client is not None:
                context.last_client = client
            try:
                return fn(event)
            except Exception as e:
                logger.error("%s failed: %s\n%s", where or fn.__name__, e, traceback.format_exc())
                self.notify_error(f"{where or 'Action'} failed", _error_text(e), client=client)
                return None

        return wrapped

    def changed(self) -> None:
        """A setting changed: every server render is redone."""
        self.settings_version += 1
        for r in list(self.renderers.values()):
            r.wake()

    # ----------------------------------------------------------------- events
    def on(self, event: str, fn: Callable[..., None]) -> None:
        """Call ``fn(*args)`` on ``event``: "scene" (the Gaussians shown changed), "selection",
        "modes" (render modes added / removed), "mode" (fn(mode)), "frame" (fn(ms) after a
        full-resolution server render)."""
        self._listeners.setdefault(event, []).append(fn)

    def emit(self, event: str, *args: Any) -> None:
        for fn in list(self._listeners.get(event, ())):
            try:
                fn(*args)
            except Exception as e:  # a panel's listener must not break the viewer
                logger.error("%s listener failed: %s\n%s", event, e, traceback.format_exc())
                self.notify_error(f"Panel update ({event}) failed", _error_text(e))

    # ----------------------------------------------------------------- rendering
    def server_render_active(self) -> bool:
        return self.gui_values["display"] == DISPLAY_SERVER

    def displayed_params(self) -> dict[str, Any]:
        """The Gaussians drawn: the scene (only the selection when "show only the selection"
        is on), then the scene shown beside it, if any."""
        params = self.source.snapshot()
        if self.gui_values["filter_view"]:
            params = subset_params(params, self.selection(params))
        if self.side is not None:
            params = concat_scenes(params, self.side.params)
        return params

    def _selection_for(self, params: dict[str, Any]) -> np.ndarray:
        """The selection as a mask over ``params`` (displayed params: the scene, only its
        selection when filtered, then the side scene, whose Gaussians are never selected)."""
        n = int(params["means"].shape[0])
        sel = self.selection()
        if self.gui_values["filter_view"]:
            sel = np.ones(int(sel.sum()), bool)
        out = np.zeros(n, bool)
        k = min(len(sel), n)
        out[:k] = sel[:k]
        return out

    def render(
        self, cam: ViewCamera, mode: str = "RGB", params: dict[str, Any] | None = None
    ) -> np.ndarray:
        """Render ``cam`` in ``mode`` with the current settings -> uint8 [H, W, 3]."""
        g = self.gui_values
        bg = tuple(float(c) for c in g["background"])
        if (
            params is None
            and mode in self.source.render_fn_modes
            and self.source.render_fn is not None
            and not g["filter_view"]
            and self.side is None
        ):
            return self._render_with_fn(cam, bg, mode)
        params = self.displayed_params() if params is None else params
        entry = self.mode_fns.get(mode)
        if entry is not None:
            return _as_rgb8(entry.fn(cam, params), entry.colormap, entry.value_range, mode)
        if mode == SELECTION_MODE:
            return render_selection(
                params,
                cam,
                self._selection_for(params),
                sh_degree=int(g["sh_degree"]),
                background=bg,
            )
        return render_view(
            params,
            cam,
            mode,
            sh_degree=int(g["sh_degree"]),
            background=bg,
            near=g["near"] or None,
            far=g["far"] or None,
        )

    def _render_with_fn(
        self, cam: ViewCamera, bg: tuple[float, float, float], mode: str = "RGB"
    ) -> np.ndarray:
        import torch

        with torch.no_grad(), self.source.lock:
            img, _, _ = self.source.render_fn(
                torch.as_tensor(cam.viewmat, dtype=torch.float32),
                torch.as_tensor(cam.K, dtype=torch.float32),
                cam.width,
                cam.height,
                sh_degree=int(self.gui_values["sh_degree"]),
                background=torch.tensor(bg, dtype=torch.float32),
                render_mode=mode,
            )
        return (img[..., :3].clamp(0, 1).cpu().numpy() * 255 + 0.5).astype(np.uint8)

    def on_frame(self, renderer: ClientRenderer, level: str) -> None:
        if level == "full":
            self.emit("frame", renderer.last_ms)

    def status_text(self, ms: float | None = None) -> str:
        t = f"{self.source.n_gaussians:,} Gaussians"
        if self.side is not None:
            t += f" · beside: {self.side.name} ({int(self.side.params['means'].shape[0]):,})"
        if ms is not None:
            t += f" · last server render {ms:.0f} ms"
        return t

    def client_camera(self, client: Any = None) -> ViewCamera | None:
        """The camera of ``client`` (default: any connected browser) at its canvas size."""
        clients = self.server.get_clients()
        if client is None:
            if not clients:
                return None
            client = next(iter(clients.values()))
        cam = client.camera
        try:
            return camera_from_viser(
                cam.wxyz, cam.position, cam.fov, cam.image_width, cam.image_height
            )
        except AssertionError:
            return None

    # ----------------------------------------------------------------- render modes
    def add_render_mode(self, name: str, mode: RenderMode) -> None:
        """Offer ``name`` (drawn by ``mode.fn``) in every browser's render-mode menu."""
        if (
            not name
            or name in BUILTIN_MODE_NAMES
            or (name in self.modes and name not in self.mode_fns)
        ):
            raise ValueError(f"render mode name {name!r} is empty or taken by a built-in mode")
        owner = self.mode_fns.get(name)
        if owner is not None and owner.owner != mode.owner:
            raise ValueError(f"render mode {name!r} was already added by {owner.owner!r}")
        if mode.colormap is not None:
            from ...plugins.panel import COLORMAPS

            if mode.colormap not in COLORMAPS:
                raise ValueError(f"unknown colour map {mode.colormap!r}; choose one of {COLORMAPS}")
        self.mode_fns[name] = mode
        if name not in self.modes:
            self.modes.append(name)
            self.emit("modes", list(self.modes))
        self.changed()

    def remove_render_mode(self, name: str) -> None:
        if name not in self.mode_fns:
            return
        del self.mode_fns[name]
        self.modes.remove(name)
        if self.gui_values["mode"] == name:
            self.set_mode("RGB")
        self.emit("modes", list(self.modes))
        self.changed()

    def set_mode(self, mode: str) -> None:
        """Switch every browser to ``mode`` (server render; see :attr:`modes`)."""
        if mode not in self.modes:
            raise ValueError(f"unknown render mode {mode!r}; modes: {self.modes}")
        self.gui_values["mode"] = mode
        if mode != "RGB":
            self.set_display(DISPLAY_SERVER)
        self.emit("mode", mode)
        self.changed()

    def set_display(self, display: str) -> None:
        """ "browser splats" or "server render"."""
        if display not in (DISPLAY_BROWSER, DISPLAY_SERVER):
            raise ValueError(f"unknown display {display!r}")
        if self.gui_values["display"] == display:
            return
        self.gui_values["display"] = display
        visible = display == DISPLAY_BROWSER
        for h in (self._splat_handle, self._side_handle):
            if h is not None:
                h.visible = visible
        self.emit("display", display)
        self.changed()

    def set_filter_view(self, on: bool) -> None:
        """Draw only the selected Gaussians (the Edit tab's "Show only the selection")."""
        self.gui_values["filter_view"] = bool(on)
        self.refresh_splats()
        self.emit("selection")
        self.changed()

    # ----------------------------------------------------------------- scene nodes
    def refresh_splats(self) -> None:
        """(Re)send the browser splats (after a training update or a filter change)."""
        params = self.source.snapshot()
        if self.gui_values["filter_view"]:
            params = subset_params(params, self.selection(params))
        self._splat_handle = self._send_splats("/splats", params)
        if self.side is not None:
            self._side_handle = self._send_splats("/side_scene", self.side.params)

    def _send_splats(self, node: str, params: dict[str, Any]) -> Any:
        n = int(params["means"].shape[0])
        if n > self.cfg.max_browser_splats:
            import torch

            top = (
                torch.topk(params["opacities"].reshape(-1), self.cfg.max_browser_splats)
                .indices.sort()
                .values
            )
            params = {k: v[top] for k, v in params.items() if v.shape[:1] == (n,)}
        arrays = browser_splat_arrays(params)
        return self.server.scene.add_gaussian_splats(
            node,
            centers=arrays["centers"],
            covariances=arrays["covariances"],
            rgbs=arrays["rgbs"],
            opacities=arrays["opacities"],
            scale=arrays["unit"],
            visible=not self.server_render_active(),
        )

    def _add_frustums(self) -> None:
        cams = self.source.cameras
        if cams is None or len(cams.viewmats) == 0:
            return
        centers = np.linalg.inv(cams.viewmats)[:, :3, 3]
        extent = float(np.linalg.norm(centers - centers.mean(0), axis=1).mean()) or 1.0
        idx = (
            np.linspace(0, len(cams.viewmats) - 1, min(len(cams.viewmats), self.cfg.max_frustums))
            .round()
            .astype(int)
        )
        for i in np.unique(idx):
            wxyz, pos = c2w_to_wxyz_position(cams.viewmats[i])
            h, w = int(cams.heights[i]), int(cams.widths[i])
            fov = float(2 * np.arctan(h / 2 / cams.Ks[i][1, 1]))
            fr = self.server.scene.add_camera_frustum(
                f"/cameras/{i:05d}",
                fov=fov,
                aspect=w / h,
                scale=0.05 * extent,
                wxyz=wxyz,
                position=pos,
                color=(90, 140, 255),
            )
            fr.on_click(
                self.guard(
                    functools.partial(self._jump_to_camera_event, int(i)), where="Jump to camera"
                )
            )
            self._frustums.append(fr)
            self._frustum_of[int(i)] = fr

    def set_frustums_visible(self, visible: bool) -> None:
        """Show / hide the training-camera frustums (the one the camera sits in stays hidden)."""
        self.frustums_visible = bool(visible)
        for f in self._frustums:
            f.visible = self.frustums_visible and f is not self._hidden_frustum

    def set_points_visible(self, visible: bool, point_size: float | None = None) -> None:
        if self._points_handle is not None:
            self._points_handle.visible = bool(visible)
            if point_size is not None:
                self._points_handle.point_size = float(point_size)

    def _jump_to_camera_event(self, i: int, event: Any) -> None:
        self.jump_to_camera(event.client, i)

    def jump_to_camera(self, client: Any, i: int) -> None:
        """Move ``client``'s camera to training camera ``i`` (pose and vertical fov)."""
        cams = self.source.cameras
        if cams is None or not 0 <= i < len(cams.viewmats):
            raise IndexError(f"no training camera {i}")
        wxyz, pos = c2w_to_wxyz_position(cams.viewmats[i])
        fov = float(2 * np.arctan(int(cams.heights[i]) / 2 / cams.Ks[i][1, 1]))
        with client.atomic():
            client.camera.fov = fov
            client.camera.position = pos
            client.camera.wxyz = wxyz
        # seen from its own centre a frustum covers the view: hide it until the next jump
        if self._hidden_frustum is not None:
            self._hidden_frustum.visible = self.frustums_visible
        self._hidden_frustum = self._frustum_of.get(i)
        if self._hidden_frustum is not None:
            self._hidden_frustum.visible = False

    def _add_points(self) -> None:
        pts = self.source.points
        if pts is None or len(pts) == 0:
            return
        rgb = (
            self.source.points_rgb if self.source.points_rgb is not None else np.full_like(pts, 0.8)
        )
        self._points_handle = self.server.scene.add_point_cloud(
            "/sfm_points",
            points=np.asarray(pts, np.float32),
            colors=np.asarray(rgb, np.float32),
            point_size=0.005,
            visible=False,
        )

    # ----------------------------------------------------------------- clients
    def _on_connect(self, client: Any) -> None:
        renderer = ClientRenderer(self, client)
        with self._lock:
            self.renderers[client.client_id] = renderer

        @client.camera.on_update
        def _(_: Any) -> None:
            renderer.camera_moved()

        if self._viewmats() is not None:
            try:
                self.jump_to_camera(client, 0)
            except Exception as e:  # the first view is a convenience
                logger.warning("could not set the initial camera: %s", e)

    def _on_disconnect(self, client: Any) -> None:
        with self._lock:
            r = self.renderers.pop(client.client_id, None)
        if r is not None:
            r.stop()

    # ----------------------------------------------------------------- selection
    def selection(self, params: dict[str, Any] | None = None) -> np.ndarray:
        """Bool [N]: the selection filters (the Edit tab's crop box, opacity and scale) AND the
        selection set by panels (:meth:`set_selection`)."""
        params = self.source.snapshot() if params is None else params
        n = int(params["means"].shape[0])
        key = (
            self.source.version,
            n,
            tuple(f.selection_key() for f in self.selection_filters),
            self._picked_id,
        )
        if self._selection_cache is not None and self._selection_cache[0] == key:
            return self._selection_cache[1]
        mask = np.ones(n, dtype=bool)
        for f in self.selection_filters:
            mask &= np.asarray(f.mask(params), dtype=bool)
        picked = self._picked
        if picked is not None and picked.shape == mask.shape:
            mask = mask & picked
        self._selection_cache = (key, mask)
        return mask

    def set_selection(self, mask: np.ndarray | None) -> None:
        """The Gaussians picked by a query, a click or a plugin (None: no such restriction);
        ANDed with the selection filters in :meth:`selection`."""
        if mask is not None:
            mask = np.asarray(mask, dtype=bool).reshape(-1).copy()
            if mask.shape[0] != self.source.n_gaussians:
                raise ValueError(
                    f"a selection of {mask.shape[0]:,} entries for a scene of "
                    f"{self.source.n_gaussians:,} Gaussians"
                )
        self._picked = mask
        self._picked_id += 1
        self.selection_changed()

    def selection_changed(self) -> None:
        """A selection filter or the picked set changed: panels and renders follow."""
        self._selection_cache = None
        if self.gui_values["filter_view"]:
            self.refresh_splats()
        self.emit("selection")
        self.changed()

    # ----------------------------------------------------------------- scenes
    def replace_scene(self, params: dict[str, Any], message: str = "") -> None:
        """Show ``params`` instead of the current Gaussians (delete / extract / a plugin's
        scene); the files on disk are untouched. The picked selection is cleared."""
        self.source.replace(params)
        self._picked = None
        self._picked_id += 1
        self._selection_cache = None
        self.refresh_splats()
        self.emit("scene")
        self.emit("selection")
        self.changed()

    def restore_scene(self) -> None:
        """Back to the scene as loaded (after delete / extract / a replacement)."""
        self.replace_scene(dict(self.original_params))

    def show_beside(self, params: dict[str, Any], name: str = "scene") -> None:
        """Show ``params`` next to the current scene, shifted along +x past its bounding box."""
        import torch

        main = self.source.snapshot()
        p = {k: v.detach().cpu() for k, v in params.items()}
        if p["means"].shape[0] == 0:
            raise ValueError(f"the scene {name!r} has no Gaussians")
        m_main = main["means"].detach().cpu().float()
        m_side = p["means"].float()
        lo_main = torch.quantile(m_main[:, 0], 0.99) if len(m_main) else torch.tensor(0.0)
        lo_side = torch.quantile(m_side[:, 0], 0.01)
        ext = (
            float((m_main.quantile(0.98, 0) - m_main.quantile(0.02, 0)).max())
            if len(m_main)
            else 1.0
        )
        dx = float(lo_main - lo_side) + 0.1 * max(ext, 1e-3)
        offset = np.array([dx, 0.0, 0.0])
        p["means"] = p["means"] + torch.as_tensor(offset, dtype=p["means"].dtype)
        self.side = SideScene(p, name, offset)
        self._side_handle = self._send_splats("/side_scene", p)
        self.emit("scene")
        self.changed()

    def clear_side(self) -> None:
        if self.side is None:
            return
        self.side = None
        if self._side_handle is not None:
            self._side_handle.remove()
            self._side_handle = None
        self.emit("scene")
        self.changed()

    # ----------------------------------------------------------------- GUI
    def _build_gui(self, training: Any) -> None:
        from .context import ViewerPanelContext
        from .panels import builtin_panels

        gui = self.server.gui
        gui.configure_theme(control_width="large", dark_mode=True, show_logo=False)
        tabs = gui.add_tab_group()
        for title, cls in builtin_panels(self, training):
            with tabs.add_tab(title) as tab:
                ctx = ViewerPanelContext(self, title, tab)
                self.contexts[title] = ctx
                self.panels[title] = (
                    cls(ctx) if training is None or title != "Train" else cls(ctx, training)
                )


BUILTIN_MODE_NAMES = frozenset({"RGB", "depth", "alpha", "normals", SELECTION_MODE})


def _as_rgb8(
    img: np.ndarray, colormap: str | None, value_range: tuple[float, float] | None, mode: str
) -> np.ndarray:
    """A panel mode's output -> uint8 [H, W, 3]: uint8 RGB as is, scalars through the colour map."""
    from ...plugins.panel import apply_colormap

    a = np.asarray(img)
    if a.ndim == 2 or (a.ndim == 3 and a.shape[-1] == 1):
        return apply_colormap(a, colormap or "turbo", value_range)
    if a.ndim == 3 and a.shape[-1] in (3, 4):
        if a.dtype == np.uint8:
            return np.ascontiguousarray(a[..., :3])
        return (np.clip(a[..., :3].astype(np.float64), 0, 1) * 255 + 0.5).astype(np.uint8)
    raise ValueError(
        f"render mode {mode!r} returned shape {a.shape}; expected uint8 [H, W, 3] or float [H, W]"
    )


def concat_scenes(a: dict[str, Any], b: dict[str, Any]) -> dict[str, Any]:
    """Two Gaussian dicts drawn together: the keys both have with the same trailing shape
    (shN zero-padded to the larger SH degree)."""
    import torch

    out: dict[str, Any] = {}
    for k, va in a.items():
        if k not in b:
            continue
        vb = b[k].to(va.device, va.dtype) if b[k].is_floating_point() else b[k].to(va.device)
        if k == "shN" and va.shape[1] != vb.shape[1]:
            kk = max(va.shape[1], vb.shape[1])
            va = torch.nn.functional.pad(va, (0, 0, 0, kk - va.shape[1]))
            vb = torch.nn.functional.pad(vb, (0, 0, 0, kk - vb.shape[1]))
        if va.shape[1:] != vb.shape[1:]:
            continue
        out[k] = torch.cat([va.detach(), vb.detach()], 0)
    return out


def bind_warning(host: str) -> str | None:
    """A warning for a listen address other than loopback (anyone on that network can then open
    the viewer, see the scene, upload files and run plugins), else None."""
    import ipaddress

    if host in ("localhost", ""):
        return None
    try:
        if ipaddress.ip_address(host).is_loopback:
            return None
    except ValueError:
        pass
    where = "every network interface" if host in ("0.0.0.0", "::") else host
    return (
        f"WARNING: the viewer listens on {where}: anyone who can reach this machine on port "
        "can view the scene, upload files and run plugins. Use --host 127.0.0.1 to keep it local."
    )


def run_viewer(cfg: ViewerConfig) -> None:
    """Serve ``cfg.scene`` until Ctrl-C (prints the address and, off loopback, a warning)."""
    viewer = Viewer(cfg)
    print(f"viewer: {viewer.url}", flush=True)
    warning = bind_warning(cfg.host)
    if warning:
        print(warning.replace("on port", f"on port {viewer.port}"), flush=True)
    try:
        while True:
            time.sleep(3600)
    except KeyboardInterrupt:
        pass
    finally:
        viewer.stop()


def config_from(scene: Path, **kw: Any) -> ViewerConfig:
    """A :class:`ViewerConfig` with keyword overrides (validated field names)."""
    names = {f.name for f in dataclasses.fields(ViewerConfig)}
    bad = set(kw) - names
    if bad:
        raise TypeError(f"unknown ViewerConfig field(s) {sorted(bad)}")
    return ViewerConfig(scene=Path(scene), **kw)
