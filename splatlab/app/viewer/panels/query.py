"""The Query tab (text-aligned feature fields: LSeg, CLIP, the synthetic label teacher): a prompt,
negatives and a threshold; the "query heatmap" render mode paints the relevance over a dimmed RGB
render; Select / Delete / Extract / Export PLY act on the Gaussians that match (each Gaussian's
feature is decoded once, ``FeatureField.select_text``). Selections go through
``PanelContext.set_selection``, so the Edit tab and the "selection" mode apply to them too."""

from __future__ import annotations

from typing import Any

import numpy as np

from ..render import ViewCamera, render_view
from ._selection import SelectionActions

__all__ = ["QueryPanel", "query_heatmap_image"]

QUERY_HEATMAP_MODE = "query heatmap"


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


def _split(text: str) -> list[str]:
    return [t.strip() for t in text.split(",") if t.strip()]


class QueryPanel:
    """``self.handles`` (prompt, negatives, threshold, select, result), ``self.actions``
    (delete, extract, export, restore), ``self.mask`` (the last selection)."""

    def __init__(self, ctx: Any) -> None:
        self.ctx = ctx
        v = ctx.viewer
        gui = ctx.gui
        field = self.field = v.feature_field
        names = field.label_names()
        gui.add_markdown(
            f"Features: d = {field.dim} per Gaussian, decoded to {field.decoder.out_dim}-D "
            f"(teacher: **{field.teacher_kind}**)."
            + (
                f" Labels: {', '.join(names[1:])}."
                if field.teacher_kind == "labels" and names
                else ""
            )
        )
        first = names[1] if field.teacher_kind == "labels" and names and len(names) > 1 else ""
        prompt = gui.add_text("Prompt", first, hint="What to find, e.g. 'chrome ball'")
        negatives = gui.add_text(
            "Negatives",
            "",
            hint="Comma-separated; empty = the other labels (label teacher) or LERF's canonical phrases",
        )
        default_t = 0.5 if field.teacher_kind == "labels" else 0.2
        threshold = gui.add_slider(
            "Threshold", min=0.0, max=1.0, step=0.01, initial_value=default_t
        )
        heat = gui.add_button("Show heatmap", hint="Server render in the 'query heatmap' mode")
        select = gui.add_button("Select matches")
        clear = gui.add_button("Clear selection")
        result = gui.add_markdown("")
        self.mask: np.ndarray | None = None
        self.handles = {
            "prompt": prompt,
            "negatives": negatives,
            "threshold": threshold,
            "select": select,
            "result": result,
        }
        ctx.add_render_mode(QUERY_HEATMAP_MODE, self._heatmap)

        for h in (prompt, negatives, threshold):

            @h.on_update
            @ctx.guard
            def _(_: Any) -> None:
                if self.mask is not None:  # a selection follows its query
                    self.refresh_selection()
                v.changed()

        @heat.on_click
        @ctx.guard
        def _(_: Any) -> None:
            field.encode_text([prompt.value])  # a bad prompt / absent weights fail here, visibly
            ctx.set_render_mode(QUERY_HEATMAP_MODE)

        select.on_click(ctx.guard(lambda _: self.refresh_selection()))

        @clear.on_click
        @ctx.guard
        def _(_: Any) -> None:
            self.mask = None
            ctx.set_selection(None)
            result.content = ""

        self.actions = SelectionActions(ctx, "query", lambda: self.mask)

    def settings(self) -> tuple[str, list[str] | None, float]:
        h = self.handles
        neg = _split(h["negatives"].value)
        return h["prompt"].value, (neg or None), float(h["threshold"].value)

    def _heatmap(self, cam: ViewCamera, params: dict[str, Any]) -> np.ndarray:
        p, n, t = self.settings()
        return query_heatmap_image(self.field, params, cam, p, n, t, background=self.ctx.background)

    def refresh_selection(self) -> None:
        p, n, t = self.settings()
        params = self.ctx.scene()
        sel = self.field.select_text(params, p, t, n).cpu().numpy()
        self.mask = sel
        self.ctx.set_selection(sel)
        n_neg = len(n) if n else len(self.field.default_negatives(p))
        self.handles["result"].content = (
            f"**{int(sel.sum()):,}** of {sel.size:,} Gaussians match '{p.strip()}' "
            f"(cosine >= {t:.2f}, closer than {n_neg} negatives)"
        )
