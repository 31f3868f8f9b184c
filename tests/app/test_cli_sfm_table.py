"""The photos path prints SfM statistics as a table, not a raw dict."""

from __future__ import annotations

from rich.console import Console

from splatlab.app.cli import _print_sfm


def test_sfm_summary_is_a_table() -> None:
    console = Console(record=True, width=120)
    _print_sfm(console, {"total": 11, "registered": 10, "num_points3D": 4321,
                         "mean_reprojection_error": 0.4312, "unregistered": ["x.jpg"],
                         "seconds": {"extraction": 3.1, "matching": 9.0, "mapping": 20.5}})
    text = console.export_text()
    assert "10 / 11" in text and "4,321" in text and "0.43" in text and "20.5" in text
    assert "not registered: x.jpg" in text and "{" not in text
