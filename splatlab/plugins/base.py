"""The Plugin contract and registry.

A plugin is a class with

- ``name`` (unique, shown in the viewer), ``kind`` in ``generate | inspect | compress``,
- ``Options``: a dataclass of typed options (each field a bool, int, float, str, Literal or
  enum-like Literal; defaults required), one-line docs in ``description``,
- ``run(inputs, options, progress) -> Report``: the headless analysis (CLI, tests, Python),
- ``panel(ctx)``: its viewer GUI. The default builds one input per option field, a Run button,
  a progress bar and the report (metrics, plots, images) by calling the same ``run``.

Plugins register through the ``splatlab.plugins`` entry-point group (``name = "module:Class"``),
so a third party adds one by installing a package; :data:`BUILTIN_PLUGINS` are always present.
This module never imports ``splatlab.app``: the viewer hands a duck-typed context to ``panel``.
"""

from __future__ import annotations

import dataclasses
import importlib
import json
import logging
import typing
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from importlib import metadata
from pathlib import Path
from typing import Any, ClassVar, Literal, Protocol

import numpy as np

from ..errors import DataError

__all__ = [
    "ENTRY_POINT_GROUP",
    "BUILTIN_PLUGINS",
    "KINDS",
    "Plugin",
    "PluginInputs",
    "Report",
    "Progress",
    "PluginLoadError",
    "discover_plugins",
    "load_plugin_class",
    "check_upload",
]

logger = logging.getLogger(__name__)

ENTRY_POINT_GROUP = "splatlab.plugins"
BUILTIN_PLUGINS: dict[str, str] = {"view-statistics": "splatlab.plugins.stats:StatsPlugin"}
KINDS = ("generate", "inspect", "compress")
PluginKind = Literal["generate", "inspect", "compress"]


class Progress(Protocol):
    """``progress(fraction, message)`` with fraction in [0, 1]."""

    def __call__(self, fraction: float, message: str = "") -> None: ...


def no_progress(fraction: float, message: str = "") -> None:
    """A :class:`Progress` that ignores its calls."""


@dataclass
class PluginInputs:
    """What a plugin may read. Headless callers fill what they have; the viewer fills all.

    params: the Gaussians (ParameterDict or name -> Tensor, stored activations), or None.
    selection: bool [N] of the selected Gaussians, or None (= all).
    render: ``render(camera, mode) -> uint8 [H, W, 3]`` with a ViewCamera-like camera, or None.
    camera: the current view (viewer only), or None.
    uploads: file name -> bytes, already checked by :func:`check_upload`.
    """

    params: Mapping[str, Any] | None = None
    selection: np.ndarray | None = None
    render: Callable[[Any, str], np.ndarray] | None = None
    camera: Any = None
    uploads: dict[str, bytes] = field(default_factory=dict)


@dataclass
class Report:
    """A plugin's result: numbers, tables, images and plots, JSON-serialisable except images
    (uint8 arrays) and plots (plotly figures, built only when plotly is installed)."""

    title: str
    metrics: dict[str, float] = field(default_factory=dict)
    tables: dict[str, dict[str, list]] = field(default_factory=dict)
    images: dict[str, np.ndarray] = field(default_factory=dict)
    plots: dict[str, Any] = field(default_factory=dict)
    notes: list[str] = field(default_factory=list)

    def to_json(self) -> dict[str, Any]:
        """metrics, tables, notes and image shapes (plots and pixels are left out)."""
        return {
            "title": self.title,
            "metrics": {k: float(v) for k, v in self.metrics.items()},
            "tables": self.tables,
            "images": {k: list(v.shape) for k, v in self.images.items()},
            "notes": list(self.notes),
        }

    def markdown(self) -> str:
        """The metrics and notes as a markdown table for a viewer panel."""
        lines = [f"**{self.title}**", "", "| metric | value |", "|---|---|"]
        for k, v in self.metrics.items():
            lines.append(f"| {k} | {v:.6g} |")
        lines += ["", *self.notes]
        return "\n".join(lines)


@dataclass
class NoOptions:
    """A plugin without options."""


