"""The viewer's implementation of the panel contract (``splatlab.plugins.panel.PanelContext``).

One :class:`ViewerPanelContext` per panel (each built-in tab, each plugin folder). It holds the
panel's link to the viewer, the browser that last used it, its job slot (one job at a time, with
a progress bar and a Cancel button shown in the panel while it runs), the render modes it added
and its last report. Built-in tabs also reach the viewer itself (``ctx.viewer``) for what only
they do (frustums, display settings); plugins use the contract only.
"""

from __future__ import annotations

import contextlib
import logging
import time
import traceback
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal

import numpy as np

from ...plugins.jobs import Job, JobSlot


@dataclass
class RenderMode:
    """A render mode added by a panel: ``fn(camera, params) -> uint8 [H, W, 3] | float [H, W]``;
    float results are coloured with ``colormap`` over ``value_range`` (None: percentiles)."""

    fn: Callable[..., np.ndarray]
    colormap: str | None = None
    value_range: tuple[float, float] | None = None
    owner: str = ""


if TYPE_CHECKING:
    from .server import Viewer

__all__ = ["ViewerPanelContext"]

logger = logging.getLogger(__name__)

MAX_TABLE_ROWS = 20


class ViewerPanelContext:
    """A panel's :class:`~splatlab.plugins.panel.PanelContext` in a running :class:`Viewer`."""

    def __init__(self, viewer: Viewer, name: str, container: Any) -> None:
        self.viewer = viewer
        self.name = name
        self.gui = viewer.server.gui
        self.container = container
        self.last_client: Any = None
        self.jobs = JobSlot(name)
        self.last_report: Any = None
        self.last_job: Job | None = None
        self._modes: set[str] = set()
        self._replaced = False  # show_scene(how="instead") was used: clear_scene restores
        self._job_ui: dict[str, Any] | None = None
        self._report_handles: list[Any] = []

    @property
    def out_dir(self) -> Path:
        return self.viewer.source.out_dir

    @property
    def background(self) -> tuple[float, float, float]:
        return tuple(float(c) for c in self.viewer.gui_values["background"])  # type: ignore[return-value]

    @contextlib.contextmanager
    def _in_container(self):  # noqa: ANN202
        with self.container:
            yield

    # ------------------------------------------------------------------ scene and camera
    def scene(self) -> dict[str, Any]:
        return self.viewer.source.snapshot()

    def scene_transform(self) -> np.ndarray:
        return np.asarray(self.viewer.source.transform, dtype=np.float64).copy()

    def camera(self) -> Any:
        return self.viewer.client_camera(self._client())

    def current_camera(self) -> Any:  # the name used by plugin panels written before the contract
        return self.camera()

    def render(self, camera: Any, mode: str = "RGB") -> np.ndarray:
        return self.viewer.render(camera, mode)

    # ------------------------------------------------------------------ render modes
    def render_modes(self) -> list[str]:
        return list(self.viewer.modes)

    def add_render_mode(
        self,
        name: str,
        fn: Callable[..., np.ndarray],
        colormap: str | None = None,
        value_range: tuple[float, float] | None = None,
    ) -> None:

        self.viewer.add_render_mode(name, RenderMode(fn, colormap, value_range, owner=self.name))
        self._modes.add(name)

    def remove_render_mode(self, name: str) -> None:
        if name not in self._modes:
            raise ValueError(f"panel {self.name!r} did not add the render mode {name!r}")
        self._modes.discard(name)
        self.viewer.remove_render_mode(name)

    def set_render_mode(self, name: str) -> None:
        self.viewer.set_mode(name)

    # ------------------------------------------------------------------ selection
    def selection(self) -> np.ndarray:
        return self.viewer.selection()

    def set_selection(self, mask: np.ndarray | None) -> None:
        self.viewer.set_selection(mask)

    # ------------------------------------------------------------------ scenes
    def show_scene(
        self,
        params: Mapping[str, Any],
        how: Literal["beside", "instead"] = "beside",
        name: str = "",
    ) -> None:
        import torch

        p = {k: torch.as_tensor(v).detach().float() for k, v in params.items()}
        if how == "beside":
            self.viewer.show_beside(p, name or self.name)
        elif how == "instead":
            self.viewer.clear_side()
            self.viewer.replace_scene(p)
            self._replaced = True
        else:
            raise ValueError(f"how must be 'beside' or 'instead', got {how!r}")

    def clear_scene(self) -> None:
        self.viewer.clear_side()
        if self._replaced:
            self._replaced = False
            self.viewer.restore_scene()

    # ------------------------------------------------------------------ output
    def notify(self, title: str, body: str = "", *, error: bool = False) -> None:
        if error:
            self.viewer.notify_error(title, body, client=self._client())
        else:
            self.viewer.notify(title, body, client=self._client())

    def download(self, name: str, data: bytes | Path) -> None:
        content = data if isinstance(data, (bytes, bytearray)) else Path(data).read_bytes()
        client = self._client()
        targets = (
            [client] if client is not None else list(self.viewer.server.get_clients().values())
        )
        if not targets:
            raise RuntimeError("no browser is connected to receive the download")
        for c in targets:
            c.send_file_download(Path(name).name, bytes(content), save_immediately=True)

    def show_report(self, report: Any) -> None:
        """Metrics and notes (markdown), tables, plotly figures, images, a download button per
        file, the scene (shown beside the current one, with Show instead / Hide) and the
        selection (applied)."""
        self.last_report = report
        for h in self._report_handles:
            with contextlib.suppress(Exception):
                h.remove()
        self._report_handles = []
        add = self._report_handles.append
        with self._in_container():
            add(self.gui.add_markdown(report.markdown()))
            for tname, table in report.tables.items():
                add(self.gui.add_markdown(_table_markdown(tname, table)))
            for fig in report.plots.values():
                add(self.gui.add_plotly(fig, aspect=1.6))
            for iname, img in report.images.items():
                add(self.gui.add_image(_displayable(img), label=iname))
            for fname, data in report.files.items():
                size = (
                    len(data) if isinstance(data, (bytes, bytearray)) else Path(data).stat().st_size
                )
                btn = self.gui.add_button(f"Download {fname} ({_size(size)})")
                btn.on_click(self.guard(lambda e, n=fname, d=data: self.download(n, d)))
                add(btn)
            if report.scene is not None:
                self._report_scene_buttons(report)
        if report.selection is not None:
            self.set_selection(report.selection)
        if report.scene is not None:
            self.show_scene(report.scene, "beside", name=report.title)

    def _report_scene_buttons(self, report: Any) -> None:
        n = int(report.scene["means"].shape[0])
        instead = self.gui.add_button(f"Show its scene instead ({n:,} Gaussians)")
        beside = self.gui.add_button("Show its scene beside")
        hide = self.gui.add_button("Hide its scene / restore")
        instead.on_click(self.guard(lambda e: self.show_scene(report.scene, "instead")))
        beside.on_click(
            self.guard(lambda e: self.show_scene(report.scene, "beside", name=report.title))
        )
        hide.on_click(self.guard(lambda e: self.clear_scene()))
        self._report_handles += [instead, beside, hide]

    # ------------------------------------------------------------------ jobs
    def _ensure_job_ui(self) -> dict[str, Any]:
        if self._job_ui is None:
            with self._in_container():
                status = self.gui.add_markdown("", visible=False)
                bar = self.gui.add_progress_bar(0.0, visible=False)
                cancel = self.gui.add_button("Cancel", visible=False, color="red")
            cancel.on_click(self.guard(lambda e: self.cancel_job()))
            self._job_ui = {"status": status, "bar": bar, "cancel": cancel}
        return self._job_ui

    def run_job(
        self,
        fn: Callable[[Any], Any],
        *,
        label: str = "",
        on_done: Callable[[Any], None] | None = None,
        on_finish: Callable[[Any], None] | None = None,
    ) -> Job:
        ui = self._ensure_job_ui()
        label = label or self.name
        client = self._client()

        def show_progress(fraction: float, message: str) -> None:
            ui["bar"].value = fraction * 100.0
            ui["status"].content = f"**{label}**: {fraction * 100:.0f}% {message}".rstrip()

        def finish(job: Job) -> None:
            took = (job.ended or time.monotonic()) - (job.started or time.monotonic())
            ui["bar"].visible = False
            ui["cancel"].visible = False
            try:
                if job.state == "done":
                    ui["status"].content = f"**{label}**: done in {took:.1f} s"
                    if on_done is not None:
                        on_done(job.result)
                elif job.state == "cancelled":
                    ui["status"].content = f"**{label}**: cancelled after {took:.1f} s"
                    self.viewer.notify(
                        "Cancelled", f"{label} stopped; nothing was applied", client=client
                    )
                else:
                    e = job.error
                    ui["status"].content = f"**{label}** failed: `{type(e).__name__}: {e}`"
                    self.viewer.notify_error(
                        f"{label} failed", f"{type(e).__name__}: {e}", client=client
                    )
            except Exception as e:  # showing the result failed: say so, keep serving
                logger.error(
                    "%s: showing the result failed: %s\n%s", label, e, traceback.format_exc()
                )
                self.viewer.notify_error(
                    f"{label} failed", f"{type(e).__name__}: {e}", client=client
                )
            finally:
                if on_finish is not None:
                    try:
                        on_finish(job)
                    except Exception as e:
                        logger.error("%s on_finish failed: %s", label, e)

        # the UI first: a job may finish (and call ``finish``) before ``start`` returns
        previous = (ui["bar"].visible, ui["cancel"].visible, ui["status"].content)
        ui["bar"].value = 0.0
        ui["bar"].visible = True
        ui["status"].content = f"**{label}**: starting"
        ui["status"].visible = True
        ui["cancel"].disabled = False
        ui["cancel"].visible = True
        try:
            job = self.jobs.start(fn, name=label, on_progress=show_progress, on_finish=finish)
        except BaseException:  # e.g. another job of this panel still runs: leave its UI as it was
            ui["bar"].visible, ui["cancel"].visible, ui["status"].content = previous
            raise
        self.last_job = job
        return job

    def cancel_job(self) -> None:
        job = self.jobs.current
        if job is not None and job.running:
            job.cancel()
            if self._job_ui is not None:
                self._job_ui["cancel"].disabled = True
                self._job_ui["status"].content = f"**{job.name}**: cancelling..."

    # ------------------------------------------------------------------ callbacks
    def guard(self, fn: Callable[[Any], Any]) -> Callable[[Any], Any]:
        return self.viewer.guard(fn, where=self.name, context=self)

    def on(self, event: str, fn: Callable[..., None]) -> None:
        self.viewer.on(event, fn)

    def inputs(self) -> Any:
        from ...plugins.base import PluginInputs

        return PluginInputs(
            params=self.scene(),
            selection=self.selection(),
            render=self.render,
            camera=self.camera(),
            path=Path(self.viewer.cfg.scene),
        )

    def check_upload(
        self, name: str, content: bytes, types: tuple[str, ...], max_bytes: int
    ) -> None:
        from ...plugins.base import check_upload

        check_upload(name, content, types, min(max_bytes, self.viewer.max_upload_bytes))

    def progress_bar(self) -> Callable[[float, str], None]:
        """A bare progress bar in the panel (for panels that run work outside :meth:`run_job`)."""
        with self._in_container():
            bar = self.gui.add_progress_bar(0.0, visible=False)

        def progress(fraction: float, message: str = "") -> None:
            bar.visible = fraction < 1.0
            bar.value = float(np.clip(fraction, 0, 1) * 100.0)

        return progress

    def _client(self) -> Any:
        c = self.last_client
        if c is not None and c.client_id in self.viewer.server.get_clients():
            return c
        return None


