"""The ``scene codec`` compress plugin: splatlab's own ``.slsc`` scene format
(:mod:`splatlab.scene.formats.slsc`: prune by global significance, SH vector quantisation, Morton
sort, quantisation, zstd) run on a scene, with size, ratio and test PSNR of exactly the decoded
bitstream. In the viewer its panel also shows the decode beside / instead of the original and
adds the ``codec difference`` render mode (:func:`codec_difference` at the current camera)."""

from __future__ import annotations

import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch

from ...errors import DataError
from ...scene.formats.slsc import (
    QUALITY_PRESETS,
    CodecSettings,
    decode_scene,
    encode_scene,
    significance,
)
from ..base import Plugin, PluginInputs, Progress, Report, no_progress

__all__ = [
    "QUALITY_PRESETS",
    "CodecSettings",
    "significance",
    "encode_scene",
    "decode_scene",
    "SceneCodecOptions",
    "SceneCodecPlugin",
    "prune_and_finetune",
    "codec_difference",
    "DIFFERENCE_MODE",
    "DIFFERENCE_RANGE",
]

#: the render mode the panel adds after a run, and the range its turbo colour map spans
DIFFERENCE_MODE = "codec difference"
DIFFERENCE_RANGE = (0.0, 0.1)


# --------------------------------------------------------------------------------------------
# Plugin
# --------------------------------------------------------------------------------------------


