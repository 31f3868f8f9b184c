"""The viewer's feature-field tabs (scenes trained with ``--features``).

- **Query** (text-aligned fields: LSeg, CLIP, the synthetic label teacher): a prompt, negatives
  and a threshold; the "query heatmap" render mode paints the relevance over a dimmed RGB render;
  Select / Delete / Extract / Export PLY act on the Gaussians that match (each Gaussian's feature
  is decoded once, :meth:`FeatureField.select_text`).
- **Segment**: clicks in the 3D view (shift + click = negative) become 3D points (on the rendered
  depth), re-projected into the current view and turned into a 2D mask by SAM's mask decoder on
  the rendered SAM map (SAM fields) or by feature similarity (other fields); the Gaussians whose
  rendering weight falls in the mask become the selection, which can grow in 3D.

Selections go through :meth:`Viewer.set_feature_selection`, so the Edit tab's "show only the
selection", "export selection" and the "selection" render mode apply to them too.
"""

from __future__ import annotations

import threading
from typing import TYPE_CHECKING, Any

import numpy as np
import torch

from .render import ViewCamera, render_view, subset_params

if TYPE_CHECKING:
    from .server import Viewer

__all__ = ["build_query_panel", "build_segment_panel", "query_heatmap_image", "mask_overlay"]


def query_heatmap_image(
    field: Any,
    params: dict[str, Any],
    cam: ViewCamera,
    prompt: str,
    negatives: list[str] | None,
    threshold: float,
    background: tuple[float, float, float] = (0.0, 0.0, 0.0),
) -> np.ndarray:
    """RGB dimmed to grey, with the relevance (cosine, TURBO from ``threshold`` to 1) painted
    where it is >= ``threshold`` and the prompt beats every negative -> uint8 [H, W, 3]."""
    import cv2

    rgb = render_view(params, cam, "RGB", background=background).astype(np.float32) / 255.0
    if not prompt.strip():
        return (rgb.mean(-1, keepdims=True).repeat(3, -1) * 0.5 * 255 + 0.5).astype(np.uint8)
    feat, _, alpha = field.render(params, cam.viewmat, cam.K, cam.width, cam.height)
    neg = field.default_negatives(prompt) if negatives is None else negatives
    rel = field.relevance(feat, [prompt, *neg]).numpy()  # [1 + Q, H, W]
    cos = rel[0]
    hit = (cos >= threshold) & (alpha.numpy() >= 0.05)
    if len(rel) > 1:
        hit &= cos > rel[1:].max(0)
    t = np.clip((cos - threshold) / max(1.0 - threshold, 1e-6), 0, 1)
    heat = cv2.applyColorMap((t * 255).astype(np.uint8), cv2.COLORMAP_TURBO)[..., ::-1] / 255.0
    grey = rgb.mean(-1, keepdims=True).repeat(3, -1) * 0.5
    out = np.where(hit[..., None], 0.25 * rgb + 0.75 * heat, grey)
    return (np.clip(out, 0, 1) * 255 + 0.5).astype(np.uint8)


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


def _split(text: str) -> list[str]:
    return [t.strip() for t in text.split(",") if t.strip()]


