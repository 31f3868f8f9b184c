"""The Plugin contract and registry.

A plugin is a class with

- ``name`` (unique, shown in the viewer), ``kind`` in ``generate | inspect | compress``,
- ``Options``: a dataclass of typed options (each field a bool, int, float, str, Literal or
  enum-like Literal; defaults required), one-line docs in ``description``,
- ``accepts``: what ``splatlab plugin run NAME INPUT`` takes as INPUT (:data:`ACCEPTS`),
- ``run(inputs, options, progress) -> Report``: the headless analysis (CLI, tests, Python); it
  calls ``progress(fraction, message)`` at least every ~0.5 s in long loops, and lets the
  :class:`Cancelled` that ``progress`` raises (user pressed Cancel) propagate,
- ``panel(ctx)``: its viewer GUI. The default builds one input per option field, a Run button,
  a progress bar and the report (metrics, plots, images) by calling the same ``run``.

Plugins register through the ``splatlab.plugins`` entry-point group (``name = "module:Class"``),
so a third party adds one by installing a package; :data:`BUILTIN_PLUGINS` are always present.
This module never imports ``splatlab.app``: ``panel`` receives a
:class:`splatlab.plugins.panel.PanelContext` (the viewer implements it); background jobs are
:mod:`splatlab.plugins.jobs`; ``splatlab plugin run`` builds :meth:`PluginInputs.from_path` and
writes :meth:`Report.save`.
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

from ..errors import CheckpointError, DataError, SplatlabError

__all__ = [
    "ENTRY_POINT_GROUP",
    "BUILTIN_PLUGINS",
    "KINDS",
    "ACCEPTS",
    "Cancelled",
    "Plugin",
    "PluginInputs",
    "Report",
    "Progress",
    "no_progress",
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
# what a plugin's INPUT may be: a run directory or scene file, an image, a wav, a video, nothing
ACCEPTS = ("scene", "image", "audio", "video", "none")
IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg", ".webp")
AUDIO_SUFFIXES = (".wav",)
VIDEO_SUFFIXES = (".mp4", ".mov", ".webm", ".mkv", ".avi")


#: arguments of ``splatlab plugin run`` itself: a plugin option may not use these names
RESERVED_OPTION_NAMES = ("input", "out", "device", "help")


class Cancelled(SplatlabError):
    """Raised by a :class:`Progress` when the user cancelled the job (let it propagate)."""


class Progress(Protocol):
    """``progress(fraction, message)`` with fraction in [0, 1]."""

    def __call__(self, fraction: float, message: str = "") -> None: ...


def no_progress(fraction: float, message: str = "") -> None:
    """A :class:`Progress` that ignores its calls."""


@dataclass
class PluginInputs:
    """What a plugin may read. Headless callers fill what they have; the viewer fills all.

    params: the Gaussians (ParameterDict or name -> Tensor, stored activations: means [N, 3],
        scales [N, 3] log, quats [N, 4] wxyz, opacities [N] logit, sh0 [N, 1, 3], shN [N, K, 3]),
        or None.
    selection: bool [N] of the selected Gaussians, or None (= all).
    render: ``render(camera, mode) -> uint8 [H, W, 3]`` with a camera that has ``viewmat``
        [4, 4] (OpenCV world-to-camera), ``K`` [3, 3], ``width`` and ``height``; or None.
    camera: the current view (viewer) or the first test view of a run (headless), or None.
    uploads: file name -> bytes, already checked by :func:`check_upload`.
    path: the INPUT path (``splatlab plugin run``), or None.
    dataset: the run's ``splatlab.scene.datasets.base.Dataset`` (frames with viewmat / K /
        width / height, test_ids, load_image(i) -> float [H, W, 3]); loaded on first access
        when the inputs come from :meth:`from_path`; None when there is none.
    image: uint8 [H, W, 3] when the INPUT was an image.
    audio: (float32 [T] mono, sample_rate) when the INPUT was a wav.
    """

    params: Mapping[str, Any] | None = None
    selection: np.ndarray | None = None
    render: Callable[[Any, str], np.ndarray] | None = None
    camera: Any = None
    uploads: dict[str, bytes] = field(default_factory=dict)
    path: Path | None = None
    dataset: Any = field(default=None, repr=False, compare=False)
    image: np.ndarray | None = field(default=None, repr=False, compare=False)
    audio: tuple[np.ndarray, int] | None = field(default=None, repr=False, compare=False)

    @classmethod
    def from_path(cls, path: str | Path, device: str = "cpu") -> PluginInputs:
        """Inputs from a file or folder, as ``splatlab plugin run NAME INPUT`` builds them:

        - a run directory (or a ``.pt`` checkpoint in one): ``params`` from its latest
          checkpoint (else ``scene.ply``), ``dataset`` reloaded lazily from the path in its
          config.json, ``camera`` = its first test (else first) camera, and ``render``;
        - a scene file (.ply, .splat and what ``splatlab.scene.formats`` reads): ``params``,
          ``render``;
        - an image (.png, .jpg, .jpeg, .webp): ``image`` uint8 [H, W, 3];
        - a .wav: ``audio`` = (float32 [T] mono, sample_rate).

        DataError naming the file for anything else, or for a missing or corrupt input."""
        path = Path(path)
        if not path.exists():
            raise DataError(
                f"input {path} does not exist; pass a run directory, a scene file "
                f"(.ply, .splat), an image ({', '.join(IMAGE_SUFFIXES)}) or a .wav"
            )
        suffix = path.suffix.lower()
        if path.is_file() and suffix in IMAGE_SUFFIXES:
            return cls(path=path, image=read_image_rgb8(path))
        if path.is_file() and suffix in AUDIO_SUFFIXES:
            return cls(path=path, audio=read_audio_mono(path))
        if path.is_file() and suffix in VIDEO_SUFFIXES:
            return cls(path=path)  # a video plugin reads the frames itself from ``path``
        return _scene_inputs(cls, path, device)

    def kinds(self) -> set[str]:
        """Which of :data:`ACCEPTS` these inputs provide (without loading a lazy dataset)."""
        out = {"none"}
        if self.params is not None:
            out.add("scene")
        if self.image is not None:
            out.add("image")
        if self.audio is not None:
            out.add("audio")
        if self.path is not None and self.path.suffix.lower() in VIDEO_SUFFIXES:
            out.add("video")
        return out


def _dataset_get(self: PluginInputs) -> Any:
    d = self.__dict__.get("_dataset")
    if d is None and self.__dict__.get("_dataset_loader") is not None:
        loader = self.__dict__.pop("_dataset_loader")
        d = self.__dict__["_dataset"] = loader()
    return d


def _dataset_set(self: PluginInputs, value: Any) -> None:
    self.__dict__.pop("_dataset_loader", None)
    self.__dict__["_dataset"] = value


# ``dataset`` is a dataclass field whose value may be loaded on first read (see from_path)
PluginInputs.dataset = property(_dataset_get, _dataset_set)  # type: ignore[assignment]


def image_input(
    inputs: PluginInputs,
    who: str,
    decode: Callable[[str, bytes], np.ndarray],
    check: Callable[[Any, str], np.ndarray],
) -> tuple[np.ndarray, str]:
    """The image an image plugin works on, and where it came from: the first upload (``decode(name,
    bytes)``), else the INPUT image, else the current view rendered from the scene (each through
    ``check(img, what)``). DataError naming ``who`` when there is none."""
    if inputs.uploads:
        name, content = next(iter(inputs.uploads.items()))
        return decode(name, content), f"upload {name}"
    if inputs.image is not None:
        return check(inputs.image, f"input image {inputs.path or ''}".strip()), "input image"
    if inputs.render is not None and inputs.camera is not None:
        return check(inputs.render(inputs.camera, "RGB"), "rendered view"), "current view"
    raise DataError(
        f"{who} needs an image: upload a .png/.jpg, pass an image as INPUT, or open a scene so "
        "that the current view can be rendered"
    )


def read_image_rgb8(path: Path) -> np.ndarray:
    """An image file -> uint8 [H, W, 3] (alpha composited on black, greys expanded).
    DataError naming the file when it is not a readable image."""
    from PIL import Image, UnidentifiedImageError

    try:
        with Image.open(path) as im:
            im.load()
            if im.mode in ("I;16", "I;16L", "I;16B", "I;16N", "I"):  # 16-bit grey (PNG, TIFF)
                a = np.asarray(im, dtype=np.float64)
                if a.size and (a.min() < 0 or a.max() > 65535):
                    raise DataError(f"{path}: {im.mode} pixel values outside 0..65535; save it as 8- or 16-bit")
                g = np.round(a / 257.0).astype(np.uint8)  # 65535 -> 255, not clipped to white
                return np.ascontiguousarray(np.repeat(g[..., None], 3, axis=2))
            if im.mode == "F":
                raise DataError(f"{path} holds float pixels (mode F); save it as an 8- or 16-bit image")
            if im.mode in ("RGBA", "LA", "PA") or "transparency" in im.info:
                im = im.convert("RGBA")
                bg = Image.new("RGBA", im.size, (0, 0, 0, 255))
                im = Image.alpha_composite(bg, im)
            arr = np.asarray(im.convert("RGB"), dtype=np.uint8)
    except (UnidentifiedImageError, OSError, SyntaxError, ValueError) as e:
        raise DataError(f"{path} is not a readable image ({type(e).__name__}: {e})") from e
    return np.ascontiguousarray(arr)


def read_audio_mono(path: Path) -> tuple[np.ndarray, int]:
    """A wav file -> (float32 [T] in [-1, 1], mono = mean of the channels, sample_rate).
    DataError naming the file when it is not a readable wav."""
    try:
        import soundfile as sf
    except ImportError:  # the stdlib reader handles PCM wavs
        sf = None
    if sf is not None:
        try:
            data, sr = sf.read(str(path), dtype="float32", always_2d=True)
        except (RuntimeError, OSError, ValueError) as e:  # LibsndfileError is a RuntimeError
            raise DataError(f"{path} is not a readable wav file ({e})") from e
        mono = data.mean(axis=1).astype(np.float32)
    else:
        mono, sr = _read_wav_stdlib(path)
    if mono.size == 0:
        raise DataError(f"{path} holds no audio samples")
    return np.ascontiguousarray(mono), int(sr)


def _read_wav_stdlib(path: Path) -> tuple[np.ndarray, int]:
    import wave

    try:
        with wave.open(str(path), "rb") as w:
            sr, ch, width, n = w.getframerate(), w.getnchannels(), w.getsampwidth(), w.getnframes()
            raw = w.readframes(n)
    except (wave.Error, EOFError, OSError) as e:
        raise DataError(f"{path} is not a readable PCM wav file ({e})") from e
    if width == 1:
        x = (np.frombuffer(raw, np.uint8).astype(np.float32) - 128.0) / 128.0
    elif width == 2:
        x = np.frombuffer(raw, "<i2").astype(np.float32) / 32768.0
    elif width == 4:
        x = np.frombuffer(raw, "<i4").astype(np.float32) / 2147483648.0
    else:
        raise DataError(f"{path}: {8 * width}-bit PCM is not supported; convert it to 16-bit")
    return x.reshape(-1, ch).mean(axis=1), sr


def _load_scene_params(path: Path, device: str) -> tuple[Any, Any]:
    """(params, LoadedScene) from a run directory, checkpoint or scene file (every format of
    ``splatlab.scene.formats``, through :func:`splatlab.scene.checkpoint.load_scene`)."""
    from ..scene.checkpoint import load_scene

    try:
        loaded = load_scene(path, map_location=device)
        params = loaded.params
    except CheckpointError as e:
        raise DataError(str(e)) from e
    except DataError:
        raise
    except Exception as e:  # a truncated .pt, an unknown suffix: name the file and the cause
        raise DataError(
            f"cannot read {path} as a scene ({type(e).__name__}: {e}); pass a run directory, a "
            f"scene file (.ply, .splat, ...), an image ({', '.join(IMAGE_SUFFIXES)}) or a .wav"
        ) from e
    return {k: v.detach().to(device) for k, v in params.items()}, loaded


def _stored_render_fn(loaded: Any, params: Mapping[str, Any]) -> Any:
    """The render function of the method that stored the scene (e.g. GaussianShader's shading),
    or None for plain SH scenes; a part that fails to open is logged and the scene renders with
    its SH (as in the viewer)."""
    if loaded is None:
        return None
    from ..training.stored import open_stored

    parts = open_stored(loaded, params, strict=False)
    if parts.render_fn is None or "RGB" not in parts.render_modes:
        return None
    return parts.render_fn


def _scene_inputs(cls: type[PluginInputs], path: Path, device: str) -> PluginInputs:
    params, loaded = _load_scene_params(path, device)
    render = make_scene_renderer(params, _stored_render_fn(loaded, params))
    inputs = cls(path=path, params=params, render=render)
    if loaded is not None and loaded.cameras is not None and len(loaded.cameras.widths):
        cams = loaded.cameras
        i = 0  # split_every_nth puts view 0 in the test set
        inputs.camera = SimpleCamera(
            cams.viewmats[i].copy(), cams.Ks[i].copy(), int(cams.widths[i]), int(cams.heights[i])
        )
    if loaded is not None and loaded.config and isinstance(loaded.config.get("data"), str):
        config = dict(loaded.config)
        inputs.__dict__["_dataset_loader"] = lambda: _load_run_dataset(config, path)
    return inputs


def _load_run_dataset(config: dict, where: Path) -> Any:
    """The Dataset a run was trained on (its config.json ``data`` and ``train`` options)."""
    from ..scene.synthetic import DEMO_ROOT

    data = config["data"]
    train = config.get("train", {})
    if data == DEMO_ROOT:
        from ..scene.synthetic import make_demo_scene

        return make_demo_scene()
    from ..scene.datasets import load_dataset

    if not Path(data).exists():
        raise DataError(
            f"the dataset of run {where} ({data}, from its config.json) is not on this machine"
        )
    return load_dataset(
        Path(data),
        downscale=int(train.get("downscale", 1)),
        test_every=int(train.get("test_every", 8)),
    )


@dataclass
class SimpleCamera:
    """A pinhole view (the fields the viewer's ViewCamera has)."""

    viewmat: np.ndarray  # [4, 4] OpenCV world-to-camera
    K: np.ndarray  # [3, 3]
    width: int
    height: int


HEADLESS_MODES = ("RGB", "depth", "alpha")


def make_scene_renderer(
    params: Mapping[str, Any], rgb_fn: Callable[..., Any] | None = None
) -> Callable[[Any, str], np.ndarray]:
    """``render(camera, mode) -> uint8 [H, W, 3]`` of ``params`` for mode in
    :data:`HEADLESS_MODES` (RGB with all stored SH, or through ``rgb_fn`` — a stored method's
    ``render_fn(viewmat, K, w, h, ...) -> (colors, alpha, info)`` such as GaussianShader's shading
    — depth TURBO-coloured, alpha grey)."""

    def render(camera: Any, mode: str = "RGB") -> np.ndarray:
        import torch

        from ..rendering.splats import render_splats

        if mode not in HEADLESS_MODES:
            raise ValueError(f"unknown render mode {mode!r}; headless modes: {HEADLESS_MODES}")
        w, h = int(camera.width), int(camera.height)
        if params["means"].shape[0] == 0:
            return np.zeros((h, w, 3), np.uint8)
        vm = torch.as_tensor(np.asarray(camera.viewmat), dtype=torch.float32)[None]
        K = torch.as_tensor(np.asarray(camera.K), dtype=torch.float32)[None]
        with torch.no_grad():
            if mode == "RGB" and rgb_fn is not None:
                img, _, _ = rgb_fn(vm[0], K[0], w, h, render_mode="RGB")
                return (img[..., :3].clamp(0, 1).cpu().numpy() * 255 + 0.5).astype(np.uint8)
            if mode == "RGB":
                img, _, _ = render_splats(params, vm, K, w, h)
                return (img[0].clamp(0, 1).cpu().numpy() * 255 + 0.5).astype(np.uint8)
            d, alpha, _ = render_splats(params, vm, K, w, h, sh_degree=0, render_mode="ED")
        a = alpha[0, ..., 0].cpu().numpy()
        if mode == "alpha":
            return np.repeat((np.clip(a, 0, 1) * 255 + 0.5).astype(np.uint8)[..., None], 3, -1)
        return _turbo_depth(d[0, ..., 0].cpu().numpy(), a)

    return render


def _turbo_depth(depth: np.ndarray, alpha: np.ndarray) -> np.ndarray:
    import cv2

    valid = np.isfinite(depth) & (depth > 0) & (alpha > 0.5)
    vals = depth[valid]
    lo, hi = np.percentile(vals, [2, 98]) if vals.size else (0.0, 1.0)
    t = np.clip((depth - lo) / max(hi - lo, 1e-8), 0, 1)
    img = cv2.applyColorMap(((1.0 - t) * 255).astype(np.uint8), cv2.COLORMAP_TURBO)[..., ::-1]
    return np.ascontiguousarray(np.where(valid[..., None], img, 0).astype(np.uint8))


@dataclass
class Report:
    """A plugin's result. metrics, tables and notes are JSON; images are uint8 [H, W, 3] (or
    [H, W]); plots are plotly figures; files are name -> bytes or Path (a bitstream, a PLY);
    scene is a Gaussians dict like ``PluginInputs.params`` (to show in the viewer); selection
    is bool [N] over the INPUT scene's Gaussians."""

    title: str
    metrics: dict[str, float] = field(default_factory=dict)
    tables: dict[str, dict[str, list]] = field(default_factory=dict)
    images: dict[str, np.ndarray] = field(default_factory=dict)
    plots: dict[str, Any] = field(default_factory=dict)
    notes: list[str] = field(default_factory=list)
    files: dict[str, bytes | Path] = field(default_factory=dict)
    scene: Mapping[str, Any] | None = None
    selection: np.ndarray | None = None

    def to_json(self) -> dict[str, Any]:
        """metrics, tables, notes, image shapes, file sizes, the scene's and selection's sizes
        (plots and pixels are left out)."""
        out: dict[str, Any] = {
            "title": self.title,
            "metrics": {k: float(v) for k, v in self.metrics.items()},
            "tables": _jsonable(self.tables),
            "images": {k: list(v.shape) for k, v in self.images.items()},
            "notes": list(self.notes),
        }
        if self.files:
            out["files"] = {k: _file_size(v) for k, v in self.files.items()}
        if self.plots:
            out["plots"] = sorted(self.plots)
        if self.scene is not None:
            out["scene"] = {"n_gaussians": int(self.scene["means"].shape[0])}
        if self.selection is not None:
            sel = np.asarray(self.selection, dtype=bool)
            out["selection"] = {"n": int(sel.size), "n_selected": int(sel.sum())}
        return out

    def markdown(self) -> str:
        """The metrics and notes as a markdown table for a viewer panel."""
        lines = [f"**{self.title}**", "", "| metric | value |", "|---|---|"]
        for k, v in self.metrics.items():
            lines.append(f"| {k} | {v:.6g} |")
        lines += ["", *self.notes]
        return "\n".join(lines)

    def save(self, out_dir: str | Path) -> Path:
        """Write the report to ``out_dir``: ``<image>.png``, the files, ``scene.ply``,
        ``selection.npy``, plots as ``<plot>.html`` (plotly), then ``report.json`` last (its
        presence means the folder is complete). Every file is written atomically. Returns the
        path of report.json."""
        from ..utils import atomic_write, atomic_write_bytes, atomic_write_json

        out = Path(out_dir)
        out.mkdir(parents=True, exist_ok=True)
        names = self.output_names()
        for key, img in self.images.items():
            atomic_write_bytes(out / names["images"][key], encode_png(img))
        for key, data in self.files.items():
            target = out / names["files"][key]
            if isinstance(data, (bytes, bytearray, memoryview)):
                atomic_write_bytes(target, bytes(data))
            else:
                src = Path(data)
                if src.resolve() != target.resolve():
                    with open(src, "rb") as fin, atomic_write(target, "wb") as fout:
                        while chunk := fin.read(1 << 20):
                            fout.write(chunk)
        for key, fig in self.plots.items():
            html = (
                fig.to_html(include_plotlyjs="cdn", full_html=True)
                if hasattr(fig, "to_html")
                else None
            )
            if html is not None:
                atomic_write_bytes(out / names["plots"][key], html.encode("utf-8"))
        if self.scene is not None:
            from ..scene.gaussians import save_ply

            save_ply(out / "scene.ply", {k: v for k, v in self.scene.items()})
        if self.selection is not None:
            import io

            buf = io.BytesIO()
            np.save(buf, np.asarray(self.selection, dtype=bool))
            atomic_write_bytes(out / "selection.npy", buf.getvalue())
        meta = self.to_json()
        meta["outputs"] = {
            "images": names["images"],
            "files": names["files"],
            "plots": names["plots"] if self.plots else {},
            "scene": "scene.ply" if self.scene is not None else None,
            "selection": "selection.npy" if self.selection is not None else None,
        }
        atomic_write_json(out / "report.json", meta)
        return out / "report.json"

    def output_names(self) -> dict[str, dict[str, str]]:
        """File names :meth:`save` gives images, files and plots (keys made file-name safe)."""
        taken: set[str] = set(_RESERVED)
        out: dict[str, dict[str, str]] = {"images": {}, "files": {}, "plots": {}}
        for group, keys, ext in (
            ("files", self.files, ""),
            ("images", self.images, ".png"),
            ("plots", self.plots, ".html"),
        ):
            for k in keys:
                name = _safe_name(k + ext if ext and not str(k).endswith(ext) else k)
                stem, suf = Path(name).stem, Path(name).suffix
                i = 1
                while name in taken:
                    name, i = f"{stem}_{i}{suf}", i + 1
                taken.add(name)
                out[group][k] = name
        return out


_RESERVED = ("report.json", "scene.ply", "selection.npy")


def _safe_name(key: str) -> str:
    import re

    name = re.sub(r"[^A-Za-z0-9._-]+", "_", Path(str(key)).name).strip("._") or "output"
    return "_" + name if name in _RESERVED else name


def _file_size(v: bytes | Path) -> int:
    if isinstance(v, (bytes, bytearray, memoryview)):
        return len(v)
    return Path(v).stat().st_size


def _jsonable(obj: Any) -> Any:
    """Tables with numpy scalars / arrays turned into plain lists and numbers."""
    if isinstance(obj, dict):
        return {str(k): _jsonable(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [_jsonable(v) for v in obj]
    if isinstance(obj, np.ndarray):
        return obj.tolist()
    if isinstance(obj, np.generic):
        return obj.item()
    return obj


def encode_png(img: np.ndarray) -> bytes:
    """uint8 [H, W, 3] / [H, W, 4] / [H, W] (float in [0, 1] is scaled) -> PNG bytes."""
    import io

    from PIL import Image

    a = np.asarray(img)
    if a.dtype != np.uint8:
        a = (np.clip(a.astype(np.float64), 0, 1) * 255 + 0.5).astype(np.uint8)
    buf = io.BytesIO()
    Image.fromarray(np.ascontiguousarray(a)).save(buf, format="PNG")
    return buf.getvalue()


@dataclass
class NoOptions:
    """A plugin without options."""


class Plugin:
    """Base class of every plugin; see the module docstring."""

    name: ClassVar[str] = ""
    kind: ClassVar[PluginKind] = "inspect"
    description: ClassVar[str] = ""
    Options: ClassVar[type] = NoOptions
    accepts: ClassVar[tuple[str, ...]] = ("scene",)  # INPUT kinds of `splatlab plugin run`
    upload_types: ClassVar[tuple[str, ...]] = ()  # accepted suffixes of panel uploads
    max_upload_bytes: ClassVar[int] = 20 * 1024 * 1024

    def default_options(self) -> Any:
        return self.Options()

    def run(self, inputs: PluginInputs, options: Any, progress: Progress = no_progress) -> Report:
        raise NotImplementedError(f"plugin {self.name!r} does not implement run()")

    def options_from(self, values: Mapping[str, Any]) -> Any:
        """``Options(**values)`` (the defaults when ``values`` is empty)."""
        return self.Options(**values) if values else self.default_options()

    # ----------------------------------------------------------------- viewer panel
    def panel(self, ctx: Any) -> None:
        """Build the plugin's GUI with ``ctx`` (a :class:`splatlab.plugins.panel.PanelContext`):
        one input per option, an upload button (if ``upload_types``), Run, and the report below.
        Run starts ``run`` as a background job (progress bar, Cancel) on the inputs of the
        moment; when it succeeds the report is shown (its selection becomes the viewer's, its
        scene can be shown beside / instead of the current one, its files downloaded).
        Override to add more (call ``super().panel(ctx)`` first to keep the default)."""
        gui = ctx.gui
        if self.description:
            gui.add_markdown(self.description)
        handles: dict[str, Any] = {}
        getters = (
            _option_inputs(gui, self.Options, handles)
            if dataclasses.is_dataclass(self.Options)
            else {}
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
        # the panel's state lives on the plugin object that built it
        self.panel_handles = {"run": run_btn, "options": handles}

        def finished(job: Any) -> None:
            run_btn.disabled = False

        @run_btn.on_click
        @ctx.guard
        def _(event: Any) -> None:
            opts = self.options_from({k: g() for k, g in getters.items()})
            inputs = ctx.inputs()
            inputs.uploads = dict(uploads)
            run_btn.disabled = True  # before the job starts: it may finish before run_job returns
            try:
                ctx.run_job(
                    lambda progress: self.run(inputs, opts, progress),
                    label=self.name,
                    on_done=ctx.show_report,
                    on_finish=finished,
                )
            except BaseException:
                run_btn.disabled = False
                raise


def _option_inputs(
    gui: Any, options_cls: type, handles: dict[str, Any] | None = None
) -> dict[str, Callable[[], Any]]:
    """One viser input per dataclass field; returns name -> getter (``handles`` receives
    name -> GUI handle)."""
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
        if handles is not None:
            handles[f.name] = h
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
    acc = cls.accepts
    if isinstance(acc, str) or not acc or any(a not in ACCEPTS for a in acc):
        raise TypeError(f"{target}: accepts must be a non-empty tuple of {ACCEPTS}, got {acc!r}")
    taken = sorted({f.name for f in dataclasses.fields(cls.Options)} & set(RESERVED_OPTION_NAMES))
    if taken:
        raise TypeError(
            f"{target}: option name(s) {taken} are used by `splatlab plugin run` itself "
            f"({', '.join(RESERVED_OPTION_NAMES)}); rename them (e.g. model_device)"
        )


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
