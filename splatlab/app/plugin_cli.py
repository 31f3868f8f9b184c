"""``splatlab plugin ...``: plugins from the command line.

    splatlab plugin list [--json]                 registered plugins, and those that failed to load
    splatlab plugin run NAME INPUT [--OPTION ...] --out DIR
                                                  run one plugin headless; report.json, images, files

INPUT is what the plugin ``accepts``: a run directory, a scene file, an image, a wav (see
:meth:`splatlab.plugins.base.PluginInputs.from_path`). The options are generated with tyro from the
plugin's ``Options`` dataclass (``splatlab plugin run NAME --help`` lists them). Ctrl-C cancels the
run at its next progress call; nothing is written then. Errors print one line and exit 2.
"""

from __future__ import annotations

import dataclasses
import json
import signal
import sys
import time
from pathlib import Path
from typing import Annotated, Any

__all__ = ["plugin_main", "find_plugin", "plugin_inputs", "run_plugin"]

USAGE = """usage: splatlab plugin {list,run} ...

  splatlab plugin list [--json]
      the registered plugins (name, kind, accepts, description) and the ones that failed to load
  splatlab plugin run NAME [INPUT] [--OPTION VALUE ...] --out DIR [--device cpu]
      run plugin NAME on INPUT (a run directory, a scene file, an image or a wav) and write
      DIR/report.json, the images (PNG), the files, scene.ply and selection.npy;
      `splatlab plugin run NAME --help` lists the plugin's options
"""

EXIT_BAD_INPUT = 2
EXIT_CANCELLED = 130


def _console(stderr: bool = False) -> Any:
    from rich.console import Console

    return Console(stderr=stderr, highlight=False)


def _norm(name: str) -> str:
    return " ".join(name.lower().replace("-", " ").replace("_", " ").split())


def find_plugin(name: str, plugins: dict[str, type]) -> type:
    """The plugin class called ``name`` (exact, else ignoring case and '-', '_' vs spaces).
    KeyError naming the registered plugins when there is none."""
    if name in plugins:
        return plugins[name]
    hits = [cls for n, cls in plugins.items() if _norm(n) == _norm(name)]
    if len(hits) == 1:
        return hits[0]
    # the name it is registered under (entry point / built-in key, e.g. ``anomaly-rd4ad``)
    from importlib import metadata

    from ..plugins.base import BUILTIN_PLUGINS, ENTRY_POINT_GROUP

    registered = dict(BUILTIN_PLUGINS)
    registered.update({ep.name: ep.value for ep in metadata.entry_points(group=ENTRY_POINT_GROUP)})
    targets = {t for n, t in registered.items() if _norm(n) == _norm(name)}
    hits = [cls for cls in plugins.values() if f"{cls.__module__}:{cls.__qualname__}" in targets]
    if len(hits) == 1:
        return hits[0]
    raise KeyError(
        f"no plugin named {name!r}; registered: {', '.join(sorted(plugins)) or '(none)'} "
        "(see `splatlab plugin list`)"
    )


def plugin_inputs(plugin_cls: type, input_path: Path | None, device: str = "cpu") -> Any:
    """PluginInputs from ``input_path`` checked against ``plugin_cls.accepts``. DataError for
    a missing input the plugin needs, or one it does not accept."""
    from ..errors import DataError
    from ..plugins.base import PluginInputs

    accepts = tuple(plugin_cls.accepts)
    if input_path is None:
        if "none" not in accepts:
            raise DataError(
                f"plugin {plugin_cls.name!r} needs an INPUT ({' or '.join(accepts)}): "
                f"splatlab plugin run {json.dumps(plugin_cls.name)} INPUT --out DIR"
            )
        return PluginInputs()
    inputs = PluginInputs.from_path(input_path, device=device)
    got = inputs.kinds() - {"none"}
    if not got & set(accepts):
        raise DataError(
            f"plugin {plugin_cls.name!r} accepts {', '.join(accepts)}; {input_path} is "
            f"{' / '.join(sorted(got)) or 'none of these'}"
        )
    return inputs


def run_plugin(
    plugin_cls: type,
    input_path: Path | None,
    options: Any,
    out: Path,
    *,
    device: str = "cpu",
    progress: Any = None,
) -> Any:
    """Build the inputs (:func:`plugin_inputs`), run the plugin and save its report in ``out``
    (:meth:`splatlab.plugins.base.Report.save`). Returns the Report."""
    from ..plugins.base import no_progress

    inputs = plugin_inputs(plugin_cls, input_path, device)
    report = plugin_cls().run(inputs, options, progress or no_progress)
    report.save(out)
    return report


