"""The ``splatlab`` command: one CLI, tyro subcommands built from dataclasses.

    splatlab demo                      train on the embedded demo scene (CPU-friendly)
    splatlab train DATA [--method ...] train a scene from photos / a nerfstudio or COLMAP dataset
    splatlab eval RUN                  PSNR / SSIM / LPIPS on the test views
    splatlab render RUN --camera-path camera_path.json
    splatlab export RUN --format ply|splat|spz|compressed_ply|sog|slsc
    splatlab view RUN_OR_PLY           the browser viewer
    splatlab query RUN "prompt"        text query on a feature field: selected Gaussians as PLY, heatmaps
    splatlab methods                   the registered strategies, appearances and fields
    splatlab plugin list | run NAME INPUT [--options] --out DIR    run a plugin headless

Only this module prints; library code raises typed errors that are shown here as one message.
"""

from __future__ import annotations

import dataclasses
import signal
import sys
from dataclasses import dataclass, field
from pathlib import Path
from typing import Annotated, Any, Literal

import tyro

from .. import __version__
from ..errors import DataError, SplatlabError
from ..training import registry
from ..training.trainer import TrainConfig
from .viewer.server import ViewerConfig

INTERRUPTED = 130  # the shell's exit status of a command stopped by Ctrl-C (128 + SIGINT)


def print_error(e: BaseException) -> None:
    """One line: ``error: <message>`` (no wrapping, no markup taken from the message)."""
    from rich.text import Text

    msg = " ".join(str(e).split()) or type(e).__name__
    _console().print(Text.assemble(("error:", "red"), " ", msg), soft_wrap=True)


def _console():  # noqa: ANN202 - rich is imported lazily to keep --help fast
    from rich.console import Console

    return Console()


# ----------------------------------------------------------------------------- train / demo


def _progress_trainer(trainer: Any, total: int, console: Any) -> Any:
    """Run ``trainer.train()`` under a rich progress bar; Ctrl-C stops cleanly after the current
    step (checkpoint + export); a second Ctrl-C interrupts at once (a checkpoint is still written)."""
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

    progress = Progress(
        TextColumn("[bold]train"), BarColumn(), MofNCompleteColumn(), TimeElapsedColumn(),
        TextColumn("{task.fields[stats]}"), console=console, disable=not console.is_terminal,
    )
    task = progress.add_task("train", total=total, completed=trainer.step, stats="")
    previous = trainer.on_step

    import time

    log_every = 30.0  # seconds between plain progress lines when the output is not a terminal
    last_line = [time.monotonic()]

    def on_step(s: Any) -> None:
        previous(s)
        stats = (
            f"loss {s.loss:.4f}  psnr {s.psnr:5.2f}  gaussians {s.n_gaussians:,}  {s.its_per_s:5.1f} it/s  sh {s.sh_degree}"
        )
        progress.update(task, completed=s.step, stats=stats)
        now = time.monotonic()
        if not console.is_terminal and (now - last_line[0] >= log_every or s.step == total):
            last_line[0] = now
            console.print(f"step {s.step}/{total}  {stats}", soft_wrap=True)

    trainer.on_step = on_step
    trainer.on_event = lambda msg: console.print(f"[yellow]{msg}")
    first = [True]

    def handler(signum: int, frame: Any) -> None:
        if first[0]:
            first[0] = False
            console.print("[yellow]stopping after this step (Ctrl-C again to interrupt now)...")
            trainer.control.stop()
        else:
            raise KeyboardInterrupt

    old = signal.signal(signal.SIGINT, handler)
    try:
        with progress:
            return trainer.train()
    finally:
        signal.signal(signal.SIGINT, old)


def _make_trainer(
    dataset: Any, train: TrainConfig, configs: dict[str, Any] | None = None, console: Any = None
) -> Any:
    from ..training.trainer import Trainer

    on_event = None if console is None else (lambda msg: console.print(f"[yellow]{msg}"))
    return Trainer(dataset, train, on_event=on_event, configs=configs)


