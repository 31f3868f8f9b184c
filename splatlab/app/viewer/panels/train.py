"""The Train tab (live training viewer): stats, pause / resume, splat refresh period, loss plot."""

from __future__ import annotations

from typing import Any

import numpy as np


class TrainPanel:
    """Handles in ``self.handles`` ("stats", "pause", "plot", "refresh_s"), read by the
    :class:`~splatlab.app.viewer.training.TrainingViewer` that feeds them."""

    def __init__(self, ctx: Any, training: Any) -> None:
        import viser.uplot as uplot

        self.ctx = ctx
        self.training = training
        gui = ctx.gui
        stats_md = gui.add_markdown("waiting for the first step...")
        pause = gui.add_button("Pause training", icon=None)
        refresh_s = gui.add_slider(
            "Refresh splats every (s)", min=0.5, max=30.0, step=0.5, initial_value=2.0
        )
        plot = gui.add_uplot(
            data=(np.zeros(1), np.zeros(1)),
            series=(
                uplot.Series(label="step"),
                uplot.Series(label="loss", stroke="orange", width=2),
            ),
            title="training loss",
            aspect=1.6,
        )
        self.handles = {"stats": stats_md, "pause": pause, "plot": plot, "refresh_s": refresh_s}

        @pause.on_click
        @ctx.guard
        def _(_: Any) -> None:
            ctl = training.trainer.control
            if ctl.paused:
                ctl.resume()
                pause.label = "Pause training"
            else:
                ctl.pause()
                pause.label = "Resume training"