class Plugin:
    """Base class of every plugin; see the module docstring."""

    name: ClassVar[str] = ""
    kind: ClassVar[PluginKind] = "inspect"
    description: ClassVar[str] = ""
    Options: ClassVar[type] = NoOptions
    upload_types: ClassVar[tuple[str, ...]] = ()  # accepted suffixes of panel uploads
    max_upload_bytes: ClassVar[int] = 20 * 1024 * 1024

    def default_options(self) -> Any:
        return self.Options()

    def run(self, inputs: PluginInputs, options: Any, progress: Progress = no_progress) -> Report:
        raise NotImplementedError(f"plugin {self.name!r} does not implement run()")

    # ----------------------------------------------------------------- viewer panel
    def panel(self, ctx: Any) -> None:
        """Build the plugin's GUI in ``ctx.gui`` (a viser GUI container): one input per option,
        upload (if ``upload_types``), Run, a progress bar, and the report below. ``ctx`` provides
        ``gui``, ``inputs() -> PluginInputs``, ``progress_bar() -> Progress``, ``guard(fn)``
        (callbacks that show errors as notifications instead of raising), ``show_report(report)``
        and ``check_upload(name, content, types, max_bytes)``."""
        gui = ctx.gui
        if self.description:
            gui.add_markdown(self.description)
        getters = (
            _option_inputs(gui, self.Options) if dataclasses.is_dataclass(self.Options) else {}
        )
        uploads: dict[str, bytes] = {}
        if self.upload_types:
            up = gui.add_upload_button("Upload " + " / ".join(self.upload_types))

            @up.on_upload
            @ctx.guard
            def _(event: Any) -> None:
                f = event.target.value
                ctx.check_upload(f.name, f.content, self.upload_types, self.max_upload_bytes)
                uploads.clear()
                uploads[f.name] = f.content

        run_btn = gui.add_button("Run", icon=None)
        progress = ctx.progress_bar()

        @run_btn.on_click
        @ctx.guard
        def _(event: Any) -> None:
            opts = (
                self.Options(**{k: g() for k, g in getters.items()})
                if getters
                else self.default_options()
            )
            inputs = ctx.inputs()
            inputs.uploads = dict(uploads)
            run_btn.disabled = True
            try:
                report = self.run(inputs, opts, progress)
            finally:
                run_btn.disabled = False
            ctx.show_report(report)


def _option_inputs(gui: Any, options_cls: type) -> dict[str, Callable[[], Any]]:
    """One viser input per dataclass field; returns name -> getter."""
    hints = typing.get_type_hints(options_cls)
    getters: dict[str, Callable[[], Any]] = {}
    for f in dataclasses.fields(options_cls):
        t = hints.get(f.name, str)
        default = f.default if f.default is not dataclasses.MISSING else f.default_factory()  # type: ignore[misc]
        label = f.name.replace("_", " ")
        if typing.get_origin(t) is Literal:
            h = gui.add_dropdown(
                label, tuple(str(a) for a in typing.get_args(t)), initial_value=str(default)
            )
            choices = {str(a): a for a in typing.get_args(t)}
            getters[f.name] = lambda h=h, c=choices: c[h.value]
        elif t is bool:
            h = gui.add_checkbox(label, bool(default))
            getters[f.name] = lambda h=h: bool(h.value)
        elif t is int:
            h = gui.add_number(label, int(default), step=1)
            getters[f.name] = lambda h=h: int(h.value)
        elif t is float:
            h = gui.add_number(label, float(default), step=1e-3)
            getters[f.name] = lambda h=h: float(h.value)
        else:
            h = gui.add_text(label, str(default))
            getters[f.name] = lambda h=h: h.value
    return getters


# ------------------------------------------------------------------------- registry


@dataclass
class PluginLoadError:
    """A registered plugin that could not be loaded (shown in the viewer, never raised)."""

    name: str
    target: str
    error: str


def load_plugin_class(target: str) -> type[Plugin]:
    """Import ``"module:Class"`` and check it against the contract (TypeError if it breaks it)."""
    mod_name, _, attr = target.partition(":")
    if not attr:
        raise TypeError(f"plugin target {target!r} must look like 'package.module:ClassName'")
    obj = importlib.import_module(mod_name)
    for part in attr.split("."):
        obj = getattr(obj, part)
    _check_contract(obj, target)
    return obj  # type: ignore[return-value]