# ----------------------------------------------------------------------------- list


def _list(argv: list[str]) -> int:
    from ..plugins.base import discover_plugins

    as_json = "--json" in argv
    unknown = [a for a in argv if a != "--json"]
    if unknown:
        _console(stderr=True).print(f"[red]error:[/red] unknown arguments {unknown}\n{USAGE}")
        return EXIT_BAD_INPUT
    plugins, errors = discover_plugins()
    rows = [
        {
            "name": cls.name,
            "kind": cls.kind,
            "accepts": list(cls.accepts),
            "description": cls.description,
            "target": f"{cls.__module__}:{cls.__qualname__}",
        }
        for cls in sorted(plugins.values(), key=lambda c: (c.kind, c.name))
    ]
    errs = [{"name": e.name, "target": e.target, "error": e.error} for e in errors]
    if as_json:
        sys.stdout.write(json.dumps({"plugins": rows, "errors": errs}, indent=2) + "\n")
        return 0
    from rich.table import Table

    table = Table(title="splatlab plugins")
    for col in ("name", "kind", "accepts", "description"):
        table.add_column(col)
    for r in rows:
        table.add_row(r["name"], r["kind"], ", ".join(r["accepts"]), r["description"])
    con = _console()
    con.print(table)
    for e in errs:
        con.print(f"[red]failed to load[/red] {e['name']} ({e['target']}): {e['error']}")
    return 0


# ----------------------------------------------------------------------------- run


def _run_args_class(plugin_cls: type) -> type:
    """A tyro-able dataclass: INPUT (positional), --out, --device and the plugin's options."""
    import tyro

    input_required = "none" not in plugin_cls.accepts
    opt_type = plugin_cls.Options
    fields: list[tuple[Any, ...]] = []
    in_help = (
        f"what the plugin reads ({', '.join(plugin_cls.accepts)}): a run directory, a scene "
        "file, an image or a wav"
    )
    if input_required:
        in_type: Any = Annotated[
            Path, tyro.conf.Positional, tyro.conf.arg(metavar="INPUT", help=in_help)
        ]
        fields.append(("input", in_type))
    else:
        in_type = Annotated[
            Path | None,
            tyro.conf.Positional,
            tyro.conf.arg(metavar="INPUT", help=in_help + " (optional)"),
        ]
        fields.append(("input", in_type, dataclasses.field(default=None)))
    out_help = "folder for report.json, the images, the files, scene.ply and selection.npy"
    fields += [
        (
            "out",
            Annotated[Path, tyro.conf.arg(metavar="DIR", help=out_help)],
            dataclasses.field(default=Path("plugin-out")),
        ),
        (
            "device",
            Annotated[str, tyro.conf.arg(help="torch device the scene is loaded on")],
            dataclasses.field(default="cpu"),
        ),
    ]
    if dataclasses.fields(opt_type):
        fields.append(
            (
                "options",
                Annotated[opt_type, tyro.conf.arg(name="")],
                dataclasses.field(default_factory=opt_type),
            )
        )
    cls = dataclasses.make_dataclass("PluginRun", fields)
    cls.__doc__ = (
        f"{plugin_cls.description or plugin_cls.name} (accepts: {', '.join(plugin_cls.accepts)}). "
        "--out DIR receives report.json, the images (PNG), the files, scene.ply, selection.npy."
    )
    return cls


class _CliProgress:
    """A rich progress bar as a plugin Progress; Ctrl-C makes the next call raise Cancelled."""

    def __init__(self, bar: Any, task: Any) -> None:
        self.bar, self.task = bar, task
        self.cancel_requested = False

    def __call__(self, fraction: float, message: str = "") -> None:
        from ..plugins.base import Cancelled

        if self.cancel_requested:
            raise Cancelled("cancelled (Ctrl-C)")
        f = min(max(float(fraction), 0.0), 1.0)
        self.bar.update(self.task, completed=f * 1000, message=message)


