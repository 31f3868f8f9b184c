"""The Segment tab: clicks in the 3D view (shift + click = negative) become 3D points (on the
rendered depth), re-projected into the current view and turned into a 2D mask by SAM's mask
decoder on the rendered SAM map (SAM fields) or by feature similarity (other fields); the Gaussians
whose rendering weight falls in the mask become the selection, which can grow in 3D."""

from __future__ import annotations

import threading
from typing import Any

import numpy as np
import torch

from ..render import ViewCamera, render_view
from ._selection import SelectionActions

__all__ = ["SegmentPanel", "SegmentState", "segment_click", "mask_overlay"]


def mask_overlay(
    rgb: np.ndarray, mask: np.ndarray, points: np.ndarray, labels: np.ndarray
) -> np.ndarray:
    """The mask tinted blue over an RGB view, clicks as green (positive) / red (negative) dots."""
    import cv2

    out = rgb.astype(np.float32).copy()
    m = np.asarray(mask, bool)
    out[m] = 0.45 * out[m] + 0.55 * np.array([40.0, 120.0, 255.0])
    out = np.clip(out, 0, 255).astype(np.uint8)
    r = max(2, round(max(out.shape[:2]) / 120))
    for (x, y), lab in zip(np.asarray(points).reshape(-1, 2), np.asarray(labels).reshape(-1)):
        color = (40, 220, 60) if lab == 1 else (230, 40, 40)
        cv2.circle(out, (round(float(x)), round(float(y))), r, color, -1, lineType=cv2.LINE_AA)
        cv2.circle(out, (round(float(x)), round(float(y))), r, (255, 255, 255), 1, cv2.LINE_AA)
    return out


# ------------------------------------------------------------------------------ Segment


class SegmentState:
    """Clicks kept as 3D points (so they survive camera motion) and the current selection."""

    def __init__(self) -> None:
        self.points: list[np.ndarray] = []  # world positions [3]
        self.labels: list[int] = []
        self.mask: np.ndarray | None = None  # bool [N]
        self.lock = threading.Lock()

    def clear(self) -> None:
        self.points.clear()
        self.labels.clear()
        self.mask = None


def _unproject(cam: ViewCamera, x: float, y: float, depth: float) -> np.ndarray:
    ray = np.linalg.inv(cam.K) @ np.array([x, y, 1.0])
    p_cam = ray * depth
    c2w = np.linalg.inv(cam.viewmat)
    return c2w[:3, :3] @ p_cam + c2w[:3, 3]


