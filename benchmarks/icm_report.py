"""Markdown tables of an icm_bench.py result file.

    python benchmarks/icm_report.py benchmarks/results/icm_run.json
"""

from __future__ import annotations

import json
import math
import sys


def _f(v: object, fmt: str = ".4f") -> str:
    if v is None or (isinstance(v, float) and math.isnan(v)):
        return "n/a"
    return format(v, fmt) if isinstance(v, (int, float)) else str(v)


def markdown(res: dict) -> str:
    out = [f"Clean (uncompressed) test mIoU of the frozen task net: {res['task_miou_clean']:.4f}", "",
           "| codec | knob (lambda or task weight w) | bpp (bytes) | mIoU | PSNR (dB) | "
           "checkerboard (dB) | ARR levels in view 0 | train s |",
           "|---|---|---|---|---|---|---|---|"]
    for name, pts in res["curves"].items():
        for p in sorted(pts, key=lambda p: p["bpp"]):
            out.append(f"| {name} | {p['param']:g} | {_f(p['bpp'])} | {_f(p['miou'])} | "
                       f"{_f(p['psnr'], '.2f')} | {_f(p['checkerboard_db'], '.2f')} | "
                       f"{p.get('levels_in_view0', '')} | {p['train_s']:.0f} |")
    out += ["", "| BD-rate at equal mIoU (pchip, rd.bd_rate) | % |", "|---|---|"]
    for k, v in res["bd_rate_pct"].items():
        out.append(f"| {k} | {_f(v, '+.1f') if v is not None else 'undefined (no mIoU overlap)'} |")
    b = res["bridge"]
    out += ["", f"Bridge on the {b['codec']} codec (bitstreams byte-identical: "
                f"{b['bitstreams_identical']}):", "",
            "| decoder | bpp | mIoU | PSNR (dB) | MS-SSIM | checkerboard (dB) |",
            "|---|---|---|---|---|---|"]
    for k in ("before", "after"):
        e = b[k]
        out.append(f"| {'machine (ICM)' if k == 'before' else 'human (bridge)'} | {_f(e['bpp'])} | "
                   f"{_f(e['miou'])} | {_f(e['psnr'], '.2f')} | {_f(e['ms_ssim'])} | "
                   f"{_f(e['checkerboard_db'], '.2f')} |")
    out += ["", f"PSNR gain {b['psnr_gain_db']:+.2f} dB, mIoU drop {b['miou_drop_points']:+.2f} "
                f"points."]
    if "kodak_base_codec" in res:
        k = res["kodak_base_codec"]
        out += ["", f"Base codec on Kodak ({', '.join(k['images'])}): {k['bpp']:.3f} bpp, "
                    f"{k['psnr']:.2f} dB; JPEG (q 10-80) on the same: "
                    + ", ".join(f"{b:.2f} bpp / {p:.2f} dB" for b, p in k["jpeg_curve_mean"])]
    t = res["times_s"]
    out += ["", "Training / total wall times (s): " + ", ".join(f"{k} {v:.0f}" for k, v in t.items())]
    return "\n".join(out)


if __name__ == "__main__":
    print(markdown(json.loads(open(sys.argv[1]).read())))