def prune_and_finetune(
    params: dict[str, torch.Tensor],
    dataset: Any,
    prune: float,
    steps: int,
    cameras: list[tuple[np.ndarray, np.ndarray, int, int]] | None = None,
    seed: int = 0,
    progress: Callable[[float, str], None] = no_progress,
    ssim_weight: float = 0.2,
    lr_scale: float = 1.0,
) -> dict[str, torch.Tensor]:
    """LightGaussian's prune-then-recover: drop the ``prune`` fraction of lowest global
    significance (over ``cameras``, default 16 training views), then fine-tune the remaining
    Gaussians for ``steps`` steps on the training views with the 3DGS loss (0.8 L1 + 0.2 D-SSIM)
    and 3DGS's learning rates (positions at the final, 1/100 rate: the scene is trained already;
    opacities at half). No densification. Returns detached float32 tensors.

    ``ssim_weight`` is the D-SSIM weight of the loss (0: plain L1, which skips the SSIM's
    cost); ``lr_scale`` multiplies every learning rate (fewer steps at a higher rate).
    Higher SH bands that are all zero (a scene trained at degree 0) stay zero.
    (Fine-tuning on 2x downscaled images was measured and dropped: the demo fell to 24 dB,
    likely as the rasterizer's fixed 0.3 px^2 dilation weighs more in half-size pixels.)

    Measured on the demo run (benchmarks/scene_formats.py): pruning 30 % costs 0.83 dB before
    and 0.02 dB after 200 steps (the remaining loss is the codec's quantisation); 40 steps at
    ``lr_scale=2`` recover as much (0.21 dB below the original after q2 quantisation, vs 0.25
    dB for 200 steps at x1), plain L1 recovers less (0.39 dB after 100 steps at x2)."""
    from ...rendering.metrics import ssim
    from ...rendering.splats import render_splats

    if not 0.0 <= prune < 1.0:
        raise ValueError(f"prune must be in [0, 1), got {prune}")
    ids = list(dataset.train_ids or range(len(dataset.frames)))
    if not ids:
        raise DataError("fine-tuning after pruning needs training views; the dataset has none")
    if cameras is None:
        step = max(1, len(ids) // 16)
        cameras = [(f.viewmat, f.K, f.width, f.height) for f in (dataset.frames[i] for i in ids[::step][:16])]
    p = {k: v.detach().float().clone() for k, v in params.items()}
    if prune > 0:
        score = significance(p, cameras, lambda f: progress(0.2 * f, "significance"))
        keep = torch.from_numpy(np.sort(np.argsort(-score, kind="stable")[: max(1, int(round(len(score) * (1 - prune))))]))
        p = {k: v[keep] for k, v in p.items()}
    if steps <= 0:
        return p
    extent = float(dataset.scene_extent()) if hasattr(dataset, "scene_extent") else 1.0
    lrs = {"means": 1.6e-6 * extent, "scales": 5e-3, "quats": 1e-3, "opacities": 2.5e-2,
           "sh0": 2.5e-3, "shN": 2.5e-3 / 20}
    lrs = {k: v * lr_scale for k, v in lrs.items()}
    if "shN" in p and not bool(p["shN"].any()):
        lrs.pop("shN")  # the scene uses SH degree 0 only: the fine-tune does not raise it
    leaves = {k: v.requires_grad_(True) for k, v in p.items() if k in lrs}
    opt = torch.optim.Adam([{"params": [v], "lr": lrs[k]} for k, v in leaves.items()], eps=1e-15)
    bg = torch.tensor(dataset.background or (0.0, 0.0, 0.0), dtype=torch.float32)[None]
    rng = np.random.default_rng(seed)
    images: dict[int, torch.Tensor] = {}
    for it in range(steps):
        i = ids[int(rng.integers(len(ids)))]
        f = dataset.frames[i]
        if i not in images:
            images[i] = torch.as_tensor(dataset.load_image(i), dtype=torch.float32)
        gt = images[i]
        vm = torch.as_tensor(f.viewmat, dtype=torch.float32)[None]
        K = torch.as_tensor(f.K, dtype=torch.float32)[None]
        img = render_splats(p, vm, K, f.width, f.height, backgrounds=bg)[0][0]
        loss = (1.0 - ssim_weight) * (img - gt).abs().mean()
        if ssim_weight > 0:
            loss = loss + ssim_weight * (1.0 - ssim(img[None], gt[None]).mean())
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
        progress(0.2 + 0.8 * (it + 1) / steps, "fine-tune after pruning")
    return {k: v.detach() for k, v in p.items()}


def codec_difference(
    original: Mapping[str, Any],
    decoded: Mapping[str, Any],
    viewmat: np.ndarray,
    K: np.ndarray,
    width: int,
    height: int,
    background: tuple[float, float, float] = (0.0, 0.0, 0.0),
) -> np.ndarray:
    """Per-pixel difference of two scenes at one view: ``mean over RGB of |render(original) -
    render(decoded)|`` -> float32 [height, width] in [0, 1] (renders clamped to [0, 1], as shown).

    original, decoded: Gaussians (stored activations, any number each); viewmat [4, 4] OpenCV
    world-to-camera; K [3, 3]. The panel's ``codec difference`` render mode draws it."""
    from ...rendering.splats import render_splats

    vm = torch.as_tensor(np.asarray(viewmat), dtype=torch.float32)[None]
    Ks = torch.as_tensor(np.asarray(K), dtype=torch.float32)[None]
    bg = torch.tensor(background, dtype=torch.float32)[None]
    imgs = []
    for sc in (original, decoded):
        p = {k: torch.as_tensor(v).detach().float().cpu() for k, v in sc.items()}
        with torch.no_grad():
            imgs.append(render_splats(p, vm, Ks, int(width), int(height), backgrounds=bg)[0][0].clamp(0, 1))
    return (imgs[0] - imgs[1]).abs().mean(dim=-1).numpy().astype(np.float32)


@dataclass
class SceneCodecOptions:
    quality: int = 3
    """Rate point 1 (smallest file) .. 5 (best quality)."""
    prune: float = -1.0
    """Fraction of Gaussians to prune by global significance; -1 uses the quality preset."""
    sh_degree: int = -1
    """Keep SH bands up to this degree; -1 keeps all stored bands."""
    significance_views: int = 16
    """Training views used for the pruning significance (0: volume x opacity instead)."""
    kmeans_iterations: int = 10
    """k-means passes of the SH vector quantisation."""
    compare_formats: bool = True
    """Also write SPZ v4 and compressed PLY of the scene and put them in the table."""
    finetune_steps: int = 0
    """Steps of fine-tuning on the training views after pruning (LightGaussian's recovery;
    needs the run's dataset; 40 suffice on the demo); 0: prune and encode directly."""
    finetune_lr_scale: float = 2.0
    """Multiplier of the fine-tune's 3DGS learning rates (measured on the demo: 40 steps at x2
    recover as much as 200 at x1)."""


def _ply_size(n: int, k_rest: int) -> int:
    """Bytes of the INRIA PLY of n Gaussians (our save_ply: 17 + 3 k_rest float properties)."""
    from ...scene.gaussians import _inria_names

    names = _inria_names(k_rest)
    header = "ply\nformat binary_little_endian 1.0\n" + f"element vertex {n}\n"
    header += "".join(f"property float {nm}\n" for nm in names) + "end_header\n"
    return len(header.encode()) + 4 * len(names) * n


class SceneCodecPlugin(Plugin):
    name = "scene codec"
    kind = "compress"
    description = (
        "Compress the scene (prune, SH vector quantisation, Morton sort, quantisation, zstd) and "
        "measure size, ratio and test PSNR of the decoded scene."
    )
    Options = SceneCodecOptions
    accepts = ("scene",)

    def run(
        self, inputs: PluginInputs, options: SceneCodecOptions, progress: Progress = no_progress
    ) -> Report:
        if inputs.params is None:
            raise DataError("the scene codec needs a scene (a run directory or a scene file)")
        params = {k: v.detach().cpu() for k, v in inputs.params.items()}
        dataset = inputs.dataset
        run_path = inputs.path
        if dataset is None and run_path is not None and (run_path.is_dir() or run_path.suffix == ".pt"):
            dataset = _run_dataset(run_path)  # the viewer's inputs: the run it opened
        cameras = None
        if dataset is not None and options.significance_views > 0:
            ids = list(dataset.train_ids or range(len(dataset.frames)))
            step = max(1, len(ids) // options.significance_views)
            cameras = [
                (f.viewmat, f.K, f.width, f.height)
                for f in (dataset.frames[i] for i in ids[::step][: options.significance_views])
            ]
        t0 = time.perf_counter()
        prune = QUALITY_PRESETS[options.quality].prune if options.prune < 0 else options.prune
        t_ft = 0.0
        if options.finetune_steps > 0:
            if dataset is None:
                raise DataError("finetune_steps needs the scene's training views: run the codec on a run "
                                "directory whose dataset is on this machine, or set finetune_steps 0")
            to_encode = prune_and_finetune(params, dataset, prune, options.finetune_steps,
                                           cameras if cameras is not None else [],
                                           progress=lambda f, m="": progress(0.5 * f, m),
                                           lr_scale=options.finetune_lr_scale)
            prune, t_ft = 0.0, time.perf_counter() - t0
        else:
            to_encode = params
        data = encode_scene(
            to_encode,
            options.quality,
            prune=prune,
            sh_degree=None if options.sh_degree < 0 else options.sh_degree,
            cameras=cameras,
            kmeans_iterations=options.kmeans_iterations,
            progress=lambda f, m="": progress((0.5 if t_ft else 0.0) + (0.3 if t_ft else 0.8) * f, m),
        )
        t_enc = time.perf_counter() - t0
        t0 = time.perf_counter()
        decoded = decode_scene(data)
        t_dec = time.perf_counter() - t0
        n = int(params["means"].shape[0])
        ply = _ply_size(n, int(params["shN"].shape[1]))
        metrics = {
            "size_bytes": float(len(data)),
            "ply_bytes": float(ply),
            "ratio_vs_ply": ply / len(data),
            "n_gaussians": float(n),
            "n_kept": float(decoded["means"].shape[0]),
            "encode_s": t_enc,
            "finetune_s": t_ft,
            "decode_s": t_dec,
        }
        notes = []
        # the formats people share scenes in, written and read back here (SOG's k-means takes
        # minutes on a CPU: benchmarks/scene_formats.py measures it)
        scenes: dict[str, Any] = {"original (PLY)": params}
        table: dict[str, list] = {"format": ["INRIA PLY"], "size_kB": [ply / 1e3], "ratio_vs_ply": [1.0],
                                  "gaussians": [n], "encode_s": [0.0], "decode_s": [0.0]}
        if options.compare_formats:
            import tempfile
            from pathlib import Path

            from ...scene.formats import load_scene_file, save_scene_file

            with tempfile.TemporaryDirectory() as d:
                for label, name in (("SPZ v4", "s.spz"), ("compressed PLY", "s.compressed.ply")):
                    t0 = time.perf_counter()
                    path = save_scene_file(Path(d) / name, params)
                    te = time.perf_counter() - t0
                    t0 = time.perf_counter()
                    back = load_scene_file(path)
                    td = time.perf_counter() - t0
                    size = path.stat().st_size
                    scenes[label] = back
                    for k, v in (("format", label), ("size_kB", size / 1e3), ("ratio_vs_ply", ply / size),
                                 ("gaussians", int(back["means"].shape[0])), ("encode_s", te), ("decode_s", td)):
                        table[k].append(v)
        scenes[f"slsc q{options.quality}"] = decoded
        for k, v in (("format", f"slsc q{options.quality} (ours)"), ("size_kB", len(data) / 1e3),
                     ("ratio_vs_ply", ply / len(data)), ("gaussians", int(decoded["means"].shape[0])),
                     ("encode_s", t_enc), ("decode_s", t_dec)):
            table[k].append(v)
        if dataset is not None and dataset.test_ids:
            from ...rendering.metrics import psnr, ssim
            from ...rendering.splats import render_splats

            bg = torch.tensor(dataset.background or (0.0, 0.0, 0.0), dtype=torch.float32)[None]
            rows: dict[str, list[tuple[float, float]]] = {key: [] for key in scenes}
            for j, i in enumerate(dataset.test_ids):
                f = dataset.frames[i]
                vm = torch.as_tensor(f.viewmat, dtype=torch.float32)[None]
                K = torch.as_tensor(f.K, dtype=torch.float32)[None]
                gt = torch.as_tensor(dataset.load_image(i), dtype=torch.float32)
                for key, sc in scenes.items():
                    with torch.no_grad():
                        img = render_splats(sc, vm, K, f.width, f.height, backgrounds=bg)[0][0].clamp(0, 1)
                    rows[key].append((float(psnr(img, gt)), float(ssim(img[None], gt[None])[0])))
                progress(0.8 + 0.2 * (j + 1) / len(dataset.test_ids), "test views")
            mean = {key: np.mean(np.asarray(r), axis=0) for key, r in rows.items()}
            ours = f"slsc q{options.quality}"
            metrics["psnr_original"] = float(mean["original (PLY)"][0])
            metrics["psnr_decoded"] = float(mean[ours][0])
            metrics["psnr_loss_db"] = metrics["psnr_original"] - metrics["psnr_decoded"]
            metrics["ssim_original"] = float(mean["original (PLY)"][1])
            metrics["ssim_decoded"] = float(mean[ours][1])
            table["test_psnr_dB"] = [float(mean[key][0]) for key in scenes]
            table["test_ssim"] = [float(mean[key][1]) for key in scenes]
        else:
            notes.append("no dataset: size and ratio only (run on a run directory for test PSNR)")
        return Report(
            title=f"scene codec, quality {options.quality}",
            metrics=metrics,
            tables={"formats": table},
            notes=notes,
            files={"scene.slsc": data},
            scene=decoded,
        )

    # ----------------------------------------------------------------- viewer panel
    def panel(self, ctx: Any) -> None:
        """The default panel (options, Run as a job, the report with its formats table, the
        decoded scene shown beside the original with Show instead / Hide, and the download of
        ``scene.slsc``), plus, after each run, the ``codec difference`` render mode:
        :func:`codec_difference` of the scene the job compressed and its decode at the current
        camera (turbo over :data:`DIFFERENCE_RANGE`), and a button that switches to it."""
        hook = _ReportHook(ctx, self._after_report)
        super().panel(hook)
        self.panel_state: dict[str, Any] = {"original": None, "decoded": None, "hook": hook}

    def _after_report(self, ctx: Any, report: Report, inputs: PluginInputs | None) -> None:
        if report.scene is None or inputs is None or inputs.params is None:
            return
        state = self.panel_state
        state["original"] = {k: v.detach().cpu() for k, v in inputs.params.items()}
        state["decoded"] = report.scene

        def draw(camera: Any, params: Mapping[str, Any]) -> np.ndarray:
            bg = tuple(getattr(ctx, "background", (0.0, 0.0, 0.0)))  # the viewer's, if it says
            return codec_difference(state["original"], state["decoded"], camera.viewmat, camera.K,
                                    camera.width, camera.height, bg)

        ctx.add_render_mode(DIFFERENCE_MODE, draw, "turbo", DIFFERENCE_RANGE)
        with ctx.container:
            lo, hi = DIFFERENCE_RANGE
            note = ctx.gui.add_markdown(
                f"Render mode **{DIFFERENCE_MODE}**: mean over RGB of |original - decoded| at the "
                f"current view, turbo from {lo:g} (blue) to {hi:g} (red)."
            )
            show = ctx.gui.add_button("Show the codec difference")
            back = ctx.gui.add_button("Back to RGB")
        show.on_click(ctx.guard(lambda e: ctx.set_render_mode(DIFFERENCE_MODE)))
        back.on_click(ctx.guard(lambda e: ctx.set_render_mode("RGB")))
        for h in state.get("handles", []):
            h.remove()
        state["handles"] = [note, show, back]
        state["show"], state["back"] = show, back


class _ReportHook:
    """The panel's context as :meth:`Plugin.panel` sees it: every call goes to ``ctx``, except
    that the inputs of the job that started and its report are handed to ``after(ctx, report,
    inputs)`` once the report is shown."""

    def __init__(self, ctx: Any, after: Callable[[Any, Report, PluginInputs | None], None]) -> None:
        self._ctx = ctx
        self._after = after
        self._pending: PluginInputs | None = None
        self.job_inputs: PluginInputs | None = None

    def __getattr__(self, name: str) -> Any:
        return getattr(self._ctx, name)

    def inputs(self) -> PluginInputs:
        self._pending = self._ctx.inputs()
        return self._pending

    def run_job(self, fn: Callable[[Any], Any], **kw: Any) -> Any:
        # before the start: the job may finish (and show its report) before run_job returns
        previous, self.job_inputs = self.job_inputs, self._pending
        try:
            return self._ctx.run_job(fn, **kw)
        except BaseException:  # JobBusyError while the last job runs: its inputs stay
            self.job_inputs = previous
            raise

    def show_report(self, report: Report) -> None:
        self._ctx.show_report(report)
        self._after(self._ctx, report, self.job_inputs)


def _run_dataset(path: Any) -> Any:
    """The dataset of the run directory ``path`` (for the viewer, whose inputs carry only the
    scene), or None when it has none or it is not on this machine."""
    try:
        return PluginInputs.from_path(path).dataset
    except DataError:
        return None