def _report_extensions(console: Any, trainer: Any) -> None:
    """Each extension's own metrics (e.g. Feature 3DGS's cosine / mIoU), one line each."""
    for name, m in trainer.evaluate_extensions().items():
        for line in trainer.extension(name).summary(m):
            console.print(line)


def _report(console: Any, result: Any, metrics: dict[str, Any] | None) -> None:
    run = result.run_dir
    console.print(f"[green]trained {result.steps} steps in {result.wall_time_s:.1f} s, {result.n_gaussians:,} Gaussians")
    if metrics:
        lp = f", LPIPS {metrics['lpips']:.4f}" if metrics.get("lpips") is not None else ""
        console.print(
            f"[green]{metrics['split']} views ({metrics['n_views']}): PSNR {metrics['psnr']:.2f} dB, "
            f"SSIM {metrics['ssim']:.4f}{lp}"
        )
        if metrics.get("lpips_note"):
            console.print(f"[yellow]LPIPS not computed: {metrics['lpips_note']}")
    console.print(f"run directory: {run}")
    for label, path in (("scene (INRIA PLY)", run / "scene.ply"), ("metrics", run / "metrics.json"),
                        ("test renders", run / "renders")):
        if path.exists():  # an interrupted or --no-evaluate run has not written them all
            console.print(f"  {label + ':':19s}{path}")
    console.print(f"  view it:           splatlab view {run}")
    if result.interrupted:
        console.print(f"[yellow]interrupted at step {result.steps}: continue with `splatlab train ... --resume --out {run}`")


@dataclass
class Demo:
    """Train on the embedded procedural demo scene (48 views, 160x120) and evaluate it."""

    out: Path = Path("runs/demo")
    """Run directory: absent or empty, or a previous run (replaced with --overwrite, the default);
    a folder that is not a splatlab run is refused, never deleted."""
    steps: int = 1500
    """Training steps (about 2 minutes on 2 CPU cores)."""
    method: str = "3dgs"
    """Training method: a registered strategy (3dgs, mcmc) or appearance (gaussianshader)."""
    overwrite: bool = True
    """Replace a previous run in ``out`` (only the files a run writes are removed)."""
    view: bool = False
    """Open the browser viewer on the result when training is done."""
    port: int = 8080
    """Viewer port (with --view)."""

    def run(self) -> int:
        from ..scene.synthetic import make_demo_scene
        from .outputs import prepare_run_dir

        console = _console()
        prepare_run_dir(self.out, self.overwrite)
        console.print("making the demo scene (procedural, ray traced)...")
        dataset = make_demo_scene()
        cfg = demo_train_config(self.out, self.steps)
        cfg.method = self.method
        registry.resolve(cfg)
        trainer = _make_trainer(dataset, cfg)
        result = _progress_trainer(trainer, cfg.steps, console)
        if result.interrupted:
            _report(console, result, None)
            return INTERRUPTED
        metrics = trainer.evaluate()
        _report(console, result, metrics)
        if self.view:
            from .viewer import ViewerConfig, run_viewer

            run_viewer(ViewerConfig(scene=self.out, port=self.port))


