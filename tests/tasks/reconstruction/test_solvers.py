"""Solvers against an ODE with a closed-form solution: order of accuracy, NFE, time grid, dopri5."""

from __future__ import annotations

import math

import pytest
import torch

from ssmseg.errors import ConfigError
from ssmseg.tasks.reconstruction.solvers import SOLVERS, CountingVelocity, solve, time_grid

# dx/dt = 3 cos(3 t) x  =>  x(1) = x(0) exp(sin 3). Time-dependent, so a solver that evaluates at the wrong
# times (or a grid that does not end at 1) loses its order.


def velocity(x: torch.Tensor, t: torch.Tensor) -> torch.Tensor:
    assert t.shape == (x.shape[0],)
    return 3 * torch.cos(3 * t)[:, None] * x


X0 = torch.tensor([[1.0], [-0.5]], dtype=torch.float64)
EXACT = X0 * math.exp(math.sin(3.0))


def error(solver: str, steps: int) -> float:
    return float((solve(velocity, X0, solver, steps) - EXACT).abs().max())


@pytest.mark.parametrize(("solver", "order"), [("euler", 1), ("midpoint", 2), ("heun", 2), ("rk4", 4)])
def test_fixed_step_order(solver, order):
    # Halving the step divides the error by 2^order once the steps are small (64 -> 128 here; midpoint's
    # ratio is still 5.8 at 16 -> 32 on this ODE).
    coarse, fine = error(solver, 64), error(solver, 128)
    assert math.log2(coarse / fine) == pytest.approx(order, abs=0.25), (coarse, fine)


@pytest.mark.parametrize(("solver", "per_step"), [("euler", 1), ("midpoint", 2), ("heun", 2), ("rk4", 4)])
def test_nfe_is_counted(solver, per_step):
    counted = CountingVelocity(velocity)
    solve(counted, X0, solver, 7)
    assert counted.nfe == 7 * per_step and counted.fields == 7 * per_step * 2
    counted.reset()
    assert counted.nfe == 0 and counted.fields == 0


def test_dopri5_meets_its_tolerance_and_counts_its_calls():
    counted = CountingVelocity(velocity)
    x1 = solve(counted, X0, "dopri5", steps=1, atol=1e-8, rtol=1e-8)
    assert float((x1 - EXACT).abs().max()) < 1e-6
    tight = counted.nfe
    # torchdiffeq's dopri5: 2 calls to choose the first step, then 6 per attempted step (first-same-as-last)
    assert tight > 8 and (tight - 2) % 6 == 0
    counted.reset()
    loose = solve(counted, X0, "dopri5", atol=1e-3, rtol=1e-3)
    assert float((loose - EXACT).abs().max()) < 1e-2 and counted.nfe < tight


def test_float32_state_and_batch_time_vector():
    x1 = solve(velocity, X0.float(), "rk4", 32)
    assert x1.dtype == torch.float32 and torch.allclose(x1.double(), EXACT, atol=1e-5)
    assert solve(velocity, X0.float(), "dopri5").dtype == torch.float32


def test_grid_ends_exactly_at_one():
    for steps in (1, 3, 7, 10, 1000):
        grid = time_grid(steps)
        assert grid.dtype == torch.float64 and grid[0].item() == 0.0 and grid[-1].item() == 1.0
        assert len(grid) == steps + 1
    seen = []
    solve(lambda x, t: seen.append(t[0].item()) or torch.zeros_like(x), X0, "rk4", 10)
    assert seen[-1] == 1.0 and seen[0] == 0.0  # RK4's last stage is at t = 1


def test_bad_solver_or_steps_is_config_error():
    with pytest.raises(ConfigError, match="euler, midpoint, heun, rk4, dopri5"):
        solve(velocity, X0, "rk45", 4)
    with pytest.raises(ConfigError, match="at least 1"):
        solve(velocity, X0, "euler", 0)
    assert set(SOLVERS) == {"euler", "midpoint", "heun", "rk4", "dopri5"}