def _project(cam: ViewCamera, pts: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Pixels [P, 2] of world points and whether each is in front of the camera and inside."""
    p = (cam.viewmat[:3, :3] @ pts.T + cam.viewmat[:3, 3:4]).T
    z = p[:, 2]
    uv = (cam.K @ p.T).T
    px = uv[:, :2] / np.maximum(uv[:, 2:3], 1e-9)
    ok = (
        (z > 1e-6)
        & (px[:, 0] >= 0)
        & (px[:, 0] < cam.width)
        & (px[:, 1] >= 0)
        & (px[:, 1] < cam.height)
    )
    return px, ok


def segment_click(
    v: Any,
    state: SegmentState,
    cam: ViewCamera,
    screen_pos: tuple[float, float],
    positive: bool,
    similarity: float,
    min_fraction: float,
) -> dict[str, Any]:
    """Add a click at ``screen_pos`` (0..1, OpenCV image coordinates) of ``cam`` and recompute
    the mask and the 3D selection. Returns {"mask2d", "overlay", "score", "selected"}."""
    from ....scene.query import select_in_mask

    field = v.feature_field
    params = v.source.snapshot()
    feat, depth, alpha = rendered = field.render(params, cam.viewmat, cam.K, cam.width, cam.height)
    x = float(np.clip(screen_pos[0] * cam.width, 0, cam.width - 1))
    y = float(np.clip(screen_pos[1] * cam.height, 0, cam.height - 1))
    xi, yi = int(x), int(y)
    if float(alpha[yi, xi]) < 0.3:
        raise ValueError("that click hit empty space; click on the object to segment")
    with state.lock:
        state.points.append(_unproject(cam, x + 0.5, y + 0.5, float(depth[yi, xi])))
        state.labels.append(1 if positive else 0)
        pts3 = np.stack(state.points)
        labs = np.asarray(state.labels)
    px, ok = _project(cam, pts3)
    px, labs = px[ok] - 0.5, labs[ok]
    mask2d, score = field.click_mask(
        params, cam.viewmat, cam.K, cam.width, cam.height, px, labs, similarity, rendered=rendered
    )
    sel = (
        select_in_mask(
            params,
            torch.as_tensor(cam.viewmat, dtype=torch.float32),
            torch.as_tensor(cam.K, dtype=torch.float32),
            cam.width,
            cam.height,
            mask2d,
            min_fraction=min_fraction,
        )
        .cpu()
        .numpy()
    )
    with state.lock:
        state.mask = sel
    rgb = render_view(params, cam, "RGB")
    return {
        "mask2d": mask2d.cpu().numpy(),
        "overlay": mask_overlay(rgb, mask2d.cpu().numpy(), px, labs),
        "score": score,
        "selected": sel,
        "points": pts3,
        "labels": np.asarray(state.labels),
    }


class SegmentPanel:
    """``self.state`` (clicks and mask), ``self.handles``, ``self.actions``, ``self.last``
    (the last click's result)."""

    def __init__(self, ctx: Any) -> None:
        self.ctx = ctx
        v = ctx.viewer
        gui = ctx.gui
        field = self.field = v.feature_field
        how = (
            "SAM's mask decoder on the rendered SAM feature map"
            if field.promptable
            else f"feature similarity ({field.teacher_kind} features; SAM fields use SAM's decoder)"
        )
        gui.add_markdown(
            f"Click the object in the 3D view; shift + click adds a negative. Masks: {how}."
        )
        enabled = gui.add_checkbox("Click to segment", False)
        sign = gui.add_dropdown("Click adds", ("positive", "negative"), initial_value="positive")
        similarity = gui.add_slider(
            "Similarity", min=0.3, max=1.0, step=0.01, initial_value=0.85, disabled=field.promptable
        )
        min_fraction = gui.add_slider(
            "Min weight inside mask", min=0.1, max=1.0, step=0.05, initial_value=0.5
        )
        clear = gui.add_button("Clear clicks")
        with gui.add_folder("Grow selection", expand_by_default=False):
            means = v.source.snapshot()["means"].detach().cpu().numpy()
            self.extent = float(
                np.linalg.norm(np.percentile(means, 98, 0) - np.percentile(means, 2, 0))
            )
            extent = self.extent
            radius = gui.add_slider(
                "Radius",
                min=0.0,
                max=max(extent * 0.1, 1e-3),
                step=max(extent * 0.001, 1e-5),
                initial_value=max(extent * 0.01, 1e-4),
            )
            grow_sim = gui.add_slider(
                "Min feature cosine", min=0.0, max=1.0, step=0.01, initial_value=0.8
            )
            grow = gui.add_button("Grow")
        status = gui.add_markdown("no clicks")
        overlay = gui.add_image(np.zeros((48, 64, 3), np.uint8), label="mask", visible=False)
        self.state = SegmentState()
        self.last: dict[str, Any] | None = None
        self.handles = {
            "enabled": enabled,
            "status": status,
            "overlay": overlay,
            "sign": sign,
            "similarity": similarity,
            "min_fraction": min_fraction,
            "grow": grow,
            "radius": radius,
            "grow_similarity": grow_sim,
        }
        self.markers: list[Any] = []
        self._click_handlers = {
            None: ctx.guard(lambda e: self.on_click(e)),
            "shift": ctx.guard(lambda e: self.on_click(e, positive=False)),
        }

        @enabled.on_update
        @ctx.guard
        def _(_: Any) -> None:
            for mod, fn in self._click_handlers.items():
                v.server.scene.remove_click_callback(fn)
                if enabled.value:
                    v.server.scene.on_click(modifier=mod)(fn)

        clear.on_click(ctx.guard(lambda _: self.clear()))
        grow.on_click(ctx.guard(lambda _: self.grow()))
        self.actions = SelectionActions(ctx, "segment", lambda: self.state.mask)

    def _remove_markers(self) -> None:
        for m in self.markers:
            m.remove()
        self.markers.clear()

    def show(self, res: dict[str, Any]) -> None:
        v = self.ctx.viewer
        self._remove_markers()
        r = 0.004 * max(self.extent, 1e-3)
        for i, (p, lab) in enumerate(zip(res["points"], res["labels"])):
            self.markers.append(
                v.server.scene.add_icosphere(
                    f"/segment_clicks/{i}",
                    radius=r,
                    color=(40, 220, 60) if lab == 1 else (230, 40, 40),
                    position=tuple(float(c) for c in p),
                )
            )
        overlay = self.handles["overlay"]
        overlay.image = res["overlay"]
        overlay.visible = True
        sel = res["selected"]
        n_pos = int((res["labels"] == 1).sum())
        self.handles["status"].content = (
            f"{n_pos} positive / {len(res['labels']) - n_pos} negative clicks · mask "
            f"{int(res['mask2d'].sum()):,} px (score {res['score']:.2f}) · "
            f"**{int(sel.sum()):,}** Gaussians selected"
        )
        self.ctx.set_selection(sel)

    def on_click(self, event: Any, positive: bool | None = None) -> None:
        v, h = self.ctx.viewer, self.handles
        cam = v.client_camera(event.client)
        if cam is None:
            raise RuntimeError("this browser has not sent its camera yet")
        cam = cam.scaled(int(v.gui_values["max_resolution"]))
        pos = (h["sign"].value == "positive") if positive is None else positive
        res = segment_click(
            v,
            self.state,
            cam,
            event.screen_pos,
            pos,
            float(h["similarity"].value),
            float(h["min_fraction"].value),
        )
        self.last = res
        self.show(res)

    def clear(self) -> None:
        with self.state.lock:
            self.state.clear()
        self._remove_markers()
        self.handles["overlay"].visible = False
        self.handles["status"].content = "no clicks"
        self.ctx.set_selection(None)

    def grow(self) -> None:
        from ....scene.query import gaussian_features, grow_selection

        state = self.state
        if state.mask is None or not state.mask.any():
            raise ValueError("click an object first")
        params = self.ctx.scene()
        feats = gaussian_features(params, self.field.decoder)
        grown = grow_selection(
            params,
            torch.from_numpy(state.mask),
            float(self.handles["radius"].value),
            features=feats,
            min_similarity=float(self.handles["grow_similarity"].value),
        ).numpy()
        before = int(state.mask.sum())
        state.mask = grown
        self.handles[
            "status"
        ].content = f"grown from {before:,} to **{int(grown.sum()):,}** Gaussians selected"
        self.ctx.set_selection(grown)
