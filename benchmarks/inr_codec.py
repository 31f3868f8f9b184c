"""INR image codec (COOL-CHIC / C3 style, issue 12) on Kodak against JPEG, WebP, AVIF, HEVC intra
and JPEG XL: RD points, per-image BD-rate (PCHIP over log10 bpp vs PSNR, averaged over images),
encode and decode times. Prints markdown rows; ``--json`` also writes every point, ``--html`` the
plotly RD figure of the mean curves.

Rates are the bytes of each file. Kodak is ``../shared/data/kodak`` (24 PNGs, 768x512); a full
encode of a whole image per rate takes long on 2 cores, so the default is a fixed subset of 6
images, each centre-cropped to ``--crop`` pixels (named in the rows). Usage:

    python benchmarks/inr_codec.py [--images kodim01 kodim04 kodim08 kodim15 kodim19 kodim23]
        [--crop 256] [--steps 600] [--lmbdas 4e-3 1e-3 2.5e-4] [--enhance 0] [--quantizer softround]
        [--arm-hidden 16] [--syn-hidden 24] [--upsampling bilinear] [--arch-candidates 8,12]
        [--json out.json] [--html rd.html]
"""

from __future__ import annotations

import argparse
import json
import platform
import time
from pathlib import Path

import numpy as np
from PIL import Image

from splatlab.plugins.compress import rd
from splatlab.plugins.compress.inr import CodecOptions, decode, encode_image, parse_arch_candidates
from splatlab.plugins.compress.inr.codec import UPSAMPLING

KODAK = Path(__file__).resolve().parents[1] / ".." / "shared" / "data" / "kodak"