def _selection_actions(v: Viewer, gui: Any, prefix: str, current: Any) -> dict[str, Any]:
    """Delete / Extract / Export PLY / Restore buttons acting on ``current() -> bool [N]``."""
    import torch

    delete = gui.add_button(
        "Delete selected", hint="Remove them from the scene shown (files untouched)"
    )
    extract = gui.add_button("Extract selected", hint="Keep only them in the scene shown")
    export = gui.add_button("Export selected as PLY")
    restore = gui.add_button("Restore the full scene")

    def mask_or_raise() -> np.ndarray:
        m = current()
        if m is None or not np.asarray(m).any():
            raise ValueError("nothing is selected")
        n = v.source.n_gaussians
        if len(m) != n:
            raise ValueError(
                f"the selection was made on a scene of {len(m):,} Gaussians; the scene now has "
                f"{n:,} (after a delete / extract / restore): select again"
            )
        return np.asarray(m, bool)

    @delete.on_click
    @v.guard
    def _(_: Any) -> None:
        m = mask_or_raise()
        v.replace_scene(subset_params(v.source.snapshot(), ~m))

    @extract.on_click
    @v.guard
    def _(_: Any) -> None:
        m = mask_or_raise()
        v.replace_scene(subset_params(v.source.snapshot(), m))

    @restore.on_click
    @v.guard
    def _(_: Any) -> None:
        v.replace_scene(dict(v.original_params))

    @export.on_click
    @v.guard
    def _(event: Any) -> None:
        from ...scene.query import export_selection_ply

        m = mask_or_raise()
        params = {k: torch.as_tensor(t) for k, t in v.source.snapshot().items()}
        out = v.source.out_dir / f"{prefix}_selection.ply"
        transform = None if np.allclose(v.source.transform, np.eye(4)) else v.source.transform
        export_selection_ply(out, params, torch.from_numpy(m), transform=transform)
        client = getattr(event, "client", None)
        if client is not None:
            client.send_file_download(out.name, out.read_bytes())
            client.add_notification(
                "Selection exported", f"{int(m.sum()):,} Gaussians -> {out}", auto_close_seconds=5.0
            )
        v.last_export = out

    return {"delete": delete, "extract": extract, "export": export, "restore": restore}


# ------------------------------------------------------------------------------ Query


def build_query_panel(v: Viewer) -> None:
    from .server import QUERY_HEATMAP_MODE

    gui = v.server.gui
    field = v.feature_field
    names = field.label_names()
    gui.add_markdown(
        f"Features: d = {field.dim} per Gaussian, decoded to {field.decoder.out_dim}-D "
        f"(teacher: **{field.teacher_kind}**)."
        + (f" Labels: {', '.join(names[1:])}." if field.teacher_kind == "labels" and names else "")
    )
    first = names[1] if field.teacher_kind == "labels" and names and len(names) > 1 else ""
    prompt = gui.add_text("Prompt", first, hint="What to find, e.g. 'chrome ball'")
    negatives = gui.add_text(
        "Negatives",
        "",
        hint="Comma-separated; empty = the other labels (label teacher) or LERF's canonical phrases",
    )
    default_t = 0.5 if field.teacher_kind == "labels" else 0.2
    threshold = gui.add_slider("Threshold", min=0.0, max=1.0, step=0.01, initial_value=default_t)
    heat = gui.add_button("Show heatmap", hint="Server render in the 'query heatmap' mode")
    select = gui.add_button("Select matches")
    clear = gui.add_button("Clear selection")
    result = gui.add_markdown("")
    state: dict[str, Any] = {"mask": None}
    v.query_handles = {
        "prompt": prompt,
        "negatives": negatives,
        "threshold": threshold,
        "select": select,
        "result": result,
    }

    def settings() -> tuple[str, list[str] | None, float]:
        neg = _split(negatives.value)
        return prompt.value, (neg or None), float(threshold.value)

    def heatmap_mode(cam: ViewCamera, params: dict[str, Any], bg: tuple) -> np.ndarray:
        p, n, t = settings()
        return query_heatmap_image(field, params, cam, p, n, t, background=bg)

    v.extra_modes[QUERY_HEATMAP_MODE] = heatmap_mode

    def refresh_selection() -> None:
        p, n, t = settings()
        params = v.source.snapshot()
        sel = field.select_text(params, p, t, n).cpu().numpy()
        state["mask"] = sel
        v.set_feature_selection(sel)
        result.content = (
            f"**{int(sel.sum()):,}** of {sel.size:,} Gaussians match '{p.strip()}' "
            f"(cosine >= {t:.2f}, closer than {len(n) if n else len(field.default_negatives(p))} negatives)"
        )

    for h in (prompt, negatives, threshold):

        @h.on_update
        @v.guard
        def _(_: Any) -> None:
            if state["mask"] is not None:  # a selection follows its query
                refresh_selection()
            v.changed()

    @heat.on_click
    @v.guard
    def _(_: Any) -> None:
        field.encode_text([prompt.value])  # a bad prompt / absent weights fail here, visibly
        v.set_mode(QUERY_HEATMAP_MODE)

    @select.on_click
    @v.guard
    def _(_: Any) -> None:
        refresh_selection()

    @clear.on_click
    @v.guard
    def _(_: Any) -> None:
        state["mask"] = None
        v.set_feature_selection(None)
        result.content = ""

    v.query_actions = _selection_actions(v, gui, "query", lambda: state["mask"])


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
    v: Viewer,
    state: SegmentState,
    cam: ViewCamera,
    screen_pos: tuple[float, float],
    positive: bool,
    similarity: float,
    min_fraction: float,
) -> dict[str, Any]:
    """Add a click at ``screen_pos`` (0..1, OpenCV image coordinates) of ``cam`` and recompute
    the mask and the 3D selection. Returns {"mask2d", "overlay", "score", "selected"}."""
    from ...scene.query import select_in_mask

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


