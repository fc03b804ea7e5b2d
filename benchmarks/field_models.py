"""Field-reconstruction models: parameter counts and training speed, and an optional short training run
against linear interpolation (figures printed, no asserts).

    python benchmarks/field_models.py speed [--models flow_mamba,flow_attention,unet] [--sizes 32,64]
        [--batch 16] [--steps 5] [--threads 2] [--kw flow_mamba:d_model=48,n_layers=4] [--rounds 1]
    python benchmarks/field_models.py speed --models flow_mamba@8f79402,flow_mamba --rounds 3   # old vs new
    python benchmarks/field_models.py train --model flow_mamba [--kw ...] [--seconds 240] [--steps N] [--size 32]
        [--frac 0.1] [--batch 16] [--lr 2e-3]

speed: forward + backward + Adam step on random fields with 5-10% observed pixels (drawn per field); the
median of ``--steps`` timed steps after two warm-up steps, as samples/s (and the best step's). The load
average is printed beside: on a shared machine the figures are only comparable within one run. A model named
``NAME@REV`` is FieldFlow as it was at git revision REV (``ssmseg/models/field_flow.py`` read with ``git show``,
run against today's other modules), so old and new run side by side in one process; ``--rounds`` repeats the
whole list (interleaved) and the ratio of each model to the first is printed per size.

train: flow matching (x_t = t x1 + (1 - t) x0, target x1 - x0, MSE on unobserved pixels) on fresh random
sinusoid fields (sums of three plane waves of up to 3 cycles per side, unit variance) for ``--seconds``
or ``--steps`` (AdamW, cosine learning rate, gradient clipping at 1);
then the MSE on unobserved pixels of 128 held-out fields for the one-step Euler solve from t = 0 (which
approximates the posterior mean), the mean of 4 ten-step Euler samples, and linear interpolation
(scipy ``griddata``, nearest-neighbour outside the convex hull).
"""

from __future__ import annotations

import argparse
import importlib.util
import math
import os
import statistics
import subprocess
import time
from pathlib import Path

import numpy as np
import torch
from scipy.interpolate import griddata

from ssmseg.models.field_flow import FieldFlow
from ssmseg.models.field_unet import FieldUNet
from ssmseg.ssm.order import grid_coords

BUILD = {
    "flow_mamba": lambda **kw: FieldFlow(backbone="mamba", **kw),
    "flow_attention": lambda **kw: FieldFlow(backbone="attention", **kw),
    "unet": lambda **kw: FieldUNet(**kw),
}


def field_flow_at(rev: str) -> type:
    """FieldFlow as defined at git revision ``rev`` of this repository."""
    root = Path(__file__).resolve().parents[1]
    src = subprocess.run(
        ["git", "show", f"{rev}:ssmseg/models/field_flow.py"], cwd=root, capture_output=True, text=True, check=True
    ).stdout
    module = importlib.util.module_from_spec(importlib.util.spec_from_loader(f"field_flow_{rev}", loader=None))
    exec(compile(src, f"field_flow.py@{rev}", "exec"), module.__dict__)
    return module.FieldFlow


def build(name: str, **kw) -> torch.nn.Module:
    """A model of BUILD by name; ``flow_mamba@REV`` / ``flow_attention@REV``: FieldFlow at revision REV."""
    if "@" in name:
        base, rev = name.split("@", 1)
        return field_flow_at(rev)(backbone=base.removeprefix("flow_"), **kw)
    return BUILD[name](**kw)


def parse_kw(text: str) -> dict[str, dict[str, object]]:
    """'flow_mamba:d_model=48,n_layers=4;unet:width=16' -> {model: {arg: value}}."""
    out: dict[str, dict[str, object]] = {}
    for part in filter(None, text.split(";")):
        name, _, args = part.partition(":")
        kw = out.setdefault(name, {})
        for item in filter(None, args.split(",")):
            key, _, value = item.partition("=")
            if value in ("True", "False", "None"):
                kw[key] = {"True": True, "False": False, "None": None}[value]
                continue
            try:
                kw[key] = int(value)
            except ValueError:
                try:
                    kw[key] = float(value)
                except ValueError:
                    kw[key] = value
    return out


