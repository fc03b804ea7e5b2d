"""The Mamba block, with mamba-ssm's parameter names, shapes and initialisation.

A state dict moves between this module and ``mamba_ssm.Mamba`` unchanged (same keys and shapes:
``in_proj``, ``conv1d``, ``x_proj``, ``dt_proj``, ``A_log``, ``D``, ``out_proj``). The step size dt is
computed from each token (``x_proj`` then ``dt_proj``, softplus) and never from the sequence length, so the
same tokens follow the same dynamics in a sequence of any length.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import nn

from ssmseg.ssm.scan import selective_scan


def init_dt_bias(bias: torch.Tensor, dt_min: float = 1e-3, dt_max: float = 0.1, floor: float = 1e-4) -> None:
    """Store dt ~ log-uniform in [dt_min, dt_max] through an inverse softplus (mamba-ssm's init)."""
    with torch.no_grad():
        dt = torch.exp(torch.rand_like(bias) * (math.log(dt_max) - math.log(dt_min)) + math.log(dt_min))
        dt = dt.clamp(min=floor)
        bias.copy_(dt + torch.log(-torch.expm1(-dt)))
    bias._no_reinit = True  # type: ignore[attr-defined]


def init_A_log(d_inner: int, d_state: int) -> torch.Tensor:
    """S4D-real init: A = -(1..N) for every channel, stored as log."""
    A = torch.arange(1, d_state + 1, dtype=torch.float32).repeat(d_inner, 1)
    return torch.log(A)


class _CausalConv1d(torch.autograd.Function):
    """Depthwise causal convolution with a hand-written backward.

    On CPU, aten's depthwise ``conv1d`` backward is the slowest op of the whole block (several times the
    scan's backward, and seconds when the input is the strided view ``in_proj`` leaves); written as two
    plain convolutions it costs about as much as the forward.
    """

    @staticmethod
    def forward(ctx, x: torch.Tensor, weight: torch.Tensor, bias: torch.Tensor | None) -> torch.Tensor:
        x = x.contiguous()
        ctx.save_for_backward(x, weight)
        ctx.has_bias = bias is not None
        k = weight.shape[-1]
        return F.conv1d(x, weight, bias, padding=k - 1, groups=weight.shape[0])[..., : x.shape[-1]]

    @staticmethod
    def backward(ctx, grad: torch.Tensor) -> tuple[torch.Tensor | None, ...]:
        x, weight = ctx.saved_tensors
        batch, dim, L = x.shape
        k = weight.shape[-1]
        grad = grad.contiguous()  # under autocast the forward ran in grad's dtype: so does the backward
        w, xs = weight.to(grad.dtype), x.to(grad.dtype)
        # y[t] = sum_j w[j] x[t-(k-1)+j], so dx[s] = sum_j w[j] dy[s+(k-1)-j]: the flipped kernel, anti-causal.
        gx = F.conv1d(grad, w.flip(-1), padding=k - 1, groups=dim)[..., k - 1 :]
        # dw[d, j] = sum_{b, t} dy[b, d, t] x_padded[b, d, t + j]: one grouped convolution over the batch axis.
        xp = F.pad(xs, (k - 1, 0)).transpose(0, 1).reshape(1, dim * batch, L + k - 1)
        gw = F.conv1d(xp, grad.transpose(0, 1).reshape(dim, batch, L), groups=dim).view(dim, 1, k)
        gb = grad.sum((0, 2)).to(weight.dtype) if ctx.has_bias else None
        return gx.to(x.dtype), gw.to(weight.dtype), gb


def causal_conv1d(x: torch.Tensor, weight: torch.Tensor, bias: torch.Tensor | None = None) -> torch.Tensor:
    """Depthwise causal conv: x (batch, dim, L), weight (dim, 1, k) -> (batch, dim, L); output t sees x[<= t].

    Equals ``F.conv1d(x, weight, bias, padding=k-1, groups=dim)[..., :L]``, which other devices run as is."""
    if x.device.type != "cpu":
        return F.conv1d(x, weight, bias, padding=weight.shape[-1] - 1, groups=weight.shape[0])[..., : x.shape[-1]]
    return _CausalConv1d.apply(x, weight, bias)


class Mamba(nn.Module):
    """Selective state-space block on token sequences (batch, length, d_model) -> same shape."""

    def __init__(
        self,
        d_model: int,
        d_state: int = 16,
        d_conv: int = 4,
        expand: int = 2,
        dt_rank: int | str = "auto",
        dt_min: float = 1e-3,
        dt_max: float = 0.1,
        dt_scale: float = 1.0,
        conv_bias: bool = True,
        bias: bool = False,
        backend: str | None = None,
    ) -> None:
        super().__init__()
        self.d_model, self.d_state, self.d_conv, self.expand = d_model, d_state, d_conv, expand
        self.d_inner = expand * d_model
        self.dt_rank = math.ceil(d_model / 16) if dt_rank == "auto" else int(dt_rank)
        self.backend = backend
        self.in_proj = nn.Linear(d_model, self.d_inner * 2, bias=bias)
        self.conv1d = nn.Conv1d(
            self.d_inner, self.d_inner, d_conv, groups=self.d_inner, padding=d_conv - 1, bias=conv_bias
        )
        self.x_proj = nn.Linear(self.d_inner, self.dt_rank + 2 * d_state, bias=False)
        self.dt_proj = nn.Linear(self.dt_rank, self.d_inner, bias=True)
        std = self.dt_rank**-0.5 * dt_scale
        nn.init.uniform_(self.dt_proj.weight, -std, std)
        init_dt_bias(self.dt_proj.bias, dt_min, dt_max)
        self.A_log = nn.Parameter(init_A_log(self.d_inner, d_state))
        self.A_log._no_weight_decay = True  # type: ignore[attr-defined]
        self.D = nn.Parameter(torch.ones(self.d_inner))
        self.D._no_weight_decay = True  # type: ignore[attr-defined]
        self.out_proj = nn.Linear(self.d_inner, d_model, bias=bias)

    def ssm_inputs(self, hidden: torch.Tensor) -> dict[str, torch.Tensor]:
        """The scan's inputs for (batch, L, d_model) tokens: u, delta (before bias), z, B, C."""
        xz = self.in_proj(hidden).transpose(1, 2)  # (batch, 2 d_inner, L)
        x, z = xz.chunk(2, dim=1)
        x = F.silu(causal_conv1d(x, self.conv1d.weight, self.conv1d.bias))
        dt, B, C = self.x_proj(x.transpose(1, 2)).split([self.dt_rank, self.d_state, self.d_state], dim=-1)
        delta = (dt @ self.dt_proj.weight.T).transpose(1, 2)  # (batch, d_inner, L); bias added in the scan
        return {"u": x, "delta": delta, "z": z, "B": B.transpose(1, 2), "C": C.transpose(1, 2)}

    def step_sizes(self, hidden: torch.Tensor) -> torch.Tensor:
        """dt per token and channel (batch, d_inner, L): what the scan integrates with."""
        delta = self.ssm_inputs(hidden)["delta"]
        return F.softplus(delta + self.dt_proj.bias[:, None])

    def forward(self, hidden: torch.Tensor) -> torch.Tensor:
        """hidden (batch, L, d_model) -> (batch, L, d_model)."""
        s = self.ssm_inputs(hidden)
        A = -torch.exp(self.A_log.float())
        y = selective_scan(
            s["u"],
            s["delta"],
            A,
            s["B"],
            s["C"],
            self.D.float(),
            z=s["z"],
            delta_bias=self.dt_proj.bias.float(),
            delta_softplus=True,
            backend=self.backend,
        )
        return self.out_proj(y.transpose(1, 2))