def load(name: str, crop: int) -> np.ndarray:
    img = np.asarray(Image.open(KODAK / f"{name}.png").convert("RGB"))
    if crop:
        h, w = img.shape[:2]
        c = min(crop, h, w)
        y0, x0 = (h - c) // 2, (w - c) // 2
        img = img[y0 : y0 + c, x0 : x0 + c]
    return np.ascontiguousarray(img)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--images", nargs="+", default=["kodim01", "kodim04", "kodim08", "kodim15", "kodim19", "kodim23"])
    ap.add_argument("--crop", type=int, default=256, help="centre crop side (0: whole image)")
    ap.add_argument("--steps", type=int, default=600)
    ap.add_argument("--lmbdas", type=float, nargs="+", default=[4e-3, 1e-3, 2.5e-4])
    ap.add_argument("--enhance", type=int, default=0)
    ap.add_argument("--arm-hidden", type=int, default=CodecOptions.arm_hidden, help="ARM hidden width")
    ap.add_argument("--syn-hidden", type=int, default=CodecOptions.syn_hidden, help="synthesis hidden channels")
    ap.add_argument("--upsampling", default="bilinear", choices=list(UPSAMPLING))
    ap.add_argument("--quantizer", default="softround", choices=["softround", "gumbel"])
    ap.add_argument("--arch-candidates", nargs="*", default=[], metavar="ARM,SYN",
                    help="further (ARM hidden, synthesis hidden) pairs; the best file by MSE + lambda bpp is kept")
    ap.add_argument("--report", type=Path, nargs="+", default=None,
                    help="only print the BD table of these --json files (e.g. two halves of the image set)")
    ap.add_argument("--anchors", nargs="+", default=list(rd.ANCHORS))
    ap.add_argument("--json", type=Path, default=None)
    ap.add_argument("--html", type=Path, default=None)
    ap.add_argument("--png", type=Path, default=None, help="the RD figure as a PNG (needs chromium)")
    ap.add_argument("--replot", type=Path, nargs="+", default=None, help="only redraw the figure of these --json files")
    args = ap.parse_args()
    if args.report:
        report(args.report)
        return
    if args.replot:
        replot(args.replot, args.html, args.png, args.crop)
        return

    points: dict[str, dict[str, list[rd.RDPoint]]] = {}
    arch = ("" if (args.arm_hidden, args.syn_hidden) == (CodecOptions.arm_hidden, CodecOptions.syn_hidden)
            else f", arch {args.arm_hidden},{args.syn_hidden}")
    ups = "" if args.upsampling == "bilinear" else f", {args.upsampling.replace('_', ' ')} upsampling"
    ours = (f"INR (steps {args.steps}{arch}{ups}{', enh ' + str(args.enhance) if args.enhance else ''}, {args.quantizer}"
            f"{', candidates ' + ' '.join(args.arch_candidates) if args.arch_candidates else ''})")
    extra: list[dict] = []
    cands = parse_arch_candidates(" ".join(args.arch_candidates))
    for name in args.images:
        img = load(name, args.crop)
        per = points.setdefault(name, {})
        for codec in args.anchors:
            per[codec] = rd.anchor_curve(codec, img)
        per[ours] = []
        for lm in args.lmbdas:
            opts = CodecOptions(lmbda=lm, steps=args.steps, enhance=args.enhance, quantizer=args.quantizer,
                                arm_hidden=args.arm_hidden, syn_hidden=args.syn_hidden,
                                upsampling=args.upsampling, arch_candidates=cands)
            res = encode_image(img, opts)
            t0 = time.perf_counter()
            out = decode(res.data)
            dt = time.perf_counter() - t0
            assert np.array_equal(out, res.decoded)
            h, w = img.shape[:2]
            pt = rd.RDPoint(ours, lm, len(res.data), 8 * len(res.data) / (h * w), rd.psnr(out, img),
                            rd.ms_ssim(out, img), res.encode_seconds, dt)
            per[ours].append(pt)
            extra.append({"image": name, "lmbda": lm, "estimated_bits": res.estimated_bits,
                          "file_bits": 8 * len(res.data), "steps": res.steps,
                          "arm_hidden": res.arch.arm_hidden, "syn_hidden": res.arch.syn_hidden,
                          "upsampling": res.arch.upsampling})
            print(f"<!-- {name} lambda={lm:g}: {pt.bpp:.3f} bpp {pt.psnr:.2f} dB, est/file "
                  f"{res.estimated_bits['total'] / (8 * len(res.data)):.4f}, enc {pt.encode_s:.0f} s, "
                  f"dec {dt:.2f} s -->", flush=True)

    crop = f"centre {args.crop}x{args.crop} crop" if args.crop else "full image"
    print(f"\nKodak {', '.join(args.images)} ({crop}); {platform.processor() or platform.machine()}; "
          f"{time.strftime('%Y-%m-%d')}\n")
    print("| image | codec | setting | bytes | bpp | PSNR dB | MS-SSIM | encode s | decode s |")
    print("|---|---|---|---|---|---|---|---|---|")
    for name, per in points.items():
        for codec, pts in per.items():
            for p in pts:
                setting = f"lambda {p.quality:g}" if codec == ours else f"q {p.quality:g}"
                print(f"| {name} | {codec} | {setting} | {p.num_bytes} | {p.bpp:.3f} | {p.psnr:.2f} | "
                      f"{p.ms_ssim:.4f} | {p.encode_s:.2f} | {p.decode_s:.3f} |")
    print("\n| ours vs anchor | mean BD-rate % (PCHIP) | mean BD-PSNR dB | images with overlap |")
    print("|---|---|---|---|")
    for codec in args.anchors:
        bdr, bdp = [], []
        for per in points.values():
            a, o = per[codec], per[ours]
            try:
                bdr.append(rd.bd_rate([p.bpp for p in a], [p.psnr for p in a],
                                      [p.bpp for p in o], [p.psnr for p in o]))
            except Exception:
                pass
            try:
                bdp.append(rd.bd_psnr([p.bpp for p in a], [p.psnr for p in a],
                                      [p.bpp for p in o], [p.psnr for p in o]))
            except Exception:
                pass
        r = f"{np.mean(bdr):+.1f}" if bdr else "n/a"
        p_ = f"{np.mean(bdp):+.2f}" if bdp else "n/a"
        print(f"| {codec} | {r} | {p_} | {len(bdr)}/{len(points)} (rate), {len(bdp)}/{len(points)} (PSNR) |")
    enc = [p.encode_s for per in points.values() for p in per[ours]]
    dec = [p.decode_s for per in points.values() for p in per[ours]]
    print(f"\nours: encode {np.mean(enc):.0f} s mean ({max(enc):.0f} s max) per image per rate, "
          f"decode {np.mean(dec):.2f} s mean ({max(dec):.2f} s max)")
    if args.json:
        args.json.write_text(json.dumps({
            "crop": crop, "steps": args.steps,
            "points": {n: {c: [p.as_dict() for p in pts] for c, pts in per.items()} for n, per in points.items()},
            "ours": extra}, indent=1))
    if args.html or args.png:
        write_figure(points, [*args.anchors, ours], args.images, crop, args.html, args.png)


