"""SS2D: a 2D selective scan that reads a feature map in several orders (VMamba's cross-scan).

The map is read in K orders (by default rows, columns and both reversed), the K sequences are scanned in
one ``selective_scan`` call with K groups (each order has its own projections, A and D), then each result
is put back in place and the K are summed.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import nn

from ssmseg.ssm.mamba import init_A_log, init_dt_bias
from ssmseg.ssm.order import FOUR_DIRECTIONS, order_indices
from ssmseg.ssm.scan import selective_scan

_FAST_SCAN = {
    "rows": lambda x: x.flatten(2),
    "cols": lambda x: x.transpose(2, 3).flatten(2),
    "rows_reversed": lambda x: x.flatten(2).flip(-1),
    "cols_reversed": lambda x: x.transpose(2, 3).flatten(2).flip(-1),
}
_FAST_MERGE = {
    "rows": lambda y, h, w: y.reshape(y.shape[0], y.shape[1], h, w),
    "cols": lambda y, h, w: y.reshape(y.shape[0], y.shape[1], w, h).transpose(2, 3),
    "rows_reversed": lambda y, h, w: y.flip(-1).reshape(y.shape[0], y.shape[1], h, w),
    "cols_reversed": lambda y, h, w: y.flip(-1).reshape(y.shape[0], y.shape[1], w, h).transpose(2, 3),
}
_FAST = set(_FAST_SCAN)


class SS2D(nn.Module):
    """(batch, d_model, H, W) -> (batch, d_model, H, W)."""

    def __init__(
        self,
        d_model: int,
        d_state: int = 16,
        expand: int = 2,
        d_conv: int = 3,
        dt_rank: int | str = "auto",
        orders: tuple[str, ...] = FOUR_DIRECTIONS,
        backend: str | None = None,
    ) -> None:
        super().__init__()
        if d_conv % 2 == 0:
            raise ValueError(f"SS2D d_conv must be odd to keep the map size, got {d_conv}")
        order_indices(orders, 1, 1)  # validate names now rather than at the first forward
        self.orders, self.backend = tuple(orders), backend
        K = len(orders)
        self.d_inner = d_inner = expand * d_model
        self.d_state = d_state
        self.dt_rank = math.ceil(d_model / 16) if dt_rank == "auto" else int(dt_rank)
        self.in_proj = nn.Linear(d_model, 2 * d_inner, bias=False)
        self.conv2d = nn.Conv2d(d_inner, d_inner, d_conv, padding=d_conv // 2, groups=d_inner)
        self.x_proj_weight = nn.Parameter(torch.empty(K, self.dt_rank + 2 * d_state, d_inner))
        nn.init.uniform_(self.x_proj_weight, -(d_inner**-0.5), d_inner**-0.5)
        self.dt_projs_weight = nn.Parameter(torch.empty(K, d_inner, self.dt_rank))
        nn.init.uniform_(self.dt_projs_weight, -(self.dt_rank**-0.5), self.dt_rank**-0.5)
        self.dt_projs_bias = nn.Parameter(torch.empty(K, d_inner))
        init_dt_bias(self.dt_projs_bias)
        self.A_logs = nn.Parameter(init_A_log(K * d_inner, d_state))
        self.Ds = nn.Parameter(torch.ones(K * d_inner))
        self.A_logs._no_weight_decay = self.Ds._no_weight_decay = True  # type: ignore[attr-defined]
        self.out_norm = nn.LayerNorm(d_inner)
        self.out_proj = nn.Linear(d_inner, d_model, bias=False)
        self._perm_cache: dict[tuple[int, int, str], tuple[torch.Tensor, torch.Tensor]] = {}

    def _perms(self, h: int, w: int, device: torch.device) -> tuple[torch.Tensor, torch.Tensor]:
        """Flat gather indices (K*L,) reading the map in each order, and their inverse for folding back."""
        key = (h, w, str(device))
        if key not in self._perm_cache:
            perm = order_indices(self.orders, h, w)  # (K, L)
            L = h * w
            inv = torch.argsort(perm, dim=1) + torch.arange(len(self.orders))[:, None] * L
            self._perm_cache[key] = (perm.reshape(-1).to(device), inv.reshape(-1).to(device))
        return self._perm_cache[key]

    def _cross_scan(self, x: torch.Tensor) -> torch.Tensor:
        """(batch, di, H, W) -> (batch, K, di, H*W): the map read in each order."""
        batch, di, h, w = x.shape
        if set(self.orders) <= _FAST:  # flips and transposes: plain strided copies, no gather
            return torch.stack([_FAST_SCAN[name](x) for name in self.orders], dim=1)
        perm, _ = self._perms(h, w, x.device)
        return x.flatten(2).index_select(-1, perm).view(batch, di, len(self.orders), h * w).transpose(1, 2)

    def _reorder(self, p: torch.Tensor, h: int, w: int) -> torch.Tensor:
        """(batch, K, c, H*W) maps in row-major order -> (batch, K, c, H*W) with map k read in order k."""
        batch, K, c, L = p.shape
        if set(self.orders) <= _FAST:
            maps = zip(self.orders, p.unbind(1), strict=True)
            return torch.stack([_FAST_SCAN[name](m.view(batch, c, h, w)) for name, m in maps], dim=1)
        perm, _ = self._perms(h, w, p.device)
        index = perm.view(1, K, 1, L)
        return p.gather(3, index.expand(batch, K, c, L))

    def _cross_merge(self, y: torch.Tensor, h: int, w: int) -> torch.Tensor:
        """(batch, K, di, H*W) -> (batch, di, H, W): each sequence put back in place, the K views summed."""
        batch, K, di, L = y.shape
        if set(self.orders) <= _FAST:  # unbind, not y[:, k]: its backward is one stack, not K zero-filled copies
            return sum(_FAST_MERGE[name](yk, h, w) for yk, name in zip(y.unbind(1), self.orders, strict=True))
        _, inv = self._perms(h, w, y.device)
        y = y.transpose(1, 2).reshape(batch, di, K * L).index_select(-1, inv)
        return y.view(batch, di, K, L).sum(2).view(batch, di, h, w)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        batch, _, h, w = x.shape
        K, L, di = len(self.orders), h * w, self.d_inner
        xz = self.in_proj(x.permute(0, 2, 3, 1))  # (batch, H, W, 2 di)
        xi, z = xz.chunk(2, dim=-1)
        xi = F.silu(self.conv2d(xi.permute(0, 3, 1, 2).contiguous()))  # (batch, di, H, W)
        xs = self._cross_scan(xi)  # (batch, K, di, L)
        # The projections are linear per position: apply them to the map once, then reorder their few
        # channels (dt_rank + 2 d_state per order) rather than the di channels of every order.
        weight = self.x_proj_weight.reshape(K * self.x_proj_weight.shape[1], di)
        x_dbl = self._reorder(torch.matmul(weight, xi.view(batch, di, L)).view(batch, K, -1, L), h, w)
        dts, Bs, Cs = x_dbl.split([self.dt_rank, self.d_state, self.d_state], dim=2)
        dts = torch.matmul(self.dt_projs_weight, dts)  # (K, di, r) @ (batch, K, r, L) -> (batch, K, di, L)
        y = selective_scan(
            xs.reshape(batch, K * di, L),
            dts.reshape(batch, K * di, L),
            -torch.exp(self.A_logs.float()),
            Bs.contiguous(),
            Cs.contiguous(),
            self.Ds.float(),
            delta_bias=self.dt_projs_bias.reshape(-1).float(),
            delta_softplus=True,
            backend=self.backend,
        )
        y = self._cross_merge(y.view(batch, K, di, L), h, w).permute(0, 2, 3, 1)
        y = self.out_norm(y) * F.silu(z)
        return self.out_proj(y).permute(0, 3, 1, 2)
