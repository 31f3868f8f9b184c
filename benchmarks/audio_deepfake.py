"""Audio deepfake detection on the synthetic espeak-ng / vocoder set: EER per front-end x
RawBoost, seen and held-out spoof methods, single systems vs score ensembles; Grad-CAM RCQ per
region type on partial spoofs; training time. Prints markdown rows.

The data set (splatlab.plugins.inspect.audio.synth) is made here: bona fide = espeak-ng voices
(``--engines`` adds sung-like espeak-ng, flite and Festival; ``--human-test`` adds alsa-utils'
human recordings to the test splits), spoofs = Griffin-Lim / WORLD / LPC resynthesis, LPC held
out of training by default. With several engines, the held-out EER is also printed per engine. "SSL" is a
tiny WavLM trained from random initialisation (no pretrained weights on this machine).
Needs espeak-ng (`apt-get install -y espeak-ng`; the other engines: `flite festival
festvox-kallpc16k alsa-utils`) and optionally pyworld. Usage:

    python benchmarks/audio_deepfake.py [--archs lfcc_aasist ssl_aasist] [--seeds 0 1]
        [--rawboost 3] [--epochs 12] [--n-train 96] [--seconds 1] [--save detector.pt]
        [--engines espeak,sung,flite,festival] [--human-test] [--rawboost-only]
"""

from __future__ import annotations

import argparse
import pickle
import platform
import time
from pathlib import Path

import numpy as np
import torch

