"""Where the CLI writes, decided in one place: nothing a user has is deleted or overwritten unless
it was written by splatlab (a run's own files) or the user said so (``--overwrite``)."""

from __future__ import annotations

import shutil
from pathlib import Path

from ..errors import DataError
from ..scene import checkpoint as ckpt

__all__ = ["RUN_ENTRIES", "is_run_dir", "prepare_run_dir", "prepare_report_dir", "output_file"]

# what `splatlab train` / `demo` write into a run directory
RUN_ENTRIES = (
    ckpt.CONFIG_JSON, ckpt.CKPT_DIR, ckpt.SCENE_PLY, "metrics.json", "renders", "tb", "viewer",
    "teacher_cache", "feature_decoder.pt", "feature_metrics.json", "envmap.pt", "envmap.npy",
    "envmap.png", "scene.splat",
)


def is_run_dir(path: Path) -> bool:
    """True for a folder written by ``splatlab train`` / ``demo`` (config.json with a "train"
    section, or step_*.pt checkpoints)."""
    path = Path(path)
    if ckpt.latest_checkpoint(path) is not None:
        return True
    try:
        return "train" in ckpt.load_json(path / ckpt.CONFIG_JSON)
    except Exception:
        return False


def prepare_run_dir(out: Path, overwrite: bool) -> None:
    """Make ``out`` ready for a new run. An empty or absent folder is used as is; a previous run
    there is cleared only with ``overwrite`` and only of the entries a run writes (RUN_ENTRIES);
    any other non-empty folder is refused (DataError naming what is in it)."""
    out = Path(out)
    if out.exists() and not out.is_dir():
        raise DataError(f"--out {out} is a file, not a folder; choose another --out")
    if not out.exists() or not any(out.iterdir()):
        return
    if not is_run_dir(out):
        some = ", ".join(sorted(p.name for p in out.iterdir())[:5])
        raise DataError(
            f"--out {out} is not empty and is not a splatlab run (it holds {some}); nothing was "
            "deleted: choose another --out or an empty folder"
        )
    if not overwrite:
        raise DataError(f"--out {out} holds a previous run; pass --overwrite to replace it or choose another --out")
    for name in RUN_ENTRIES:
        p = out / name
        if p.is_dir() and not p.is_symlink():
            shutil.rmtree(p)
        elif p.exists() or p.is_symlink():
            p.unlink()


def output_file(path: Path, overwrite: bool, owned: bool = False) -> Path:
    """``path`` if it may be written: absent, ``owned`` (a run's own export), or ``overwrite``."""
    path = Path(path)
    if path.is_dir():
        raise DataError(f"{path} is a folder; pass a file name with --out")
    if path.exists() and not (owned or overwrite):
        raise DataError(f"{path} exists and was not written by this command; pass --out NEW_FILE or --overwrite")
    return path


def prepare_report_dir(out: Path) -> None:
    """Check ``splatlab plugin run --out`` before the plugin runs: an absent or empty folder, or a
    previous plugin report (it holds report.json; its same-named files are replaced), is fine;
    a run directory or any other non-empty folder is refused (DataError), so a report never
    overwrites a user's scene.ply or images."""
    out = Path(out)
    if out.exists() and not out.is_dir():
        raise DataError(f"--out {out} is a file, not a folder; choose another --out")
    if not out.exists() or not any(out.iterdir()) or (out / "report.json").is_file():
        return
    some = ", ".join(sorted(p.name for p in out.iterdir())[:5])
    what = "a splatlab run" if is_run_dir(out) else "not a plugin report"
    raise DataError(
        f"--out {out} is not empty and is {what} (it holds {some}); nothing was written: "
        "choose a new or empty folder, e.g. --out {out}/report".replace("{out}", str(out))
    )
