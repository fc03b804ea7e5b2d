"""Pure-PyTorch selective scan for any device: a two-level chunked scan of multiplies and adds, with a
hand-written backward.

The sequence is cut into chunks of about sqrt(L) steps. Level one scans every chunk at once from a zero
state (a Python loop over the chunk length, each step a batched op over all chunks), keeping the running
product of the decays; level two carries the state across chunk boundaries (a loop over the chunks).
About 2 sqrt(L) small steps in all, never one per time step. Only products of decays in [0, 1] are formed,
so large dt cannot overflow the way factored exp(+-A cumsum(dt)) formulations do.

The backward runs the same two-level scan in reverse time for the state's adjoint, then forms every
gradient with a few whole-tensor products; autograd never records the loops, which is what makes the
naive version slow and memory-hungry.
"""

from __future__ import annotations

import math
from typing import Any

import torch
import torch.nn.functional as F

from ssmseg.ssm.inputs import finish_output


def _chunk_len(L: int) -> int:
    return max(1, math.isqrt(max(L, 1)))


def _to_chunks(x: torch.Tensor, T: int, value: float = 0.0) -> torch.Tensor:
    """(..., L) -> (T, ..., nc): time split into nc chunks of T steps, padded with ``value``."""
    L = x.shape[-1]
    nc = -(-L // T)
    if nc * T != L:
        x = F.pad(x, (0, nc * T - L), value=value)
    x = x.reshape(*x.shape[:-1], nc, T)
    # Contiguous in the new order: tensors computed from it inherit the layout, so every step's slice is
    # one dense block (a strided slice makes each step several times slower).
    return x.movedim(-1, 0).contiguous()


def _from_chunks(x: torch.Tensor, L: int) -> torch.Tensor:
    """(T, ..., nc) -> (..., L)."""
    return x.movedim(0, -1).flatten(-2)[..., :L]


class _Layout:
    """Shapes of the chunked layout: steps (T, batch, G, dim/G, nc, N)."""

    def __init__(self, dt: torch.Tensor, A: torch.Tensor, B: torch.Tensor) -> None:
        self.batch, self.dim, self.L = dt.shape
        self.N, self.G = A.shape[1], B.shape[1]
        self.dpg = self.dim // self.G
        self.T = _chunk_len(self.L)
        self.nc = -(-self.L // self.T)

    def seq(self, x: torch.Tensor) -> torch.Tensor:  # (b, d, L) -> (T, b, G, dpg, nc, 1)
        return _to_chunks(x, self.T).reshape(self.T, self.batch, self.G, self.dpg, self.nc, 1)

    def unseq(self, x: torch.Tensor) -> torch.Tensor:  # (T, b, G, dpg, nc, 1) -> (b, d, L)
        return _from_chunks(x.squeeze(-1).reshape(self.T, self.batch, self.dim, self.nc), self.L)

    def bc(self, M: torch.Tensor) -> torch.Tensor:  # (b|1, G, N, L|1) -> (T|1, b|1, G, 1, nc|1, N)
        if M.shape[-1] == 1:
            return M.squeeze(-1).reshape(1, M.shape[0], self.G, 1, 1, self.N)
        return _to_chunks(M, self.T).transpose(-1, -2).contiguous().unsqueeze(3)

    def unbc(self, g: torch.Tensor, like: torch.Tensor) -> torch.Tensor:
        """Gradient in the chunked layout (summed over channels of a group) back to ``like``'s shape."""
        g = g.sum(3)  # (T, b, G, nc, N)
        if like.shape[-1] == 1:  # constant in time: sum over steps (and over the batch if shared)
            g = g.sum((0, 3))
            return (g.sum(0, keepdim=True) if like.shape[0] == 1 else g).unsqueeze(-1)
        return _from_chunks(g.movedim(-1, -2), self.L)  # (b, G, N, L)

    def A(self, A: torch.Tensor) -> torch.Tensor:
        return A.reshape(1, 1, self.G, self.dpg, 1, self.N)


def _level_one(decay, drive) -> tuple[torch.Tensor, torch.Tensor]:
    """End state (from zero) and decay product of every chunk."""
    h = torch.zeros_like(drive[0])
    p = torch.ones_like(decay[0])
    for a_t, b_t in zip(decay, drive, strict=True):
        h = a_t * h + b_t
        p = p * a_t
    return h, p


def _carry(h_end: torch.Tensor, p_end: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """State entering each chunk (..., nc, N) and the final state."""
    carry = torch.zeros_like(h_end[..., 0, :])
    starts = []
    for p_c, h_c in zip(p_end.unbind(-2), h_end.unbind(-2), strict=True):
        starts.append(carry)
        carry = p_c * carry + h_c
    return torch.stack(starts, dim=-2), carry


class ChunkedScan(torch.autograd.Function):
    """(dt, du, A, B, C) -> (y, last): y_t = C_t . x_t, x_t = exp(dt_t A) x_{t-1} + du_t B_t, x_{-1} = 0.

    dt, du: (batch, dim, L) float32; A: (dim, N); B, C: (batch|1, G, N, L|1) with G dividing dim.
    """

    @staticmethod
    def forward(ctx: Any, dt, du, A, B, C):
        lay = _Layout(dt, A, B)
        decay = torch.exp(lay.seq(dt) * lay.A(A))  # padded steps: dt = 0 -> decay 1, drive 0
        drive = lay.seq(du) * lay.bc(B)
        starts, last = _carry(*_level_one(decay, drive))
        Cc = lay.bc(C)
        x = starts
        ys = []
        for a_t, b_t, c_t in zip(
            decay.unbind(0), drive.unbind(0), Cc.expand(lay.T, *Cc.shape[1:]).unbind(0), strict=True
        ):
            x = a_t * x + b_t
            ys.append((x * c_t).sum(-1, keepdim=True))
        y = lay.unseq(torch.stack(ys))
        ctx.save_for_backward(dt, du, A, B, C, starts)
        ctx.mark_non_differentiable(last)
        return y, last.reshape(lay.batch, lay.dim, lay.N)

    @staticmethod
    def backward(ctx: Any, dy: torch.Tensor, _dlast: torch.Tensor):
        dt, du, A, B, C, starts = ctx.saved_tensors
        lay = _Layout(dt, A, B)
        dtc, duc, Ac, Bc, Cc = lay.seq(dt), lay.seq(du), lay.A(A), lay.bc(B), lay.bc(C)
        decay = torch.exp(dtc * Ac)
        drive = duc * Bc
        # States x_t of every step, recomputed from the chunk starts.
        xs, x = [], starts
        for a_t, b_t in zip(decay.unbind(0), drive.unbind(0), strict=True):
            x = a_t * x + b_t
            xs.append(x)
        X = torch.stack(xs)
        dyc = lay.seq(dy.float().contiguous())
        emit = dyc * Cc  # dL/dx_t through y_t
        # Adjoint g_t = emit_t + a_{t+1} g_{t+1}, in reverse time. Pass one: each chunk from zero, keeping
        # its first step's value and decay product; then the carry from the last chunk backwards.
        first_next = torch.cat([decay[0][..., 1:, :], torch.zeros_like(decay[0][..., :1, :])], dim=-2)
        a_next = [*decay[1:].unbind(0), first_next]
        h, p = _level_one(a_next[::-1], emit.unbind(0)[::-1])  # reversed views, not a reversed copy
        running = torch.zeros_like(h[..., 0, :])
        carry_in = []
        for g0, p0 in zip(reversed(h.unbind(-2)), reversed(p.unbind(-2)), strict=True):
            carry_in.append(running)
            running = g0 + p0 * running
        g = torch.stack(carry_in[::-1], dim=-2)  # adjoint of the step after each chunk
        # Pass two: exact adjoints step by step, each step's gradients reduced at once (no big temporaries).
        d_dt = torch.empty_like(dtc)
        d_du = torch.empty_like(duc)
        dA = torch.zeros_like(decay[0])
        dBc = torch.empty(lay.T, lay.batch, lay.G, lay.nc, lay.N)
        dCc = torch.empty_like(dBc)
        Bt = Bc.expand(lay.T, *Bc.shape[1:])
        for t in reversed(range(lay.T)):
            g = emit[t] + a_next[t] * g
            x_prev = X[t - 1] if t else starts
            q = g * x_prev * decay[t]  # dL/d(dt A) per state
            d_dt[t] = (q * Ac[0]).sum(-1, keepdim=True)
            d_du[t] = (g * Bt[t]).sum(-1, keepdim=True)
            dA += q * dtc[t]
            dBc[t] = (g * duc[t]).sum(2)
            dCc[t] = (X[t] * dyc[t]).sum(2)
        d_dt, d_du = lay.unseq(d_dt), lay.unseq(d_du)
        dA = dA.sum((0, 3)).reshape(lay.dim, lay.N)
        dB, dC = lay.unbc(dBc.unsqueeze(3), B), lay.unbc(dCc.unsqueeze(3), C)
        return d_dt, d_du, dA, dB, dC


def chunked_scan(
    dt: torch.Tensor, du: torch.Tensor, A: torch.Tensor, B: torch.Tensor, C: torch.Tensor
) -> tuple[torch.Tensor, torch.Tensor]:
    """y (batch, dim, L) and the last state (batch, dim, N); see ``ChunkedScan``."""
    return ChunkedScan.apply(dt, du, A, B, C)


def selective_scan_torch(
    u: torch.Tensor,
    delta: torch.Tensor,
    A: torch.Tensor,
    B: torch.Tensor,
    C: torch.Tensor,
    D: torch.Tensor | None = None,
    z: torch.Tensor | None = None,
    delta_bias: torch.Tensor | None = None,
    delta_softplus: bool = False,
    return_last_state: bool = False,
) -> torch.Tensor | tuple[torch.Tensor, torch.Tensor]:
    """Same contract as ``selective_scan``; differentiable on any device."""
    dtype_in = u.dtype
    u, delta = u.float(), delta.float()
    if delta_bias is not None:
        delta = delta + delta_bias.float()[:, None]
    if delta_softplus:
        delta = F.softplus(delta)
    y, last = chunked_scan(delta.contiguous(), (delta * u).contiguous(), A.float(), _grouped(B), _grouped(C))
    out = finish_output(y, u, D, z, dtype_in)
    return (out, last) if return_last_state else out


def _grouped(M: torch.Tensor) -> torch.Tensor:
    """B or C as float32 (batch|1, G, N, L|1); a (dim, N) matrix becomes one group per channel."""
    if M.dim() == 2:
        return M.float().reshape(1, M.shape[0], M.shape[1], 1)
    return (M.unsqueeze(1) if M.dim() == 3 else M).float()
