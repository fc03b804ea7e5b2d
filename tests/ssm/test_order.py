"""Point-set orders: the Hilbert curve is a local permutation; point_order agrees with the grid orders."""

from __future__ import annotations

import pytest
import torch

from ssmseg.ssm.order import ORDERS, grid_coords, hilbert, point_order


@pytest.mark.parametrize("k", [1, 2, 3, 5])
def test_hilbert_steps_to_a_grid_neighbour_on_power_of_two_grids(k):
    n = 2**k
    perm = hilbert(n, n)
    assert sorted(perm.tolist()) == list(range(n * n))
    row, col = perm // n, perm % n
    assert torch.all((row.diff().abs() + col.diff().abs()) == 1)


@pytest.mark.parametrize(("h", "w"), [(1, 1), (1, 7), (37, 45), (20, 3)])
def test_hilbert_is_a_permutation_on_any_grid(h, w):
    assert sorted(hilbert(h, w).tolist()) == list(range(h * w))
    assert "hilbert" in ORDERS


def test_hilbert_is_more_local_than_rows():
    """Mean grid distance between sequence neighbours: about 1 for the curve, large for row jumps on 37 x 45."""

    def mean_step(perm, w):
        r, c = perm // w, perm % w
        return (r.diff().abs() + c.diff().abs()).float().mean()

    assert mean_step(hilbert(37, 45), 45) < 1.5

    # Any 64 consecutive points of the curve on a 32 x 32 grid fill an 8 x 8 block; rows span the full width.
    def extent(perm):
        r, c = perm.reshape(-1, 64) // 32, perm.reshape(-1, 64) % 32
        return (r.amax(1) - r.amin(1) + c.amax(1) - c.amin(1)).max()

    assert extent(hilbert(32, 32)) == 14 and extent(torch.arange(32 * 32)) == 32


@pytest.mark.parametrize("n", [4, 16])
def test_point_order_on_grid_centres_equals_the_grid_orders(n):
    coords = grid_coords(n, n)
    assert torch.equal(point_order(coords, "hilbert"), hilbert(n, n))
    assert torch.equal(point_order(coords, "rows"), torch.arange(n * n))


def test_point_order_batched_and_random():
    coords = torch.rand(3, 50, 2)
    perm = point_order(coords, "hilbert")
    assert perm.shape == (3, 50)
    for b in range(3):
        assert torch.equal(perm[b], point_order(coords[b], "hilbert"))
        assert sorted(perm[b].tolist()) == list(range(50))
    r1 = point_order(coords, "random", generator=torch.Generator().manual_seed(1))
    r2 = point_order(coords, "random", generator=torch.Generator().manual_seed(1))
    assert torch.equal(r1, r2) and r1.shape == (3, 50)
    assert not torch.equal(r1[0], r1[1])


def test_point_order_follows_the_curve_for_scattered_points():
    """Points ordered by the curve are closer to their successor than in input (random) order."""
    coords = torch.rand(400, 2, generator=torch.Generator().manual_seed(0))
    ordered = coords[point_order(coords, "hilbert")]
    assert ordered.diff(dim=0).norm(dim=1).mean() < 0.25 * coords.diff(dim=0).norm(dim=1).mean()


def test_point_order_rejects_bad_input():
    with pytest.raises(ValueError, match="valid orders"):
        point_order(torch.rand(5, 2), "spiral")
    with pytest.raises(ValueError, match="coords of shape"):
        point_order(torch.rand(5, 3), "hilbert")
