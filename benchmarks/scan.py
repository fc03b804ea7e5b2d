"""Selective-scan speed and memory, every backend side by side in one run (figures printed, no asserts).

    python benchmarks/scan.py [--shapes S1,S2,S3] [--repeats 5] [--threads 2]

For each shape (batch, channels, state, length): forward and forward+backward median seconds and peak
resident memory above the inputs, for our `cpu` and `torch` backends, the sequential `reference` (up to
length 4096), mambapy's parallel scan when installed, and the floor: `torch.exp` over B x D x N x L
elements (the scan cannot do less work than that). Peak memory is Linux's VmHWM, reset before each
measurement through /proc/self/clear_refs.
"""

from __future__ import annotations

import argparse
import statistics
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path

import torch
import torch.nn.functional as F

from ssmseg.ssm.scan import selective_scan

SHAPES = {"S1": (8, 64, 16, 1024), "S2": (8, 96, 16, 4096), "S3": (4, 192, 16, 16384)}


def _status(field: str) -> int:
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith(field):
            return int(line.split()[1]) * 1024
    return 0


def peak_bytes(label: str, shape: str, threads: int) -> int:
    """Peak resident memory one forward+backward adds above its inputs, measured in a fresh process
    (in this one, memory freed by earlier runs would be reused and hide the peak)."""
    root = str(Path(__file__).resolve().parents[1])
    code = f"import sys; sys.path.insert(0, {root!r}); import benchmarks.scan as s; "
    code += f"s.child_peak({label!r}, {shape!r}, {threads})"
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    try:
        return int(proc.stdout.strip().splitlines()[-1])
    except (ValueError, IndexError):
        return -1


def child_peak(label: str, shape: str, threads: int) -> None:
    torch.set_num_threads(threads)
    fn = {"cpu": ours("cpu"), "torch": ours("torch"), "mambapy": mambapy_scan(), "reference": ours("reference")}[label]
    warm = make_inputs(1, 2, 4, 8)
    fn(warm).sum().backward()  # builds/loads the kernel, imports
    t = make_inputs(*SHAPES[shape])
    Path("/proc/self/clear_refs").write_text("5")
    base = _status("VmRSS")
    fn(t).sum().backward()
    print(_status("VmHWM") - base)


def median_seconds(fn: Callable[[], object], repeats: int) -> float:
    fn()  # warm-up: kernel build, allocator
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        fn()
        times.append(time.perf_counter() - start)
    return statistics.median(times)


def make_inputs(b: int, d: int, n: int, L: int) -> dict[str, torch.Tensor]:
    g = torch.Generator().manual_seed(0)
    return {
        "u": torch.randn(b, d, L, generator=g).requires_grad_(),
        "delta": (torch.randn(b, d, L, generator=g) * 0.5 - 1).requires_grad_(),
        "A": (-torch.rand(d, n, generator=g) - 0.1).requires_grad_(),
        "B": torch.randn(b, 1, n, L, generator=g).requires_grad_(),
        "C": torch.randn(b, 1, n, L, generator=g).requires_grad_(),
        "D": torch.randn(d, generator=g).requires_grad_(),
        "z": torch.randn(b, d, L, generator=g).requires_grad_(),
        "delta_bias": torch.randn(d, generator=g).requires_grad_(),
    }


def ours(backend: str) -> Callable[[dict], torch.Tensor]:
    return lambda t: selective_scan(**t, delta_softplus=True, backend=backend)


def mambapy_scan() -> Callable[[dict], torch.Tensor] | None:
    """The same computation through mambapy's parallel (Blelloch) scan, the usual pure-PyTorch choice."""
    try:
        from mambapy.pscan import pscan
    except ImportError:
        return None

    def run(t: dict) -> torch.Tensor:
        delta = F.softplus(t["delta"] + t["delta_bias"][:, None]).transpose(1, 2)  # (b, L, d)
        decay = torch.exp(delta.unsqueeze(-1) * t["A"])  # (b, L, d, n)
        drive = (delta * t["u"].transpose(1, 2)).unsqueeze(-1) * t["B"][:, 0].transpose(1, 2).unsqueeze(2)
        states = pscan(decay, drive)  # (b, L, d, n)
        y = (states @ t["C"][:, 0].transpose(1, 2).unsqueeze(-1)).squeeze(-1).transpose(1, 2)
        y = y + t["u"] * t["D"][:, None]
        return y * F.silu(t["z"])

    return run


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--shapes", default="S1,S2,S3")
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--reference-max-length", type=int, default=4096)
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    print(f"torch {torch.__version__}, {args.threads} threads, median of {args.repeats}")
    for name in args.shapes.split(","):
        b, d, n, L = SHAPES[name]
        t = make_inputs(b, d, n, L)
        io_bytes = sum(v.numel() * 4 for v in t.values()) * 2 + b * d * L * 4  # inputs, their grads, output
        x = torch.randn(b * d * L, n)
        y = torch.empty_like(x)
        floor = median_seconds(lambda x=x, y=y: torch.exp(x, out=y), args.repeats)
        del x, y
        print(
            f"\n{name} (batch {b}, channels {d}, state {n}, length {L}); exp floor {floor * 1e3:.1f} ms; "
            f"inputs+outputs+grads {io_bytes / 2**20:.0f} MiB"
        )
        print(f"{'backend':<10} {'fwd ms':>9} {'x floor':>8} {'fwd+bwd ms':>11} {'peak MiB':>9} {'x io':>6}")
        candidates = {"cpu": ours("cpu"), "torch": ours("torch"), "mambapy": mambapy_scan()}
        if args.reference_max_length >= L:
            candidates["reference"] = ours("reference")
        results = {}
        for label, fn in candidates.items():
            if fn is None:
                print(f"{label:<10} not installed")
                continue
            reps = 1 if label == "reference" else args.repeats

            def fwd(fn=fn, t=t):
                with torch.no_grad():
                    fn(t)

            def fwd_bwd(fn=fn, t=t):
                fn(t).sum().backward()
                for v in t.values():
                    v.grad = None

            try:
                f_s, fb_s = median_seconds(fwd, reps), median_seconds(fwd_bwd, reps)
                peak = peak_bytes(label, name, args.threads)
            except Exception as exc:  # a backend that cannot run here is reported, not fatal
                print(f"{label:<10} failed: {type(exc).__name__}: {str(exc)[:80]}")
                continue
            results[label] = fb_s
            print(
                f"{label:<10} {f_s * 1e3:9.1f} {f_s / floor:8.2f} {fb_s * 1e3:11.1f} "
                f"{peak / 2**20:9.0f} {peak / io_bytes:6.2f}"
            )
        for base in ("mambapy", "reference"):
            for label in ("cpu", "torch"):
                if base in results and label in results:
                    print(f"{label} fwd+bwd is {results[base] / results[label]:.1f}x faster than {base}")


if __name__ == "__main__":
    main()