def _size(n: int) -> str:
    for unit in ("B", "kB", "MB", "GB"):
        if n < 1000 or unit == "GB":
            return f"{n:.0f} {unit}" if unit == "B" else f"{n:.1f} {unit}"
        n /= 1000.0
    return f"{n} B"


def _fmt(v: Any) -> str:
    if isinstance(v, float):
        return f"{v:.5g}"
    return str(v)


def _table_markdown(name: str, table: Mapping[str, list]) -> str:
    cols = list(table)
    n = max((len(v) for v in table.values()), default=0)
    lines = [f"**{name}**", "", "| " + " | ".join(cols) + " |", "|" + "---|" * len(cols)]
    for i in range(min(n, MAX_TABLE_ROWS)):
        lines.append(
            "| " + " | ".join(_fmt(table[c][i]) if i < len(table[c]) else "" for c in cols) + " |"
        )
    if n > MAX_TABLE_ROWS:
        lines.append(f"\n({n - MAX_TABLE_ROWS} more rows in report.json)")
    return "\n".join(lines)


def _displayable(img: Any) -> np.ndarray:
    a = np.asarray(img)
    if a.dtype != np.uint8:
        a = (np.clip(a.astype(np.float64), 0, 1) * 255 + 0.5).astype(np.uint8)
    if a.ndim == 2:
        a = np.repeat(a[..., None], 3, -1)
    return np.ascontiguousarray(a[..., :3])