def random_batch(batch: int, size: int, gen: torch.Generator):
    frac = 0.05 + 0.05 * torch.rand(batch, 1, 1, 1, generator=gen)
    mask = (torch.rand(batch, 1, size, size, generator=gen) < frac).float()
    x1 = torch.randn(batch, 1, size, size, generator=gen)
    return x1, mask


def fm_loss(model, x1: torch.Tensor, mask: torch.Tensor, gen: torch.Generator) -> torch.Tensor:
    x0 = torch.randn(x1.shape, generator=gen)
    t = torch.rand(x1.shape[0], generator=gen)
    tt = t[:, None, None, None]
    err = (model(tt * x1 + (1 - tt) * x0, t, x1 * mask, mask) - (x1 - x0)).square() * (1 - mask)
    return err.sum() / (1 - mask).sum().clamp(min=1)


def time_steps(model: torch.nn.Module, size: int, args: argparse.Namespace) -> list[float]:
    """Seconds of each of ``args.steps`` forward + backward + Adam steps after two warm-up steps."""
    opt = torch.optim.Adam(model.parameters(), lr=1e-4)
    gen = torch.Generator().manual_seed(0)
    times = []
    for step in range(args.steps + 2):
        x1, mask = random_batch(args.batch, size, gen)
        t0 = time.perf_counter()
        opt.zero_grad()
        fm_loss(model, x1, mask, gen).backward()
        opt.step()
        if step >= 2:
            times.append(time.perf_counter() - t0)
    return times


def speed(args: argparse.Namespace) -> None:
    kws = parse_kw(args.kw)
    names, sizes = args.models.split(","), [int(s) for s in args.sizes.split(",")]
    print(f"threads {torch.get_num_threads()}, batch {args.batch}, load average {os.getloadavg()[0]:.1f}")
    print(f"{'model':24} {'params':>9} {'size':>5} {'s/step':>7} {'samples/s':>9} {'best':>9}  arguments")
    models = {}
    for name in names:
        torch.manual_seed(0)
        models[name] = build(name, **kws.get(name.split("@")[0], {}))
    rates: dict[tuple[str, int], list[float]] = {}
    for r in range(args.rounds):
        for name, model in models.items():
            n_params = sum(p.numel() for p in model.parameters())
            for size in sizes:
                times = time_steps(model, size, args)
                sec, best = statistics.median(times), min(times)
                rates.setdefault((name, size), []).append(args.batch / sec)
                print(
                    f"{name:24} {n_params:9,d} {size:5d} {sec:7.3f} {args.batch / sec:9.1f} "
                    f"{args.batch / best:9.1f}  {kws.get(name.split('@')[0], {})} (round {r + 1})"
                )
    if len(names) > 1:
        print(f"ratio of samples/s to {names[0]} (median over {args.rounds} rounds; load {os.getloadavg()[0]:.1f}):")
        for name in names[1:]:
            ratios = [statistics.median(rates[name, s]) / statistics.median(rates[names[0], s]) for s in sizes]
            print(f"  {name:24} " + "  ".join(f"{s}x{s}: {q:5.2f}x" for s, q in zip(sizes, ratios, strict=True)))


def sinusoid_fields(n: int, size: int, gen: torch.Generator, waves: int = 3, max_cycles: float = 3.0) -> torch.Tensor:
    xy = grid_coords(size, size).T.reshape(2, size, size)
    out = torch.zeros(n, 1, size, size)
    for _ in range(waves):
        k = (torch.rand(n, 2, generator=gen) * 2 - 1) * 2 * math.pi * max_cycles
        phase = torch.rand(n, generator=gen) * 2 * math.pi
        out += torch.sin(torch.einsum("nc,chw->nhw", k, xy) + phase[:, None, None])[:, None]
    return out / math.sqrt(waves / 2)


