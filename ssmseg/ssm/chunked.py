"""Pure-PyTorch selective scan for any device: a two-level chunked scan of multiplies and adds.

The sequence is cut into chunks of about sqrt(L) steps. Level one scans every chunk at once from a zero
state (a Python loop over the chunk length, each step a batched op over all chunks), keeping the running
product of the decays; level two carries the state across chunk boundaries (a loop over the chunks).
About 2 sqrt(L) small steps in all, never one per time step. Only products of decays in [0, 1] are formed,
so large dt cannot overflow the way factored exp(+-A cumsum(dt)) formulations do.
"""

from __future__ import annotations

import math

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


def chunked_scan(
    dt: torch.Tensor, du: torch.Tensor, A: torch.Tensor, B: torch.Tensor, C: torch.Tensor
) -> tuple[torch.Tensor, torch.Tensor]:
    """y_t = C_t . x_t with x_t = exp(dt_t A) x_{t-1} + du_t B_t, x_{-1} = 0.

    dt, du: (batch, dim, L); A: (dim, N); B, C: (batch|1, G, N, L|1) with G dividing dim.
    Returns y (batch, dim, L) and the last state (batch, dim, N). Pass one scans every chunk from a zero
    state, keeping only its final state and decay product; the carry loop gives each chunk's true
    starting state; pass two rescans from those states, reducing each step to y at once, so no
    (batch, dim, L, N) tensor of states is kept.
    """
    batch, dim, L = dt.shape
    N = A.shape[1]
    G = B.shape[1]
    T = _chunk_len(L)
    # Steps laid out (T, batch, G, dim/G, nc, N): one contiguous slice per step of the loops below.
    dtc = _to_chunks(dt, T).reshape(T, batch, G, dim // G, -1, 1)
    duc = _to_chunks(du, T).reshape(T, batch, G, dim // G, -1, 1)
    nc = dtc.shape[-2]
    Ac = A.reshape(1, 1, G, dim // G, 1, N)

    def bc(M: torch.Tensor) -> torch.Tensor:
        """(b, G, N, L|1) -> (T|1, b, G, 1, nc|1, N); padded steps see 0."""
        if M.shape[-1] == 1:
            return M.squeeze(-1).reshape(1, M.shape[0], G, 1, 1, N)
        return _to_chunks(M, T).transpose(-1, -2).contiguous().unsqueeze(3)

    Bc, Cc = bc(B), bc(C)
    decay = torch.exp(dtc * Ac)  # padded steps have dt = 0: decay 1, drive 0
    drive = duc * Bc
    shape = (batch, G, dim // G, nc, N)
    h = decay.new_zeros(shape)
    p = decay.new_ones(shape)
    for a_t, b_t in zip(decay.unbind(0), drive.unbind(0), strict=True):
        h = a_t * h + b_t
        p = p * a_t
    carry = h.new_zeros(batch, G, dim // G, N)
    starts = []
    for p_c, h_c in zip(p.unbind(-2), h.unbind(-2), strict=True):
        starts.append(carry)
        carry = p_c * carry + h_c
    x = torch.stack(starts, dim=-2)
    ys = []
    for a_t, b_t, c_t in zip(decay.unbind(0), drive.unbind(0), Cc.expand(T, *Cc.shape[1:]).unbind(0), strict=True):
        x = a_t * x + b_t
        ys.append((x * c_t).sum(-1))
    y = torch.stack(ys, dim=-1).reshape(batch, dim, nc * T)[..., :L]
    return y, carry.reshape(batch, dim, N)


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
    """Same contract as ``selective_scan``; differentiable through autograd on any device."""
    dtype_in = u.dtype
    u, delta = u.float(), delta.float()
    if delta_bias is not None:
        delta = delta + delta_bias.float()[:, None]
    if delta_softplus:
        delta = F.softplus(delta)
    y, last = chunked_scan(delta, delta * u, A.float(), _grouped(B, u), _grouped(C, u))
    out = finish_output(y, u, D, z, dtype_in)
    return (out, last) if return_last_state else out


def _grouped(M: torch.Tensor, u: torch.Tensor) -> torch.Tensor:
    """B or C as float32 (batch|1, G, N, L|1); a (dim, N) matrix becomes one group per channel."""
    if M.dim() == 2:
        return M.float().reshape(1, M.shape[0], M.shape[1], 1)
    return (M.unsqueeze(1) if M.dim() == 3 else M).float()
