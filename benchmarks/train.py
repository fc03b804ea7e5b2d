"""Training speed and memory on the CPU (figures printed, no asserts).

    python benchmarks/train.py [--bands 32] [--classes 5] [--size 64] [--batch 8] [--steps 6] [--threads 2]
    python benchmarks/train.py --threads-under-load [--model ssmu_net] [--load N]

For each registered model at its default sizes: training samples per second (forward, backward, AdamW
step) on size x size patches, and peak resident memory of a fresh process doing it. Then a UNet whose
width is chosen to match SSMU-Net's parameter count, the ratio of their speeds, and the wall time of
`ssmseg train --preset fast` on the built-in dataset.

``--threads-under-load`` instead starts N busy-loop processes (default: one per core) and prints one model's
training samples/s at 1 thread, at the usable cores (affinity, cgroup quota), and at all logical cores, then
what ``runtime.threads: auto`` chooses under that load: what a thread count taken from the core count costs on
a shared machine.
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def child(name: str, width: int, bands: int, classes: int, size: int, batch: int, steps: int, threads: int) -> None:
    import torch

    from ssmseg.config.schema import ModelConfig
    from ssmseg.models.registry import build_model, count_parameters

    torch.set_num_threads(threads)
    model = build_model(ModelConfig(name=name, width=width), bands, classes)
    opt = torch.optim.AdamW(model.parameters(), 1e-3)
    x, y = torch.randn(batch, bands, size, size), torch.randint(0, classes, (batch, size, size))

    def step() -> None:
        loss = torch.nn.functional.cross_entropy(model(x), y)
        opt.zero_grad()
        loss.backward()
        opt.step()

    step()  # warm-up (kernel build, allocator)
    start = time.perf_counter()
    for _ in range(steps):
        step()
    seconds = time.perf_counter() - start
    hwm = next(
        int(ln.split()[1]) for ln in Path("/proc/self/status").read_text().splitlines() if ln.startswith("VmHWM")
    )
    print(f"{batch * steps / seconds} {hwm * 1024} {count_parameters(model)}")


def measure(name: str, width: int, args: argparse.Namespace, threads: int | None = None) -> tuple[float, int, int]:
    threads = args.threads if threads is None else threads
    call = f"{name!r}, {width}, {args.bands}, {args.classes}, {args.size}, {args.batch}, {args.steps}, {threads}"
    code = f"import sys; sys.path.insert(0, {str(ROOT)!r}); import benchmarks.train as b; b.child({call})"
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    if proc.returncode:
        raise RuntimeError(proc.stderr[-1500:])
    speed, peak, params = proc.stdout.split()
    return float(speed), int(peak), int(params)


def matching_unet_width(target: int, args: argparse.Namespace) -> int:
    from ssmseg.config.schema import ModelConfig
    from ssmseg.models.registry import build_model, count_parameters

    def params(w: int) -> int:
        return count_parameters(build_model(ModelConfig(name="unet", width=w), args.bands, args.classes))

    return min(range(4, 129), key=lambda w: abs(params(w) - target))


def threads_under_load(args: argparse.Namespace) -> None:
    """samples/s at 1 thread, auto and all cores while ``args.load`` busy loops hold the cores."""
    from ssmseg.engine.cpus import free_of_load, usable_cpus

    budget = usable_cpus()
    cores = os.cpu_count() or 1
    n = args.load if args.load is not None else cores
    settings = {"1 thread": 1, f"usable ({budget.threads})": budget.threads, f"all cores ({cores})": cores}
    print(f"{args.model}, {args.batch} x {args.bands} x {args.size} x {args.size}; auto: {budget.why}")
    print(f"load average before: {os.getloadavg()[0]:.2f}; starting {n} busy-loop processes")
    busy = [subprocess.Popen([sys.executable, "-c", "while True: pass"]) for _ in range(n)]
    try:
        time.sleep(1.0)
        for label, threads in settings.items():
            speed = measure(args.model, 32, args, threads)[0]
            print(f"{label:<16} {speed:8.1f} samples/s")
        free, busy = free_of_load(budget.threads)
        print(f"auto chooses {free} now ({busy or 'load not above the usable cores'})")
    finally:
        for proc in busy:
            proc.kill()
            proc.wait()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    for flag, default in (
        ("--bands", 32),
        ("--classes", 5),
        ("--size", 64),
        ("--batch", 8),
        ("--steps", 6),
        ("--threads", 2),
    ):
        parser.add_argument(flag, type=int, default=default)
    parser.add_argument("--skip-fast", action="store_true", help="do not time the fast preset")
    parser.add_argument("--threads-under-load", action="store_true", help="1 thread vs auto vs all cores, loaded")
    parser.add_argument("--model", default="ssmu_net", help="the model of --threads-under-load")
    parser.add_argument("--load", type=int, default=None, help="busy-loop processes (default: one per core)")
    args = parser.parse_args()
    if args.threads_under_load:
        threads_under_load(args)
        return
    from ssmseg.models.registry import MODELS

    shape = f"{args.batch} x {args.bands} x {args.size} x {args.size}"
    print(f"{shape} patches, {args.classes} classes, {args.threads} threads")
    print(f"{'model':<18} {'params':>10} {'samples/s':>10} {'peak MB':>8}")
    speeds = {}
    for name in MODELS:
        speed, peak, params = measure(name, 32, args)
        speeds[name] = (speed, params)
        print(f"{name:<18} {params:>10,} {speed:10.1f} {peak / 1e6:8.0f}")
    width = matching_unet_width(speeds["ssmu_net"][1], args)
    speed, peak, params = measure("unet", width, args)
    print(f"{'unet (width ' + str(width) + ')':<18} {params:>10,} {speed:10.1f} {peak / 1e6:8.0f}")
    print(
        f"ssmu_net trains at {speeds['ssmu_net'][0] / speed:.2f}x the samples/s of a UNet with the same parameter count"
    )
    if not args.skip_fast:
        with tempfile.TemporaryDirectory() as tmp:
            env = {**os.environ, "PYTHONPATH": str(ROOT)}
            start = time.perf_counter()
            subprocess.run([sys.executable, "-m", "ssmseg", "train", "--preset", "fast", "--out", tmp], check=True,
                           capture_output=True, env=env)  # fmt: skip
            print(f"ssmseg train --preset fast: {time.perf_counter() - start:.1f} s wall (dataset already prepared)")


if __name__ == "__main__":
    main()
