"""The panel contract: what a viewer tab (built-in or plugin) may do, as :class:`PanelContext`.

The viewer (``splatlab.app.viewer.context.ViewerPanelContext``) implements it; a plugin's
``panel(ctx)`` and every built-in tab receive one. This module imports nothing from
``splatlab.app``, so plugins depend on the contract, not on the viewer::

    class MyPlugin(Plugin):
        def panel(self, ctx: PanelContext) -> None:
            super().panel(ctx)                        # options, Run (as a job), report
            ctx.add_render_mode("my heat", lambda cam, params: heat(cam, params), "turbo")

Rules of the road:

- GUI elements are added with ``ctx.gui`` (viser's GUI API). While ``panel`` runs they land in
  the panel's folder; from a callback or a job, wrap additions in ``with ctx.container:``.
- Long work goes through :meth:`PanelContext.run_job`: a worker thread with a progress bar and a
  Cancel button; the viewer keeps rendering camera moves meanwhile; one job per panel at a time.
- A panel keeps its state in its own object (attributes of the panel or closure variables),
  never on the viewer.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any, Literal, Protocol, runtime_checkable

import numpy as np

__all__ = ["PanelContext", "RenderModeFn", "COLORMAPS", "apply_colormap", "EVENTS"]

RenderModeFn = Callable[[Any, Mapping[str, Any]], np.ndarray]
"""``fn(camera, params) -> uint8 [H, W, 3]`` (shown as is) or float [H, W] / [H, W, 1] (coloured
with the mode's colour map; NaN = background)."""

COLORMAPS = ("turbo", "viridis", "magma", "inferno", "gray")
EVENTS = ("scene", "selection", "modes", "mode")
"""``ctx.on(event, fn)``: "scene" (the Gaussians shown changed), "selection", "modes" (a render
mode was added or removed), "mode" (the current render mode changed; fn(mode))."""


def apply_colormap(
    values: np.ndarray,
    colormap: str = "turbo",
    value_range: tuple[float, float] | None = None,
) -> np.ndarray:
    """Scalar map [H, W] (or [H, W, 1]) -> uint8 [H, W, 3] through ``colormap`` (one of
    :data:`COLORMAPS`). ``value_range`` (lo, hi); None: the 2nd / 98th percentile of the finite
    values. Non-finite values are black."""
    import cv2

    v = np.asarray(values, dtype=np.float64)
    if v.ndim == 3 and v.shape[-1] == 1:
        v = v[..., 0]
    if v.ndim != 2:
        raise ValueError(f"a scalar map must be [H, W] or [H, W, 1], got shape {v.shape}")
    if colormap not in COLORMAPS:
        raise ValueError(f"unknown colour map {colormap!r}; choose one of {COLORMAPS}")
    finite = np.isfinite(v)
    if value_range is None:
        vals = v[finite]
        lo, hi = np.percentile(vals, [2, 98]) if vals.size else (0.0, 1.0)
    else:
        lo, hi = (float(x) for x in value_range)
    t = np.clip((np.where(finite, v, lo) - lo) / max(hi - lo, 1e-12), 0.0, 1.0)
    u8 = (t * 255.0 + 0.5).astype(np.uint8)
    if colormap == "gray":
        rgb = np.repeat(u8[..., None], 3, axis=-1)
    else:
        cm = {
            "turbo": cv2.COLORMAP_TURBO,
            "viridis": cv2.COLORMAP_VIRIDIS,
            "magma": cv2.COLORMAP_MAGMA,
            "inferno": cv2.COLORMAP_INFERNO,
        }[colormap]
        rgb = cv2.applyColorMap(u8, cm)[..., ::-1]
    return np.ascontiguousarray(np.where(finite[..., None], rgb, 0).astype(np.uint8))


@runtime_checkable
class PanelContext(Protocol):
    """What a viewer panel receives. Cameras have ``viewmat`` [4, 4] (OpenCV world-to-camera),
    ``K`` [3, 3], ``width``, ``height`` (and ``scaled(max_side)``)."""

    name: str
    """The panel's title (the plugin name for plugin panels)."""
    gui: Any
    """viser's GUI API (``add_button``, ``add_markdown``, ``add_slider``, ``add_plotly`` ...)."""
    container: Any
    """The panel's folder / tab handle: ``with ctx.container:`` adds elements to it later."""
    out_dir: Path
    """Where the viewer writes files (exports, downloads) for this scene."""

    # ------------------------------------------------------------------ scene and camera
    def scene(self) -> dict[str, Any]:
        """A consistent snapshot of the current Gaussians (name -> Tensor, stored activations)."""
        ...

    def scene_transform(self) -> np.ndarray:
        """float64 [4, 4]: the viewer's frame <- the scene file's frame (a run's normalisation;
        identity for a plain scene file). Exports pass it to the writers so a saved PLY is in
        the original frame, as the Edit tab's export does."""
        ...

    def camera(self) -> Any | None:
        """The view of the browser that last used this panel (else any browser), or None."""
        ...

    def render(self, camera: Any, mode: str = "RGB") -> np.ndarray:
        """Render ``camera`` in ``mode`` with the viewer's settings -> uint8 [H, W, 3]."""
        ...

    # ------------------------------------------------------------------ render modes
    def render_modes(self) -> list[str]:
        """The modes the viewer offers now."""
        ...

    def add_render_mode(
        self,
        name: str,
        fn: RenderModeFn,
        colormap: str | None = None,
        value_range: tuple[float, float] | None = None,
    ) -> None:
        """Offer ``name`` in the viewer's render-mode menu, drawn by ``fn(camera, params)``
        (params: the Gaussians shown). A float [H, W] result is coloured with ``colormap``
        (:data:`COLORMAPS`, default turbo) over ``value_range`` (None: 2nd-98th percentile)."""
        ...

    def remove_render_mode(self, name: str) -> None:
        """Withdraw a mode this panel added (browsers showing it go back to RGB)."""
        ...

    def set_render_mode(self, name: str) -> None:
        """Switch every browser to ``name`` (server renders)."""
        ...

    # ------------------------------------------------------------------ selection
    def selection(self) -> np.ndarray:
        """bool [N] of the selected Gaussians (the Edit tab's crop box and filters AND the
        selection set by panels)."""
        ...

    def set_selection(self, mask: np.ndarray | None) -> None:
        """Select the Gaussians ``mask`` bool [N] (None: clear); the Edit tab's export,
        "show only the selection" and the "selection" render mode use it."""
        ...

    # ------------------------------------------------------------------ scenes
    def show_scene(
        self,
        params: Mapping[str, Any],
        how: Literal["beside", "instead"] = "beside",
        name: str = "",
    ) -> None:
        """Show other Gaussians (decoded, generated, edited): ``beside`` the current scene
        (shifted along x so both are seen) or ``instead`` of it (Restore brings it back)."""
        ...

    def clear_scene(self) -> None:
        """Remove the scene shown beside, and restore the original one if it was replaced."""
        ...

    # ------------------------------------------------------------------ output
    def show_report(self, report: Any) -> None:
        """Show a :class:`~splatlab.plugins.base.Report` in the panel: metrics, notes, tables,
        plotly figures, images, download buttons for its files, its scene and selection."""
        ...

    def download(self, name: str, data: bytes | Path) -> None:
        """Offer a file to the browser that last used this panel (viser send_file_download)."""
        ...

    def notify(self, title: str, body: str = "", *, error: bool = False) -> None:
        """A notification in the browsers (red when ``error``)."""
        ...

    # ------------------------------------------------------------------ jobs and callbacks
    def run_job(
        self,
        fn: Callable[[Any], Any],
        *,
        label: str = "",
        on_done: Callable[[Any], None] | None = None,
        on_finish: Callable[[Any], None] | None = None,
    ) -> Any:
        """Run ``fn(progress)`` in a worker thread with a progress bar and a Cancel button in
        this panel; ``on_done(result)`` runs after it succeeds (not after a cancel or an error;
        an error becomes a notification); ``on_finish(job)`` after any outcome. Returns the
        ``splatlab.plugins.jobs.Job``; raises ``JobBusyError`` while this panel's previous job
        runs. Callbacks run on the worker thread (wrap GUI additions in ``with ctx.container``)."""
        ...

    def guard(self, fn: Callable[[Any], Any]) -> Callable[[Any], Any]:
        """Wrap a GUI callback: an exception becomes an error notification, the viewer lives."""
        ...

    def on(self, event: str, fn: Callable[..., None]) -> None:
        """Call ``fn`` on a viewer event (:data:`EVENTS`)."""
        ...

    def inputs(self) -> Any:
        """A :class:`~splatlab.plugins.base.PluginInputs` of the current scene, selection,
        camera and render function."""
        ...

    def check_upload(
        self, name: str, content: bytes, types: tuple[str, ...], max_bytes: int
    ) -> None:
        """:func:`~splatlab.plugins.base.check_upload` with the viewer's size cap."""
        ...