from splatlab.plugins.inspect.audio.detector import (
    TrainConfig,
    build_detector,
    default_config,
    save_detector,
    score_waves,
    train_detector,
)
from splatlab.plugins.inspect.audio.gradcam import REGION_TYPES, gradcam_time, rcq, region_masks
from splatlab.plugins.inspect.audio.metrics import compute_eer, eer_from_labels, ensemble_scores
from splatlab.plugins.inspect.audio.synth import engine_of, make_dataset, speech_frames
from splatlab.utils import atomic_write


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--archs", nargs="+", default=["lfcc_aasist", "ssl_aasist"])
    ap.add_argument("--seeds", nargs="+", type=int, default=[0, 1])
    ap.add_argument("--rawboost", type=int, default=3, help="RawBoost algorithm of the +RB rows")
    ap.add_argument("--rawboost-prob", type=float, default=1.0,
                    help="probability a training clip is augmented in the +RB rows (1 = every clip, "
                         "the reference)")
    ap.add_argument("--epochs", type=int, default=12)
    ap.add_argument("--loss", default="ce", choices=("ce", "focal"), help="training loss (focal: SVDD 2024)")
    ap.add_argument("--n-train", type=int, default=96)
    ap.add_argument("--n-test", type=int, default=48)
    ap.add_argument("--n-partial", type=int, default=24)
    ap.add_argument("--heldout", default="lpc")
    ap.add_argument("--seconds", type=float, default=1.0, help="clip length")
    ap.add_argument("--threads", type=int, default=1, help="torch threads (1 avoids contention)")
    ap.add_argument("--save", default="", help="write the LFCC + RawBoost seed-0 detector here")
    ap.add_argument("--cache", default="", help="pickle of the data set (made once, then reused)")
    ap.add_argument("--engines", default="espeak",
                    help="comma-separated bona fide engines (espeak, sung, flite, festival)")
    ap.add_argument("--human-test", action="store_true",
                    help="add alsa-utils' human recordings (and their resyntheses) to the test splits")
    ap.add_argument("--rawboost-only", action="store_true",
                    help="train only the +RB rows (the rows without RawBoost are deterministic: "
                         "reuse them from a run with the same data and seeds)")
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    rbs = (args.rawboost,) if args.rawboost_only else (0, args.rawboost)

    t0 = time.perf_counter()
    if args.cache and Path(args.cache).is_file():
        with open(args.cache, "rb") as f:
            ds = pickle.load(f)
    else:
        ds = make_dataset(
            args.n_train,
            args.n_test,
            args.n_partial,
            seconds=args.seconds,
            heldout=args.heldout,
            seed=0,
            engines=args.engines.split(","),
            human_test=args.human_test,
        )
        if args.cache:
            with atomic_write(args.cache, "wb") as f:
                pickle.dump(ds, f)
    t_data = time.perf_counter() - t0
    print(
        f"data: {len(ds.train)} train clips (methods {', '.join(ds.train_methods)}), "
        f"{len(ds.test_seen)} seen-test, {len(ds.test_heldout)} held-out-test "
        f"({ds.heldout_method}), {len(ds.partial)} partial; made in {t_data:.0f} s"
    )
    print(f"machine: {platform.processor() or platform.machine()}, torch threads {args.threads}")
    xtr = [u.audio for u in ds.train]
    ytr = [u.label for u in ds.train]
    seen_x, seen_y = [u.audio for u in ds.test_seen], np.array([u.label for u in ds.test_seen])
    held_x, held_y = (
        [u.audio for u in ds.test_heldout],
        np.array([u.label for u in ds.test_heldout]),
    )

    systems: dict[tuple[str, int, int], dict] = {}
    for arch in args.archs:
        for rb in rbs:
            for seed in args.seeds:
                torch.manual_seed(seed)
                model = build_detector(arch, default_config(arch))
                cfg = TrainConfig(epochs=args.epochs, rawboost_algo=rb, seed=seed, loss=args.loss,
                                  rawboost_prob=args.rawboost_prob)
                info = train_detector(model, xtr, ytr, cfg)
                res = {
                    "model": model,
                    "train_s": info["seconds"],
                    "seen": score_waves(model, seen_x),
                    "held": score_waves(model, held_x),
                    "ref": score_waves(model, xtr),
                }
                res["eer_seen"] = eer_from_labels(res["seen"], seen_y)
                res["eer_held"] = eer_from_labels(res["held"], held_y)
                systems[(arch, rb, seed)] = res
                print(
                    f"  {arch} RB{rb} seed {seed}: train {info['seconds']:.0f} s, "
                    f"final loss {info['final_loss']:.3f}, EER seen {100 * res['eer_seen']:.2f} %, "
                    f"held-out {100 * res['eer_held']:.2f} %"
                )
                if args.save and arch == "lfcc_aasist" and rb == args.rawboost and seed == 0:
                    seen_s = res["seen"]
                    meta = {
                        "threshold": compute_eer(seen_s[seen_y == 1], seen_s[seen_y == 0])[1],
                        "clip_samples": len(xtr[0]),
                        "eer_seen": res["eer_seen"],
                        "eer_heldout": res["eer_held"],
                        "train_methods": list(ds.train_methods),
                        "heldout_method": ds.heldout_method,
                        "rawboost_algo": rb,
                        "rawboost_prob": args.rawboost_prob,
                        "epochs": args.epochs,
                        "data": f"synthetic {args.engines} bona fide vs vocoder resynthesis",
                    }
                    save_detector(args.save, model, arch, default_config(arch), meta)
                    print(f"  saved {args.save}")

    def fused(keys):
        seen = ensemble_scores(
            [systems[k]["seen"] for k in keys], reference=[systems[k]["ref"] for k in keys]
        )
        held = ensemble_scores(
            [systems[k]["held"] for k in keys], reference=[systems[k]["ref"] for k in keys]
        )
        return eer_from_labels(seen, seen_y), eer_from_labels(held, held_y)

    def rb_name(rb: int) -> str:
        if not rb:
            return "none"
        return f"algo {rb}" + (f", p {args.rawboost_prob:g}" if args.rawboost_prob < 1 else "")

    print()
    print("| front-end | RawBoost | system | EER seen (%) | EER held-out (%) | train s / model |")
    print("|---|---|---|---|---|---|")
    for arch in args.archs:
        for rb in rbs:
            keys = [(arch, rb, s) for s in args.seeds]
            rbn = rb_name(rb)
            t_mean = np.mean([systems[k]["train_s"] for k in keys])
            for k in keys:
                r = systems[k]
                print(
                    f"| {arch} | {rbn} | single (seed {k[2]}) | {100 * r['eer_seen']:.2f} | "
                    f"{100 * r['eer_held']:.2f} | {r['train_s']:.0f} |"
                )
            if len(keys) > 1:
                es, eh = fused(keys)
                print(
                    f"| {arch} | {rbn} | ensemble of {len(keys)} seeds | {100 * es:.2f} | "
                    f"{100 * eh:.2f} | {t_mean:.0f} |"
                )
    if len(args.archs) > 1:
        for rb in rbs:
            keys = [(a, rb, s) for a in args.archs for s in args.seeds]
            es, eh = fused(keys)
            rbn = rb_name(rb)
            print(
                f"| {' + '.join(args.archs)} | {rbn} | ensemble of {len(keys)} | {100 * es:.2f} "
                f"| {100 * eh:.2f} | - |"
            )

    # held-out EER per bona fide engine (each engine's bona fide clips against the spoofs made
    # from them): does the detector generalise across the voices?
    held_eng = np.array([engine_of(u.voice) for u in ds.test_heldout])
    engines = [e for e in dict.fromkeys(held_eng)]
    if len(engines) > 1:
        def by_engine(scores):
            return [100 * eer_from_labels(scores[held_eng == e], held_y[held_eng == e]) for e in engines]

        print()
        print("| front-end | RawBoost | system | " + " | ".join(
            f"held-out EER % {e} ({int(np.sum((held_eng == e) & (held_y == 1)))} bona fide)"
            for e in engines) + " |")
        print("|---|---|---|" + "---|" * len(engines))
        for arch in args.archs:
            for rb in rbs:
                keys = [(arch, rb, s) for s in args.seeds]
                rows = [("mean single", np.mean([by_engine(systems[k]["held"]) for k in keys], 0))]
                if len(keys) > 1:
                    fused_held = ensemble_scores(
                        [systems[k]["held"] for k in keys], reference=[systems[k]["ref"] for k in keys]
                    )
                    rows.append((f"ensemble of {len(keys)}", by_engine(fused_held)))
                for name, vals in rows:
                    print(f"| {arch} | {rb_name(rb)} | {name} | " + " | ".join(f"{v:.2f}" for v in vals) + " |")

    # Grad-CAM RCQ on partial spoofs
    print()
    print("| detector | " + " | ".join(f"RCQ {r}" for r in REGION_TYPES) + " |")
    print("|---|" + "---|" * len(REGION_TYPES))
    for arch in args.archs:
        for rb in rbs:
            model = systems[(arch, rb, args.seeds[0])]["model"]
            cams, masks = [], []
            for u in ds.partial:
                cam, _ = gradcam_time(model, u.audio, n_frames=len(u.frame_labels))
                cams.append(cam)
                masks.append(region_masks(u.frame_labels, speech_frames(u.audio)))
            q = rcq(cams, masks)
            rbn = f"RB{rb}" if rb else "no RB"
            cells = " | ".join(
                f"{q[r]['rcq']:+.2f} ({100 * q[r]['frame_share']:.0f} % of frames)"
                for r in REGION_TYPES
            )
            print(f"| {arch} {rbn} seed {args.seeds[0]} | {cells} |")
    print(f"\ntotal {time.perf_counter() - t0:.0f} s")


if __name__ == "__main__":
    main()