def _run(argv: list[str]) -> int:
    import tyro

    from ..errors import SplatlabError
    from ..plugins.base import Cancelled, discover_plugins

    err = _console(stderr=True)
    if not argv or argv[0].startswith("-"):
        plugins, _ = discover_plugins()
        if argv[:1] in (["-h"], ["--help"]):
            sys.stdout.write(USAGE + "\nplugins: " + ", ".join(sorted(plugins)) + "\n")
            return 0
        err.print(f"[red]error:[/red] name a plugin: one of {', '.join(sorted(plugins))}")
        return EXIT_BAD_INPUT
    name, rest = argv[0], argv[1:]
    plugins, load_errors = discover_plugins()
    try:
        plugin_cls = find_plugin(name, plugins)
    except KeyError as e:
        broken = [x for x in load_errors if _norm(x.name) == _norm(name)]
        msg = e.args[0] if not broken else f"plugin {name!r} failed to load: {broken[0].error}"
        err.print(f"[red]error:[/red] {msg}", soft_wrap=True)
        return EXIT_BAD_INPUT
    args_cls = _run_args_class(plugin_cls)
    args = tyro.cli(args_cls, args=rest, prog=f"splatlab plugin run {json.dumps(plugin_cls.name)}")
    options = getattr(args, "options", None) or plugin_cls.Options()

    from rich.progress import BarColumn, Progress, TextColumn, TimeElapsedColumn

    con = _console()
    bar = Progress(
        TextColumn(f"[bold]{plugin_cls.name}"),
        BarColumn(),
        TextColumn("{task.percentage:>3.0f}%"),
        TimeElapsedColumn(),
        TextColumn("{task.fields[message]}"),
        console=con,
        transient=True,
    )
    task = bar.add_task("run", total=1000, message="")
    progress = _CliProgress(bar, task)
    try:
        from .outputs import prepare_report_dir

        prepare_report_dir(Path(args.out))
        with con.status(f"loading {args.input}" if args.input else "starting"):
            inputs = plugin_inputs(plugin_cls, args.input, device=args.device)
    except (SplatlabError, ValueError, FileNotFoundError) as e:
        err.print(f"[red]error:[/red] {e}", soft_wrap=True)
        return EXIT_BAD_INPUT

    def on_sigint(signum: int, frame: Any) -> None:
        if progress.cancel_requested:
            raise KeyboardInterrupt
        progress.cancel_requested = True

    old = signal.signal(signal.SIGINT, on_sigint)
    t0 = time.perf_counter()
    try:
        with bar:
            report = plugin_cls().run(inputs, options, progress)
            bar.update(task, completed=1000)
        report.save(Path(args.out))
    except Cancelled as e:
        err.print(
            f"[yellow]cancelled:[/yellow] {e}; nothing was written to {args.out}", soft_wrap=True
        )
        return EXIT_CANCELLED
    except (SplatlabError, ValueError, FileNotFoundError) as e:
        msg = str(e)
        if args.input and Path(args.input).name not in msg:  # say which input it is about
            msg = f"{args.input}: {msg}"
        err.print(f"[red]error:[/red] {msg}", soft_wrap=True)
        return EXIT_BAD_INPUT
    finally:
        signal.signal(signal.SIGINT, old)
    dt = time.perf_counter() - t0
    from rich.table import Table

    if report.metrics:
        table = Table(title=report.title)
        table.add_column("metric")
        table.add_column("value", justify="right")
        for k, v in report.metrics.items():
            table.add_row(k, f"{v:.6g}")
        con.print(table)
    else:
        con.print(f"[bold]{report.title}")
    for tname, cols in report.tables.items():  # column name -> values, as Report stores tables
        t = Table(title=tname)
        names = list(cols)
        for c in names:
            t.add_column(str(c), justify="left" if c == names[0] else "right")
        n = max((len(v) for v in cols.values()), default=0)
        for i in range(n):
            t.add_row(*[_cell(cols[c][i]) if i < len(cols[c]) else "" for c in names])
        con.print(t)
    for note in report.notes:
        con.print(note)
    con.print(f"wrote {Path(args.out) / 'report.json'} ({dt:.1f} s)")
    return 0


def _cell(v: Any) -> str:
    return f"{v:.4g}" if isinstance(v, float) else str(v)


def plugin_main(argv: list[str]) -> int:
    """``splatlab plugin ARGS``: ``argv`` is what follows the word ``plugin``. Returns the exit
    code (0 ok, 2 bad input or unknown plugin, 130 cancelled)."""
    if not argv or argv[0] in ("-h", "--help"):
        sys.stdout.write(USAGE)
        return 0 if argv else EXIT_BAD_INPUT
    cmd, rest = argv[0], argv[1:]
    if cmd == "list":
        return _list(rest)
    if cmd == "run":
        return _run(rest)
    _console(stderr=True).print(f"[red]error:[/red] unknown plugin command {cmd!r}\n{USAGE}")
    return EXIT_BAD_INPUT


def main() -> None:
    """``python -m splatlab.app.plugin_cli ...`` (the same as ``splatlab plugin ...``)."""
    sys.exit(plugin_main(sys.argv[1:]))


if __name__ == "__main__":
    main()
