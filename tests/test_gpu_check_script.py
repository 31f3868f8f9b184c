"""The prepared GPU check (benchmarks/gpu/run.sh) parses and plans every step inside 9 minutes.
It runs for real only on a lent device machine (see benchmarks/gpu/README.md)."""

from __future__ import annotations

import re
import subprocess
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def test_gpu_check_dry_run_lists_the_steps_within_nine_minutes(tmp_path: Path) -> None:
    script = ROOT / "benchmarks" / "gpu" / "run.sh"
    subprocess.run(["bash", "-n", str(script)], check=True)
    r = subprocess.run(["bash", str(script), "--dry-run"], capture_output=True, text=True,
                       env={"OUT": str(tmp_path), "PATH": "/usr/bin:/bin"}, check=True)
    steps = re.findall(r"^== (\w+) \(limit (\d+)s\)", r.stdout, re.M)
    assert [s for s, _ in steps] == ["build_gsplat", "pytest_cuda", "rasterizer", "demo", "fox", "fox_long"]
    assert sum(int(t) for _, t in steps) <= 540
    assert '"pytest_cuda": "dry"' in (tmp_path / "summary.json").read_text()