def linear_interpolation(x1: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    out = torch.zeros_like(x1)
    h, w = x1.shape[-2:]
    grid = np.stack(np.meshgrid(np.arange(h), np.arange(w), indexing="ij"), -1).reshape(-1, 2)
    for i in range(x1.shape[0]):
        m = mask[i, 0].numpy() > 0.5
        pts, vals = np.argwhere(m), x1[i, 0].numpy()[m]
        lin = griddata(pts, vals, grid, method="linear")
        near = griddata(pts, vals, grid, method="nearest")
        out[i, 0] = torch.from_numpy(np.where(np.isnan(lin), near, lin).reshape(h, w))
    return out


@torch.no_grad()
def euler(model, x0, observed, mask, steps: int) -> torch.Tensor:
    x = x0
    for i in range(steps):
        t = torch.full((x.shape[0],), i / steps)
        x = x + model(x, t, observed, mask) / steps
    return x


def train(args: argparse.Namespace) -> None:
    kw = parse_kw(args.kw).get(args.model, {})
    torch.manual_seed(0)
    model = build(args.model, **kw)
    n_params = sum(p.numel() for p in model.parameters())
    print(f"{args.model} {kw} params {n_params:,d}, load average {os.getloadavg()[0]:.1f}")
    opt = torch.optim.AdamW(model.parameters(), lr=args.lr, weight_decay=1e-4)
    gen = torch.Generator().manual_seed(1)
    start, step, seen = time.perf_counter(), 0, []
    while (elapsed := time.perf_counter() - start) < args.seconds and step < args.steps:
        progress = max(elapsed / args.seconds, step / args.steps)
        lr = args.lr * 0.5 * (1 + math.cos(math.pi * min(1.0, progress)))
        for group in opt.param_groups:
            group["lr"] = lr
        x1 = sinusoid_fields(args.batch, args.size, gen)
        mask = (torch.rand(x1.shape[0], 1, args.size, args.size, generator=gen) < args.frac).float()
        opt.zero_grad()
        loss = fm_loss(model, x1, mask, gen)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
        opt.step()
        seen.append(loss.item())
        step += 1
        if step % 50 == 0:
            print(f"  step {step:5d}  {elapsed:6.0f}s  loss {statistics.mean(seen[-50:]):.4f}")
    print(f"trained {step} steps ({step * args.batch} fields) in {time.perf_counter() - start:.0f}s")
    model.eval()
    g = torch.Generator().manual_seed(12345)
    x1 = sinusoid_fields(128, args.size, g)
    mask = (torch.rand(128, 1, args.size, args.size, generator=g) < args.frac).float()
    unobs = 1 - mask

    def mse(pred: torch.Tensor) -> float:
        return float(((pred - x1).square() * unobs).sum() / unobs.sum())

    def solve(steps: int) -> torch.Tensor:
        parts = zip(x1.split(64), mask.split(64), strict=True)
        return torch.cat([euler(model, torch.randn(x.shape, generator=g), x * m, m, steps) for x, m in parts])

    one = solve(1)
    samples = torch.stack([solve(10) for _ in range(4)])
    lin = linear_interpolation(x1, mask)
    for name, pred in [
        ("one-step Euler", one),
        ("mean of 4 ten-step samples", samples.mean(0)),
        ("one ten-step sample", samples[0]),
        ("linear interpolation", lin),
        ("zero (field mean)", torch.zeros_like(x1)),
    ]:
        m = mse(pred)
        print(f"  {name:28} MSE {m:.4f}  PSNR {10 * math.log10(4 / m):6.2f} dB (peak-to-peak 2 sigma)")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = parser.add_subparsers(dest="command", required=True)
    s = sub.add_parser("speed")
    s.add_argument("--models", default="flow_mamba,flow_attention,unet")
    s.add_argument("--sizes", default="32,64")
    s.add_argument("--batch", type=int, default=16)
    s.add_argument("--steps", type=int, default=5)
    s.add_argument("--kw", default="")
    s.add_argument("--rounds", type=int, default=1, help="repeat the model list this many times, interleaved")
    t = sub.add_parser("train")
    t.add_argument("--model", default="flow_mamba", help=f"one of {', '.join(BUILD)}, or flow_mamba@REV")
    t.add_argument("--kw", default="")
    t.add_argument("--seconds", type=float, default=240)
    t.add_argument(
        "--steps", type=int, default=10**9, help="stop after this many steps (the cosine follows whichever ends first)"
    )
    t.add_argument("--size", type=int, default=32)
    t.add_argument("--frac", type=float, default=0.1)
    t.add_argument("--batch", type=int, default=16)
    t.add_argument("--lr", type=float, default=2e-3)
    for p in (s, t):
        p.add_argument("--threads", type=int, default=2)
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    speed(args) if args.command == "speed" else train(args)


if __name__ == "__main__":
    main()
