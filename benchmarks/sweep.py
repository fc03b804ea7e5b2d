"""Wall time of ``ssmseg sweep-steps`` and where it goes: model calls (reference and grid solves), metrics,
baselines (figures printed, no asserts).

    python benchmarks/sweep.py [--run RUN] [--preset fields_fast] [--epochs 1] [--fields 100] [--samples 8]
        [--solvers euler,midpoint,heun,rk4,dopri5] [--steps 1,2,4,8,16,32,50,100,200]
        [--baselines mean,nearest,linear,cubic,rbf,gp] [--threads 1] [--batch 16] [--out DIR]

Without --run, a model is trained first (its time printed apart) on the built-in sinusoid fields (1000
fields of 32x32, 200 of them in the test split) with --preset for --epochs epochs; while that preset is not
shipped, a stated stand-in: field_flow at small sizes on 256 fields per epoch. The sweep then runs on the
first --fields test fields with the given grid (defaults: the sweep.* defaults) and writes its folder under
--out (default: a temporary folder). The load average is printed beside: on a shared machine the figures
are only comparable within one run. --threads sets torch's threads for the model (metrics and baselines
always run on one).
"""

from __future__ import annotations

import argparse
import os
import tempfile
import time
from pathlib import Path

from ssmseg.config import build_config
from ssmseg.config.loading import available_presets
from ssmseg.experiments.sweep import sweep_steps
from ssmseg.experiments.train import train

STAND_IN = {
    "model": {"name": "field_flow", "width": 16, "depth": 2, "d_state": 4, "n_fourier": 16, "heads": 2},
    "data": {"batch_size": 8, "max_patches": 256},
    "reconstruction": {"observed": [0.05, 0.2], "val_steps": 4},
    "schedule": {"warmup_epochs": 0},
}


def train_run(args: argparse.Namespace, out: Path) -> Path:
    runtime = {"out_dir": str(out), "name": "bench", "device": "cpu", "threads": args.threads}
    base = {"task": {"name": "reconstruction"}, "train": {"epochs": args.epochs}, "runtime": runtime}
    if args.preset in available_presets():
        cfg, what = build_config(preset=args.preset, explicit=base), f"preset {args.preset}"
    else:
        cfg = build_config(explicit={**STAND_IN, **base})
        what = f"stand-in (no preset '{args.preset}' shipped yet): {STAND_IN['model']}"
    start = time.perf_counter()
    result = train(cfg)
    print(
        f"trained {what}, {args.epochs} epoch(s): {time.perf_counter() - start:.1f} s, best val/psnr "
        f"{result.best['value']:.2f} dB"
    )
    return result.run_dir


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--run", type=Path, default=None)
    p.add_argument("--preset", default="fields_fast")
    p.add_argument("--epochs", type=int, default=1)
    p.add_argument("--fields", type=int, default=100)
    p.add_argument("--samples", type=int, default=8)
    p.add_argument("--solvers", default=None)
    p.add_argument("--steps", default=None)
    p.add_argument("--baselines", default=None)
    p.add_argument("--threads", type=int, default=1)
    p.add_argument("--batch", type=int, default=16)
    p.add_argument("--out", type=Path, default=None)
    args = p.parse_args()
    out = args.out or Path(tempfile.mkdtemp(prefix="ssmseg-bench-sweep-"))
    print(f"load average before: {os.getloadavg()[0]:.2f} on {os.cpu_count()} cores; torch threads {args.threads}")
    run = args.run or train_run(args, out)
    sweep: dict[str, object] = {"max_fields": args.fields, "samples": args.samples, "batch_size": args.batch}
    for key in ("solvers", "steps", "baselines"):
        value = getattr(args, key)
        if value is not None:
            items = [s for s in value.split(",") if s]
            sweep[key] = [int(s) for s in items] if key == "steps" else items
    cfg = build_config(
        explicit={
            "task": {"name": "reconstruction"},
            "sweep": sweep,
            "runtime": {"device": "cpu", "threads": args.threads},
        }
    )
    start = time.perf_counter()
    result = sweep_steps(cfg, run, out=out / "sweep")
    wall = time.perf_counter() - start
    t, proto = result.timing, result.protocol
    model = t["reference_seconds"] + t["solve_seconds"]
    base = sum(b["seconds"] for b in result.baselines)
    print(
        f"\nsweep of {proto['model']} on {proto['fields']} fields {proto['field_size']}, K = {proto['samples']}, "
        f"{len(result.rows)} settings: {wall:.1f} s wall (load average after: {os.getloadavg()[0]:.2f})"
    )
    print(
        f"  model calls  {model:8.1f} s  {model / wall:5.1%}  ({t['model_calls']} calls of up to {args.batch} "
        f"fields, {1000 * model / max(t['model_calls'], 1):.1f} ms each)"
    )
    print(f"    reference  {t['reference_seconds']:8.1f} s         (dopri5, {t['reference_nfe']:.1f} NFE per solve)")
    for solver in dict.fromkeys(r["solver"] for r in result.rows):
        mine = [r for r in result.rows if r["solver"] == solver]
        nfe = sum(float(r["nfe"]) for r in mine)
        seconds = sum(r["seconds"] for r in mine)
        note = " (the reference, not solved again)" if solver == "dopri5" and seconds == t["reference_seconds"] else ""
        settings = f"{len(mine)} setting{'s' if len(mine) > 1 else ''}"
        print(f"    {solver:<10} {seconds:8.1f} s         ({settings}, {nfe:g} NFE per sample in all){note}")
    print(f"  metrics      {t['metrics_seconds']:8.1f} s  {t['metrics_seconds'] / wall:5.1%}")
    print(f"  baselines    {base:8.1f} s  {base / wall:5.1%}")
    for b in result.baselines:
        print(f"    {b['name']:<10} {b['seconds']:8.1f} s         ({1000 * b['seconds_per_field']:.1f} ms per field)")
    rest = wall - model - t["metrics_seconds"] - base
    print(f"  the rest     {rest:8.1f} s  {rest / wall:5.1%}  (loading, figures, files)")
    print("\nconclusions:")
    for line in result.conclusions:
        print(f"  - {line}")
    print(f"\nwrote {result.out}")


if __name__ == "__main__":
    main()
