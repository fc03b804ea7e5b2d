"""ODE solvers for sampling a flow: integrate dx/dt = v(x, t) from t = 0 to t = 1.

Fixed-step solvers (Euler, midpoint, Heun, RK4) step along an explicit grid ``linspace(0, 1, steps + 1)``
computed in float64, so the times are exact to float64 and the last one is exactly 1 (no 1/n summed in
float32). ``dopri5`` is torchdiffeq's adaptive Dormand-Prince solver. Count function evaluations (NFE)
by wrapping the velocity in ``CountingVelocity``: the count is measured, never derived from the steps.
"""

from __future__ import annotations

import itertools
from collections.abc import Callable

import torch
from torch import Tensor

from ssmseg.errors import ConfigError

Velocity = Callable[[Tensor, Tensor], Tensor]  # (x (B, ...), t (B,)) -> dx/dt like x

SOLVERS = ("euler", "midpoint", "heun", "rk4", "dopri5")


class CountingVelocity:
    """Wraps a velocity (or the field model itself: any callable whose first argument is the batch of
    fields) and counts its calls (``nfe``) and the fields it was called on (``fields``, the sum of batch
    sizes: the work done when batches differ). The one model-call counter of the project."""

    def __init__(self, velocity: Callable[..., Tensor]) -> None:
        self.velocity = velocity
        self.nfe = 0
        self.fields = 0

    def __call__(self, x: Tensor, *rest: Tensor) -> Tensor:
        self.nfe += 1
        self.fields += int(x.shape[0])
        return self.velocity(x, *rest)

    def reset(self) -> None:
        self.nfe = 0
        self.fields = 0


def time_grid(steps: int) -> Tensor:
    """(steps + 1,) float64 times from exactly 0 to exactly 1."""
    if steps < 1:
        raise ConfigError(f"solver steps must be at least 1; got {steps}")
    return torch.linspace(0, 1, steps + 1, dtype=torch.float64)


def solve(
    velocity: Velocity,
    x0: Tensor,
    solver: str = "euler",
    steps: int = 10,
    atol: float = 1e-5,
    rtol: float = 1e-5,
) -> Tensor:
    """x(1) from x(0) = x0 under dx/dt = velocity(x, t); t is passed as a (B,) tensor of x's dtype.

    ``steps`` is the number of grid intervals for fixed-step solvers and is ignored by ``dopri5``, which
    chooses its own steps to meet ``atol``/``rtol``. Runs under the caller's grad mode."""
    if solver not in SOLVERS:
        raise ConfigError(f"unknown solver '{solver}'; choose one of {', '.join(SOLVERS)}")
    if steps < 1:
        raise ConfigError(f"solver steps must be at least 1; got {steps}")
    batch = x0.shape[0]

    def v(x: Tensor, t: float) -> Tensor:
        return velocity(x, torch.full((batch,), t, dtype=x.dtype, device=x.device))

    if solver == "dopri5":
        return _dopri5(velocity, x0, atol, rtol)
    grid = time_grid(steps).tolist()  # python floats: float64 times and step sizes
    x = x0
    for t0, t1 in itertools.pairwise(grid):
        h = t1 - t0
        if solver == "euler":
            x = x + h * v(x, t0)
        elif solver == "midpoint":
            k1 = v(x, t0)
            x = x + h * v(x + 0.5 * h * k1, t0 + 0.5 * h)
        elif solver == "heun":  # explicit trapezoid: Euler predictor, average of both slopes
            k1 = v(x, t0)
            k2 = v(x + h * k1, t1)
            x = x + 0.5 * h * (k1 + k2)
        else:  # classic fourth-order Runge-Kutta
            k1 = v(x, t0)
            k2 = v(x + 0.5 * h * k1, t0 + 0.5 * h)
            k3 = v(x + 0.5 * h * k2, t0 + 0.5 * h)
            k4 = v(x + h * k3, t1)
            x = x + (h / 6) * (k1 + 2 * k2 + 2 * k3 + k4)
    return x


def _dopri5(velocity: Velocity, x0: Tensor, atol: float, rtol: float) -> Tensor:
    from torchdiffeq import odeint

    batch = x0.shape[0]

    def func(t: Tensor, x: Tensor) -> Tensor:
        return velocity(x, t.to(x.dtype).expand(batch))

    times = torch.tensor(
        [0.0, 1.0], dtype=torch.float64 if x0.dtype == torch.float64 else torch.float32, device=x0.device
    )
    return odeint(func, x0, times, method="dopri5", atol=atol, rtol=rtol)[-1]
