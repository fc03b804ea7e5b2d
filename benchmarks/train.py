"""Training speed and memory on the CPU (figures printed, no asserts).

    python benchmarks/train.py [--bands 32] [--classes 5] [--size 64] [--batch 8] [--steps 6] [--threads 2]
    python benchmarks/train.py --threads-under-load [--model ssmu_net] [--load N]
    python benchmarks/train.py --interleave [--size 128] [--rounds 5] [--threads 1] [--against REV]

For each registered model at its default sizes: training samples per second (forward, backward, AdamW
step) on size x size patches, and peak resident memory of a fresh process doing it. Then a UNet whose
width is chosen to match SSMU-Net's parameter count, the ratio of their speeds, and the wall time of
`ssmseg train --preset fast` on the built-in dataset.

``--threads-under-load`` instead starts N busy-loop processes (default: one per core) and prints one model's
training samples/s at 1 thread, at the usable cores (affinity, cgroup quota), and at all logical cores, then
what ``runtime.threads: auto`` chooses under that load: what a thread count taken from the core count costs on
a shared machine.

``--interleave`` times SSMU-Net and the UNet of its parameter count in one process, one training step of each
in turn for ``--rounds`` rounds, and prints the ratio of their median samples/s: on a loaded machine both see
the same load, which separate processes do not. ``--against REV`` adds a third model: SSMU-Net with the
methods of ``SS2D``, ``SincBandFilters`` and ``SSMUNet`` as they were at git revision REV (same weights,
same parameter names), so an old and a new implementation are timed side by side, with the largest
difference of their logits on the batch.
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


OLD_CLASSES = {
    "ssmseg/ssm/ss2d.py": "SS2D",
    "ssmseg/models/layers/sinc.py": "SincBandFilters",
    "ssmseg/models/ssmu_net.py": "SSMUNet",
}


def methods_at(rev: str) -> dict[str, dict[str, object]]:
    """{class name: {method name: function}} of ``OLD_CLASSES`` as the files were at git revision ``rev``."""
    found = {}
    for path, name in OLD_CLASSES.items():
        proc = subprocess.run(["git", "show", f"{rev}:{path}"], cwd=ROOT, capture_output=True, text=True)
        if proc.returncode:
            raise SystemExit(f"--against {rev}: {proc.stderr.strip()}")
        space: dict[str, object] = {"__name__": f"_at_{name}"}
        exec(compile(proc.stdout, f"{rev}:{path}", "exec"), space)
        cls = space[name]
        found[name] = {k: v for k, v in vars(cls).items() if callable(v) and k != "__init__"}
    return found


def with_methods(model, methods: dict[str, dict[str, object]]):
    """``model`` with every module of a class in ``methods`` running those methods instead of its own."""
    import types

    for module in model.modules():
        for name, fn in methods.get(type(module).__name__, {}).items():
            setattr(module, name, types.MethodType(fn, module))
    return model


def interleave(args: argparse.Namespace) -> None:
    """SSMU-Net vs the UNet of its parameter count (and SSMU-Net at ``--against``), steps taken in turn."""
    import torch

    from ssmseg.config.schema import ModelConfig
    from ssmseg.models.registry import build_model, count_parameters

    torch.set_num_threads(args.threads)

    def build(name: str, width: int):
        torch.manual_seed(0)
        return build_model(ModelConfig(name=name, width=width), args.bands, args.classes)

    models = {"ssmu_net": build("ssmu_net", 32)}
    width = matching_unet_width(count_parameters(models["ssmu_net"]), args)
    models[f"unet (width {width})"] = build("unet", width)
    if args.against:
        models[f"ssmu_net at {args.against}"] = with_methods(build("ssmu_net", 32), methods_at(args.against))
    x = torch.randn(args.batch, args.bands, args.size, args.size)
    y = torch.randint(0, args.classes, (args.batch, args.size, args.size))
    if args.against:
        with torch.no_grad():  # the spatial path (at the start the gate hides it from the logits)
            a, b = (m.eval().spatial_logits(x) for m in (models["ssmu_net"], models[f"ssmu_net at {args.against}"]))
        print(
            f"ssmu_net now vs at {args.against}: largest difference of the spatial logits {(a - b).abs().max():.2e} "
            f"(of values up to {b.abs().max():.2f}; eval mode)"
        )
    opts = {k: torch.optim.AdamW(m.train().parameters(), 1e-3) for k, m in models.items()}
    times: dict[str, list[float]] = {k: [] for k in models}

    def step(name: str) -> None:
        loss = torch.nn.functional.cross_entropy(models[name](x), y)
        opts[name].zero_grad()
        loss.backward()
        opts[name].step()

    for name in models:
        step(name)  # warm-up
    load = os.getloadavg()
    for _ in range(args.rounds):
        for name in models:
            start = time.perf_counter()
            step(name)
            times[name].append(time.perf_counter() - start)
    shape = f"{args.batch} x {args.bands} x {args.size} x {args.size}"
    print(f"{shape}, {args.classes} classes, {args.threads} thread(s), {args.rounds} rounds of interleaved steps")
    median = {k: sorted(v)[len(v) // 2] for k, v in times.items()}
    unet = median[f"unet (width {width})"]
    for name, m in models.items():
        print(
            f"{name:<28} {count_parameters(m):>10,} params {args.batch / median[name]:7.2f} samples/s "
            f"(median step {median[name]:.3f} s)  {unet / median[name]:.2f}x the unet"
        )
    print(f"load average before {load[0]:.2f} {load[1]:.2f}, after {os.getloadavg()[0]:.2f} {os.getloadavg()[1]:.2f}")


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
    parser.add_argument("--interleave", action="store_true", help="ssmu_net vs its unet, steps in turn, one process")
    parser.add_argument("--rounds", type=int, default=5, help="--interleave: steps per model")
    parser.add_argument("--against", default=None, help="--interleave: also ssmu_net as at this git revision")
    args = parser.parse_args()
    if args.interleave:
        interleave(args)
        return
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
            subprocess.run(
                [sys.executable, "-m", "ssmseg", "train", "--preset", "fast", "--out", tmp],
                check=True,
                capture_output=True,
                env=env,
            )
            print(f"ssmseg train --preset fast: {time.perf_counter() - start:.1f} s wall (dataset already prepared)")


if __name__ == "__main__":
    main()