def _check_contract(cls: Any, target: str) -> None:
    if not (isinstance(cls, type) and issubclass(cls, Plugin)):
        raise TypeError(f"{target} is not a subclass of splatlab.plugins.base.Plugin")
    if not isinstance(cls.name, str) or not cls.name:
        raise TypeError(f"{target} has no 'name'")
    if cls.kind not in KINDS:
        raise TypeError(f"{target}: kind must be one of {KINDS}, got {cls.kind!r}")
    if not dataclasses.is_dataclass(cls.Options):
        raise TypeError(f"{target}: Options must be a dataclass")


def discover_plugins(
    extra: Sequence[str] = (), builtins: bool = True
) -> tuple[dict[str, type[Plugin]], list[PluginLoadError]]:
    """All plugins: the built-ins, the ``splatlab.plugins`` entry points of installed packages,
    then ``extra`` targets ("module:Class"). A later registration with a name already taken is
    reported as an error. Returns (name -> class, load errors)."""
    targets: list[tuple[str, str]] = list(BUILTIN_PLUGINS.items()) if builtins else []
    for ep in metadata.entry_points(group=ENTRY_POINT_GROUP):
        targets.append((ep.name, ep.value))
    targets += [(t, t) for t in extra]
    found: dict[str, type[Plugin]] = {}
    origin: dict[str, str] = {}
    errors: list[PluginLoadError] = []
    for reg_name, target in targets:
        if target in origin.values():
            continue  # the same class registered twice (built-in and entry point)
        try:
            cls = load_plugin_class(target)
        except Exception as e:  # a broken third-party plugin must not stop the others
            logger.warning("plugin %s (%s) failed to load: %s", reg_name, target, e)
            errors.append(PluginLoadError(reg_name, target, f"{type(e).__name__}: {e}"))
            continue
        if cls.name in found:
            errors.append(
                PluginLoadError(
                    reg_name, target, f"name {cls.name!r} is already used by {origin[cls.name]}"
                )
            )
            continue
        found[cls.name] = cls
        origin[cls.name] = target
    return found, errors


# ------------------------------------------------------------------------- uploads

_MAGIC: dict[str, Callable[[bytes], bool]] = {
    ".png": lambda b: b.startswith(b"\x89PNG\r\n\x1a\n"),
    ".jpg": lambda b: b.startswith(b"\xff\xd8\xff"),
    ".jpeg": lambda b: b.startswith(b"\xff\xd8\xff"),
    ".ply": lambda b: b.startswith(b"ply\n") or b.startswith(b"ply\r\n"),
    ".splat": lambda b: len(b) % 32 == 0 and len(b) > 0,
    ".npy": lambda b: b.startswith(b"\x93NUMPY"),
    ".wav": lambda b: b[:4] == b"RIFF" and b[8:12] == b"WAVE",
    ".mp4": lambda b: b[4:8] == b"ftyp",
    ".json": lambda b: _is_json(b),
}


def _is_json(b: bytes) -> bool:
    try:
        json.loads(b.decode("utf-8"))
    except (UnicodeDecodeError, json.JSONDecodeError):
        return False
    return True


def check_upload(name: str, content: bytes, allowed: Sequence[str], max_bytes: int) -> None:
    """Refuse an uploaded file that is too large, has a suffix outside ``allowed`` (e.g.
    ``(".png", ".jpg")``) or whose bytes do not match its suffix. Raises DataError."""
    suffix = Path(name).suffix.lower()
    allowed_l = tuple(a.lower() for a in allowed)
    if len(content) > max_bytes:
        raise DataError(
            f"upload {name!r} is {len(content) / 1e6:.1f} MB; the limit is {max_bytes / 1e6:.1f} MB"
        )
    if suffix not in allowed_l:
        raise DataError(
            f"upload {name!r}: type {suffix or '(none)'} is not accepted; use {', '.join(allowed_l)}"
        )
    check = _MAGIC.get(suffix)
    if check is not None and not check(content):
        raise DataError(
            f"upload {name!r} does not look like a {suffix} file (its content does not match)"
        )
