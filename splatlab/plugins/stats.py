"""The built-in "view statistics" plugin: histograms of opacities and sizes of the Gaussians."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Literal

import numpy as np
import torch

from ..errors import DataError
from .base import Plugin, PluginInputs, Progress, Report, no_progress

__all__ = ["StatsOptions", "StatsPlugin", "gaussian_statistics"]


@dataclass
class StatsOptions:
    bins: int = 40
    """Histogram bins."""
    subset: Literal["all", "selection"] = "all"
    """All Gaussians, or only the viewer's current selection."""


def gaussian_statistics(params: Any, bins: int = 40, mask: np.ndarray | None = None) -> Report:
    """Opacity (post-sigmoid) and size (log10 of the largest linear scale) histograms with
    summary numbers. ``mask`` [N] restricts to a subset."""
    if bins < 1:
        raise ValueError(f"bins must be >= 1, got {bins}")
    with torch.no_grad():
        opac = torch.sigmoid(params["opacities"].detach().cpu().double()).numpy()
        size = params["scales"].detach().cpu().double().numpy().max(axis=1) / np.log(10.0)
    if mask is not None:
        mask = np.asarray(mask, dtype=bool)
        if mask.shape != opac.shape:
            raise DataError(
                f"selection has {mask.shape[0]} entries but the scene {opac.shape[0]} Gaussians"
            )
        opac, size = opac[mask], size[mask]
    n = int(opac.size)
    report = Report(title=f"Gaussian statistics ({n:,} Gaussians)")
    report.metrics["n_gaussians"] = float(n)
    if n == 0:
        report.notes.append("no Gaussians to describe")
        return report
    oc, oe = np.histogram(opac, bins=bins, range=(0.0, 1.0))
    sc, se = np.histogram(size, bins=bins)
    report.tables["opacity_histogram"] = {"edges": oe.tolist(), "counts": oc.tolist()}
    report.tables["log10_scale_histogram"] = {"edges": se.tolist(), "counts": sc.tolist()}
    report.metrics.update(
        {
            "opacity_mean": float(opac.mean()),
            "opacity_median": float(np.median(opac)),
            "fraction_opacity_below_0.005": float((opac < 0.005).mean()),
            "scale_median": float(10 ** np.median(size)),
            "scale_p99": float(10 ** np.percentile(size, 99)),
        }
    )
    try:
        import plotly.graph_objects as go
    except ImportError:
        report.notes.append("install plotly to see the histograms as plots")
        return report
    for key, title, xlabel in (
        ("opacity_histogram", "opacity", "opacity"),
        ("log10_scale_histogram", "size", "log10 largest scale"),
    ):
        t = report.tables[key]
        e = np.asarray(t["edges"])
        fig = go.Figure(go.Bar(x=(e[:-1] + e[1:]) / 2, y=t["counts"], width=np.diff(e)))
        fig.update_layout(
            title=title,
            xaxis_title=xlabel,
            yaxis_title="count",
            margin=dict(l=30, r=10, t=30, b=30),
            height=220,
        )
        report.plots[key] = fig
    return report


class StatsPlugin(Plugin):
    """Histograms of opacities and scales of the scene (or of the selection)."""

    name = "view statistics"
    kind = "inspect"
    description = "Histograms of the Gaussians' opacities and sizes."
    Options = StatsOptions
    accepts = ("scene",)

    def run(
        self, inputs: PluginInputs, options: StatsOptions, progress: Progress = no_progress
    ) -> Report:
        if inputs.params is None:
            raise DataError("view statistics needs a scene (inputs.params is None)")
        progress(0.0, "computing histograms")
        mask = inputs.selection if options.subset == "selection" else None
        report = gaussian_statistics(inputs.params, options.bins, mask)
        progress(1.0, "done")
        return report