def demo_train_config(out: Path, steps: int) -> Any:
    """The demo's schedule: the 3DGS defaults compressed to ``steps`` steps."""
    return TrainConfig(
        out=out, steps=steps, refine_start_iter=min(300, steps // 5), refine_stop_iter=int(steps * 0.8),
        refine_every=100, reset_every=max(steps // 2, 200), sh_degree_interval=max(steps // 6, 1),
        checkpoint_every=max(steps // 3, 1),
    )


@dataclass
class _TrainCommand:
    """Train a Gaussian scene from a dataset: nerfstudio transforms.json (incl. instant-ngp),
    Blender-synthetic, a COLMAP model, or a folder of photos (structure-from-motion with pycolmap)."""

    def extension_configs(self) -> dict[str, Any]:
        """section -> options of every registered extension (from the --<section>.* flags)."""
        return {
            cls.section: getattr(self, f"{cls.section}_options")
            for cls in registry.extension_classes()
            if cls.section and cls.Config is not None
        }

    def resolved_config(self) -> tuple[TrainConfig, dict[str, Any]]:
        """The TrainConfig (with the fields the --<switch> flags enable) and extension configs;
        refuses an unknown or incompatible combination before any data is loaded."""
        cfg, configs = self.train, self.extension_configs()
        fields = list(cfg.fields)
        for cls in registry.extension_classes():
            if cls.cli_switch is None:
                continue
            flag, _, attr = cls.cli_switch
            choice = getattr(self, flag)
            if choice != "none":
                setattr(configs[cls.section], attr, choice)
                fields.append(cls.name)
        cfg = dataclasses.replace(cfg, fields=tuple(dict.fromkeys(fields)))
        for c in configs.values():
            if callable(getattr(c, "validate", None)):
                c.validate()
        registry.resolve(cfg)
        return cfg, configs

    def run(self) -> int:
        console = _console()
        cfg, configs = self.resolved_config()
        dataset = _load_data(self.data, cfg, console)
        trainer = _make_trainer(dataset, cfg, configs, console)
        console.print(f"training with {trainer.components.describe()}")
        if self.view:
            from .viewer import attach_training_viewer
            from .viewer.server import bind_warning

            attach_training_viewer(trainer, host=self.host, port=self.port)
            console.print(f"viewer: http://{self.host}:{self.port}")
            if bind_warning(self.host):
                console.print(f"[yellow]{bind_warning(self.host)}", soft_wrap=True)
        result = _progress_trainer(trainer, cfg.steps, console)
        metrics = trainer.evaluate() if self.evaluate and not result.interrupted else None
        _report(console, result, metrics)
        if metrics is not None:
            _report_extensions(console, trainer)
        return INTERRUPTED if result.interrupted else 0


def _train_command() -> type:
    """The ``train`` command, built from the registry: one option group per registered
    extension's Config (``--shader.*``, ``--features.*``) and each extension's switch
    (``--features lseg``), so the CLI names no method."""
    A, arg = Annotated, tyro.conf.arg
    fields: list[tuple[str, Any, Any]] = [
        ("data", A[Path, tyro.conf.Positional, arg(help="Dataset folder (or the demo with the literal path 'demo').")], field()),
        ("train", A[TrainConfig, arg(name="", help="Training options.")], field(default_factory=TrainConfig)),
    ]
    for cls in registry.extension_classes():
        if cls.cli_switch is not None:
            flag, choices, attr = cls.cli_switch
            help_ = f"{cls.description}: enable the {cls.name!r} {cls.kind} with this {attr}."
            fields.append((flag, A[Literal[("none", *choices)], arg(help=help_)], field(default="none")))
        if cls.section and cls.Config is not None:
            fields.append((
                f"{cls.section}_options",
                A[cls.Config, arg(name=cls.section, help=f"Options of the {cls.name!r} {cls.kind} ({cls.description}).")],
                field(default_factory=cls.Config),
            ))
    fields += [
        ("evaluate", A[bool, arg(help="Evaluate on the test views when training ends.")], field(default=True)),
        ("view", A[bool, arg(help="Show training live in the browser viewer.")], field(default=False)),
        ("port", A[int, arg(help="Viewer port (with --view).")], field(default=8080)),
        ("host", A[str, arg(help="Viewer host (with --view); 127.0.0.1 keeps it local.")], field(default="127.0.0.1")),
    ]
    cls = dataclasses.make_dataclass("Train", fields, bases=(_TrainCommand,))
    cls.__doc__ = _TrainCommand.__doc__
    cls.__module__ = __name__
    return cls


@dataclass
class Methods:
    """List the registered training strategies, appearances and fields (entry points
    ``splatlab.methods``), which --method / --strategy / --appearance / --fields accept."""

    def run(self) -> None:
        console = _console()
        for kind in registry.KINDS:
            for name in registry.names(kind):
                cls = registry.get(kind, name)
                console.print(f"{kind:10s} {name:16s} {getattr(cls, 'description', '')}")


def _print_sfm(console: Any, sfm: dict) -> None:
    """The structure-from-motion statistics as a short table."""
    from rich.table import Table

    t = Table(title="structure-from-motion (pycolmap)", show_header=True)
    for col in ("registered", "points", "reproj. error (px)", "extraction s", "matching s", "mapping s"):
        t.add_column(col, justify="right")
    sec = sfm.get("seconds") or {}
    err = sfm.get("mean_reprojection_error")
    t.add_row(
        f"{sfm.get('registered', '?')} / {sfm.get('total', '?')}", f"{sfm.get('num_points3D', 0):,}",
        "-" if err is None else f"{err:.2f}",
        *(str(sec.get(k, "-")) for k in ("extraction", "matching", "mapping")),
    )
    console.print(t)
    if sfm.get("unregistered"):
        console.print(f"[yellow]not registered: {', '.join(sfm['unregistered'][:8])}"
                      + (" ..." if len(sfm["unregistered"]) > 8 else ""))


def _load_data(path: Path, cfg: Any, console: Any) -> Any:
    if str(path) == "demo":
        from ..scene.synthetic import make_demo_scene

        return make_demo_scene()
    from ..scene.datasets import load_dataset

    console.print(f"loading {path} ...")
    ds = load_dataset(path, downscale=cfg.downscale, test_every=cfg.test_every)
    sfm = ds.meta.get("sfm")
    if sfm:
        _print_sfm(console, sfm)
    console.print(f"{len(ds.train_ids)} training / {len(ds.test_ids)} test views, "
                  f"{0 if ds.points is None else len(ds.points):,} initial points")
    return ds


@dataclass
class Eval:
    """Evaluate a trained run on its test views (PSNR, SSIM, LPIPS when its weights are present)."""

    run_dir: tyro.conf.Positional[Path]
    """Run directory written by ``splatlab train``."""
    renders: bool = True
    """Write test renders (render | ground truth) to RUN/renders/test."""

    def run(self) -> None:
        from ..training.trainer import load_trainer

        console = _console()
        trainer = load_trainer(self.run_dir)
        m = trainer.evaluate(write_renders=self.renders)
        _report_extensions(console, trainer)
        lp = f"  LPIPS {m['lpips']:.4f}" if m.get("lpips") is not None else ""
        console.print(f"{m['split']} ({m['n_views']} views, step {m['step']}): PSNR {m['psnr']:.2f} dB  "
                      f"SSIM {m['ssim']:.4f}{lp}")
        if m.get("lpips_note"):
            console.print(f"[yellow]LPIPS not computed: {m['lpips_note']}")
        console.print(f"metrics: {self.run_dir / 'metrics.json'}")


@dataclass
class Render:
    """Render a nerfstudio camera_path.json through a trained scene to an mp4 (or PNG frames)."""

    scene: tyro.conf.Positional[Path]
    """Run directory, .ply or .splat."""
    camera_path: Path = Path("camera_path.json")
    """nerfstudio camera_path.json (OpenGL camera_to_world, vertical fov)."""
    out: Path = Path("render.mp4")
    """Output .mp4, or a folder for PNG frames."""
    render_mode: Literal["RGB", "D", "ED"] = "RGB"
    """What to render (depth modes are colormapped)."""

    def run(self) -> None:
        from ..app.render_video import render_camera_path

        console = _console()
        from rich.progress import Progress

        with Progress(console=console) as progress:
            task = progress.add_task("render", total=None)

            def cb(i: int, n: int) -> None:
                progress.update(task, total=n, completed=i)

            out = render_camera_path(self.scene, self.camera_path, self.out, render_mode=self.render_mode, progress=cb)
        console.print(f"[green]wrote {out}")


@dataclass
class Export:
    """Export a trained scene as an INRIA PLY (SuperSplat, gsplat, nerfstudio read it), .splat,
    SPZ (Niantic), PlayCanvas compressed PLY, SOG, or splatlab's own codec .slsc (smallest; the
    "scene codec" plugin measures its PSNR: `splatlab plugin run scene-codec RUN --out DIR`)."""

    scene: tyro.conf.Positional[Path]
    """Run directory (latest checkpoint) or scene file (.ply, .splat, .spz, .compressed.ply, .sog, .slsc)."""
    format: Literal["ply", "splat", "spz", "compressed_ply", "sog", "slsc"] = "ply"
    """Output format."""
    out: Path | None = None
    """Output file (default: RUN/scene.<suffix> for a run, else <input stem>.<suffix> beside it)."""
    overwrite: bool = False
    """Replace an existing output file that this command did not write."""
    spz_version: Literal[3, 4] = 4
    """SPZ container: 3 (gzip) or 4 (zstd)."""
    slsc_quality: Literal[1, 2, 3, 4, 5] = 3
    """.slsc rate point: 1 (smallest) .. 5 (best); pruning uses the run's cameras when it has them."""

    def run(self) -> None:
        import numpy as np

        from ..scene.checkpoint import load_scene
        from ..scene.formats import FORMATS, save_scene_file
        from .outputs import is_run_dir, output_file

        loaded = load_scene(self.scene)
        suffix = FORMATS[self.format][0]
        if self.out is not None:
            out = output_file(self.out, self.overwrite)
        elif self.scene.is_dir() and is_run_dir(self.scene):  # the run's own export
            out = output_file(self.scene / f"scene{suffix}", self.overwrite, owned=True)
        else:
            stem = self.scene.name.split(".")[0] if self.scene.is_file() else self.scene.name
            out = output_file(self.scene.parent / f"{stem}{suffix}", self.overwrite)
            if out.exists() and out.resolve() == self.scene.resolve():
                raise DataError(f"{self.scene} is already a {suffix} file; pass --out NEW_FILE")
        transform = None if np.allclose(loaded.transform, np.eye(4)) else loaded.transform
        opts: dict = {"version": self.spz_version} if self.format == "spz" else {}
        if self.format == "slsc":
            opts = {"quality": self.slsc_quality}
            cams = loaded.cameras
            if cams is not None and len(cams.widths):
                step = max(1, len(cams.widths) // 16)  # 16 views for the pruning significance
                opts["cameras"] = [(cams.viewmats[i], cams.Ks[i], int(cams.widths[i]), int(cams.heights[i]))
                                   for i in range(0, len(cams.widths), step)][:16]
        save_scene_file(out, loaded.params, format=self.format, transform=transform, **opts)
        _console().print(f"[green]wrote {out} ({len(loaded.params['means']):,} Gaussians, original coordinates)")


@dataclass
class Query:
    """Text query on a scene trained with --features: select the matching Gaussians, write them
    as a PLY and relevance heatmaps of training views (what the viewer's Query tab does)."""

    scene: tyro.conf.Positional[Path]
    """Run directory (or checkpoint / PLY with feature_decoder.pt beside it) trained with --features."""
    prompt: tyro.conf.Positional[str]
    """What to find, e.g. 'chrome ball'."""
    negatives: tuple[str, ...] = ()
    """Negative prompts (default: the other labels for the label teacher, else LERF's canonical phrases)."""
    threshold: float = 0.5
    """Minimum cosine between a Gaussian's decoded feature and the prompt."""
    min_opacity: float = 0.1
    """Ignore Gaussians less opaque than this."""
    out: Path | None = None
    """PLY of the selected Gaussians (default: RUN/query/<prompt>.ply)."""
    heatmap_views: tuple[int, ...] = (0,)
    """Training-camera indices whose heatmaps are written next to the PLY (empty: none)."""
    max_resolution: int = 640
    """Longest side of the heatmap images."""

    def run(self) -> None:
        import re

        import imageio.v3 as iio
        import numpy as np
        import torch

        from ..errors import DataError
        from ..scene.checkpoint import load_scene
        from ..scene.query import export_selection_ply
        from ..training.stored import open_stored
        from .viewer.render import ViewCamera

        console = _console()
        loaded = load_scene(self.scene)
        field_ = open_stored(loaded).feature_field
        if field_ is None:
            raise DataError(f"{self.scene} has no per-Gaussian features; train it with --features")
        neg = list(self.negatives) or None
        sel = field_.select_text(loaded.params, self.prompt, self.threshold, neg, self.min_opacity)
        n = int(sel.sum())
        root = self.scene if self.scene.is_dir() else self.scene.parent
        stem = re.sub(r"[^A-Za-z0-9_-]+", "_", self.prompt.strip()) or "query"
        out = self.out or root / "query" / f"{stem}.ply"
        console.print(f"{n:,} of {len(sel):,} Gaussians match {self.prompt!r} (cosine >= {self.threshold})")
        if n:
            transform = None if np.allclose(loaded.transform, np.eye(4)) else loaded.transform
            export_selection_ply(out, loaded.params, sel, transform=transform)
            console.print(f"[green]wrote {out}")
        cams = loaded.cameras
        if self.heatmap_views and cams is None:
            console.print("[yellow]no cameras stored with this scene: no heatmaps written")
            return
        from .viewer.panels.query import query_heatmap_image

        for i in self.heatmap_views:
            if not 0 <= i < len(cams.viewmats):
                raise DataError(f"--heatmap-views {i}: the scene has {len(cams.viewmats)} cameras (0..{len(cams.viewmats) - 1})")
            cam = ViewCamera(cams.viewmats[i], cams.Ks[i], int(cams.widths[i]), int(cams.heights[i]))
            with torch.no_grad():
                img = query_heatmap_image(field_, loaded.params, cam.scaled(self.max_resolution), self.prompt, neg, self.threshold)
            path = out.with_name(f"{out.stem}_heatmap_{i:03d}.png")
            path.parent.mkdir(parents=True, exist_ok=True)
            iio.imwrite(path, img)
            console.print(f"[green]wrote {path}")


@dataclass
class View:
    """Open a run directory, checkpoint, .ply or .splat in the browser viewer (viser)."""

    config: Annotated[ViewerConfig, tyro.conf.arg(name="")]

    def run(self) -> None:
        from .viewer import run_viewer

        run_viewer(self.config)


Train = _train_command()

COMMANDS: dict[str, type] = {
    "demo": Demo, "train": Train, "eval": Eval, "render": Render, "export": Export, "view": View,
    "query": Query, "methods": Methods,
}


def main(argv: list[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    if argv[:1] in (["--version"], ["-V"]):
        print(f"splatlab {__version__}")
        return 0
    if argv[:1] == ["plugin"]:  # per-plugin options: built for the named plugin, see plugin_cli
        from .plugin_cli import plugin_main

        return plugin_main(argv[1:])
    cmd = tyro.extras.subcommand_cli_from_dict(
        COMMANDS,
        args=argv,
        description=f"splatlab {__version__}: train, view, query and analyse 3D Gaussian Splatting scenes. "
        "Plugins: `splatlab plugin list`, `splatlab plugin run NAME INPUT --out DIR`.",
    )
    try:
        rc = cmd.run()
    except KeyboardInterrupt:
        _console().print("[yellow]interrupted")
        return INTERRUPTED
    except (SplatlabError, ValueError) as e:  # ValueError: bad arguments found by library code
        print_error(e)
        return 2
    return int(rc or 0)


def entrypoint() -> None:
    """Console-script entry point."""
    sys.exit(main())


if __name__ == "__main__":
    entrypoint()