def write_figure(points: dict, codecs: list[str], images: list[str], crop: str,
                 html: Path | None, png: Path | None) -> None:
    """The plotly RD figure of the mean curves as HTML and / or a PNG (the HTML screenshotted by
    headless Chromium through playwright: plotly's own PNG export needs kaleido, not installed)."""
    mean_curves = {}
    for codec in codecs:
        n = len(points[images[0]][codec])
        mean_curves[codec] = [
            rd.RDPoint(codec, points[images[0]][codec][i].quality,
                       int(np.mean([points[im][codec][i].num_bytes for im in points])),
                       float(np.mean([points[im][codec][i].bpp for im in points])),
                       float(np.mean([points[im][codec][i].psnr for im in points])),
                       float(np.mean([points[im][codec][i].ms_ssim for im in points])), 0.0, 0.0)
            for i in range(n)]
    fig = rd.rd_figure(mean_curves, title=f"Kodak ({crop}), mean over {len(points)} images")
    fig.update_xaxes(range=[0, 2.5])
    out = html or png.with_suffix(".html")
    fig.write_html(out)
    if png:
        from playwright.sync_api import sync_playwright

        with sync_playwright() as pw:
            browser = pw.chromium.launch(executable_path="/usr/bin/chromium", args=["--no-sandbox"])
            page = browser.new_page(viewport={"width": 960, "height": 620})
            page.goto(Path(out).resolve().as_uri())
            page.wait_for_selector(".main-svg")
            page.screenshot(path=str(png))
            browser.close()
        if not html:
            Path(out).unlink()


def report(paths: list[Path]) -> None:
    """BD-rate / BD-PSNR of our curve against each anchor, per image and mean, over the images of
    several ``--json`` files, and which architecture each file chose."""
    points, extra, _ = load_results(paths)
    ours = next(c for c in next(iter(points.values())) if c.startswith("INR"))
    anchors = [c for c in next(iter(points.values())) if c != ours]
    print("| image | " + " | ".join(f"vs {a}" for a in anchors) + " |")
    print("|---|" + "---|" * len(anchors))
    table: dict[str, list[float]] = {a: [] for a in anchors}
    for n, per in points.items():
        o = per[ours]
        cells = []
        for a in anchors:
            v = rd.bd_rate([p.bpp for p in per[a]], [p.psnr for p in per[a]], [p.bpp for p in o], [p.psnr for p in o])
            table[a].append(v)
            cells.append(f"{v:+.1f} %")
        print(f"| {n} | " + " | ".join(cells) + " |")
    print("| **mean** | " + " | ".join(f"**{np.mean(table[a]):+.1f} %**" for a in anchors) + " |")
    enc = [p.encode_s for per in points.values() for p in per[ours]]
    ratio = [e["estimated_bits"]["total"] / e["file_bits"] for e in extra]
    wshare = [e["estimated_bits"]["weights"] / e["file_bits"] for e in extra]
    print(f"\nencode {np.mean(enc):.0f} s mean ({max(enc):.0f} s max) per image per rate; estimate / file "
          f"{min(ratio):.4f}-{max(ratio):.4f}; weights {100 * min(wshare):.0f}-{100 * max(wshare):.0f} % of the file")
    chosen = [f"{e['image']} {e['lmbda']:g}: {e.get('arm_hidden', '?')}/{e.get('syn_hidden', '?')}" for e in extra]
    print("architecture (ARM hidden / synthesis hidden) per file: " + ", ".join(chosen))


def load_results(paths: list[Path]) -> tuple[dict, list, str | None]:
    """Points (image -> codec -> RDPoints), our per-file extras and the crop label, merged over
    several ``--json`` files (e.g. two halves of the image set run in two processes)."""
    points: dict = {}
    extra: list = []
    crop = None
    for path in paths:
        d = json.loads(path.read_text())
        for n, per in d["points"].items():
            points[n] = {c: [rd.RDPoint(**p) for p in pts] for c, pts in per.items()}
        extra += d["ours"]
        crop = crop or d.get("crop")
    return points, extra, crop


def replot(paths: list[Path], html: Path | None, png: Path | None, crop_px: int) -> None:
    """The figure again from ``--json`` files (no encoding; ``crop_px`` names the crop of files
    written before the JSON recorded it)."""
    points, _, crop = load_results(paths)
    crop = crop or (f"centre {crop_px}x{crop_px} crop" if crop_px else "full image")
    write_figure(points, list(next(iter(points.values()))), list(points), crop, html, png)

if __name__ == "__main__":
    main()