def build_segment_panel(v: Viewer) -> None:
    gui = v.server.gui
    field = v.feature_field
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
        extent = float(np.linalg.norm(np.percentile(means, 98, 0) - np.percentile(means, 2, 0)))
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
    state = SegmentState()
    v.segment_state = state
    v.segment_handles = {
        "enabled": enabled,
        "status": status,
        "overlay": overlay,
        "sign": sign,
        "grow": grow,
        "radius": radius,
        "grow_similarity": grow_sim,
    }
    markers: list[Any] = []

    def show(res: dict[str, Any]) -> None:
        for m in markers:
            m.remove()
        markers.clear()
        r = 0.004 * max(extent, 1e-3)
        for i, (p, lab) in enumerate(zip(res["points"], res["labels"])):
            markers.append(
                v.server.scene.add_icosphere(
                    f"/segment_clicks/{i}",
                    radius=r,
                    color=(40, 220, 60) if lab == 1 else (230, 40, 40),
                    position=tuple(float(c) for c in p),
                )
            )
        overlay.image = res["overlay"]
        overlay.visible = True
        sel = res["selected"]
        n_pos = int((res["labels"] == 1).sum())
        status.content = (
            f"{n_pos} positive / {len(res['labels']) - n_pos} negative clicks · mask "
            f"{int(res['mask2d'].sum()):,} px (score {res['score']:.2f}) · "
            f"**{int(sel.sum()):,}** Gaussians selected"
        )
        v.set_feature_selection(sel)

    def on_click(event: Any, positive: bool | None = None) -> None:
        cam = v.client_camera(event.client)
        if cam is None:
            raise RuntimeError("this browser has not sent its camera yet")
        cam = cam.scaled(int(v.gui_values["max_resolution"]))
        pos = (sign.value == "positive") if positive is None else positive
        res = segment_click(
            v, state, cam, event.screen_pos, pos, float(similarity.value), float(min_fraction.value)
        )
        v.last_segment = res
        show(res)

    handlers = {
        None: v.guard(lambda e: on_click(e), where="Segment click"),
        "shift": v.guard(lambda e: on_click(e, positive=False), where="Segment click"),
    }

    @enabled.on_update
    @v.guard
    def _(_: Any) -> None:
        for mod, fn in handlers.items():
            v.server.scene.remove_click_callback(fn)
            if enabled.value:
                v.server.scene.on_click(modifier=mod)(fn)

    @clear.on_click
    @v.guard
    def _(_: Any) -> None:
        with state.lock:
            state.clear()
        for m in markers:
            m.remove()
        markers.clear()
        overlay.visible = False
        status.content = "no clicks"
        v.set_feature_selection(None)

    @grow.on_click
    @v.guard
    def _(_: Any) -> None:
        from ...scene.query import gaussian_features, grow_selection

        if state.mask is None or not state.mask.any():
            raise ValueError("click an object first")
        params = v.source.snapshot()
        feats = gaussian_features(params, field.decoder)
        grown = grow_selection(
            params,
            torch.from_numpy(state.mask),
            float(radius.value),
            features=feats,
            min_similarity=float(grow_sim.value),
        ).numpy()
        before = int(state.mask.sum())
        state.mask = grown
        status.content = f"grown from {before:,} to **{int(grown.sum()):,}** Gaussians selected"
        v.set_feature_selection(grown)

    v.segment_actions = _selection_actions(v, gui, "segment", lambda: state.mask)
