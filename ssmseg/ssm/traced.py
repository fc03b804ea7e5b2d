"""The selective scan as it is exported (``ssmseg export``): TorchScript loops whose trip counts are read from
the input, so a traced model keeps them as loops (an ONNX ``Loop``) and takes any sequence length, instead
of one unrolled step per position of the traced example.

It is the chunked scan's two levels (``chunked.py``) written for TorchScript: the length is cut into chunks of
about sqrt(L) steps; level one runs every chunk at once from a zero state, level two carries the state
across chunk boundaries. About 2 sqrt(L) iterations, each a batched op (a loop per time step is quadratic in
ONNX Runtime, whose loop outputs are sequences copied on every append), and only products of decays in [0, 1].
``selective_scan`` uses it whenever it is traced, whatever the backend (the fused kernels cannot be traced).
"""

from __future__ import annotations

from functools import lru_cache

import torch
import torch.nn.functional as F

from ssmseg.ssm.inputs import expand_bc, finish_output


def _two_level(decay: torch.Tensor, drive: torch.Tensor, C: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """x_t = decay_t x_{t-1} + drive_t, y_t = <x_t, C_t>; (batch, dim, L, N) each -> y (batch, dim, L), x_L."""
    b, d, L, n = decay.shape
    # T = ceil(sqrt(L)) and nc = ceil(L / T) in integers only: exported, sqrt, ceil and // come back as floats,
    # which ONNX refuses in a shape. A few dozen integer steps.
    T = 1
    while T * T < L:
        T += 1
    nc = 1
    while nc * T < L:
        nc += 1
    pad = nc * T - L  # padded steps: decay 1, drive 0, so the state passes through them unchanged
    a = torch.cat([decay, torch.ones_like(decay[:, :, :1]).expand(b, d, pad, n)], dim=2).reshape(b, d, nc, T, n)
    u = torch.cat([drive, torch.zeros_like(drive[:, :, :1]).expand(b, d, pad, n)], dim=2).reshape(b, d, nc, T, n)
    h = torch.zeros_like(a[:, :, :, 0])
    p = torch.ones_like(a[:, :, :, 0])
    hs: list[torch.Tensor] = []
    ps: list[torch.Tensor] = []
    for t in range(T):  # level one: every chunk from a zero state, with the running product of its decays
        h = a[:, :, :, t] * h + u[:, :, :, t]
        p = p * a[:, :, :, t]
        hs.append(h)
        ps.append(p)
    s = torch.zeros_like(h[:, :, 0])
    starts: list[torch.Tensor] = []
    for k in range(nc):  # level two: the state entering each chunk
        starts.append(s)
        s = p[:, :, k] * s + h[:, :, k]
    states = torch.stack(hs, dim=3) + torch.stack(ps, dim=3) * torch.stack(starts, dim=2).unsqueeze(3)
    y = (states.reshape(b, d, nc * T, n)[:, :, :L] * C).sum(-1)
    return y, s


@lru_cache(maxsize=1)
def _scripted():  # compiled on the first trace only: importing ssmseg compiles nothing
    return torch.jit.script(_two_level)


def selective_scan_traced(
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
    """``selective_scan_fn``'s contract (as ``reference.py``), in float32, through ``_two_level``."""
    dtype_in = u.dtype
    u, delta = u.float(), delta.float()
    if delta_bias is not None:
        delta = delta + delta_bias.float()[:, None]
    if delta_softplus:
        delta = F.softplus(delta)
    batch, dim, L = u.shape
    Bx, Cx = expand_bc(B, dim).float(), expand_bc(C, dim).float()  # (batch|1, dim, N, L|1)
    decay = torch.exp(delta.unsqueeze(-1) * A.float()[None, :, None, :])  # (batch, dim, L, N)
    drive = (delta * u).unsqueeze(-1) * Bx.transpose(-1, -2)
    Ct = Cx.transpose(-1, -2).expand(batch, dim, L, A.shape[1]).contiguous()
    fn = _scripted() if torch.jit.is_tracing() else _two_level
    y, last = fn(decay, drive, Ct)
    out = finish_output(y, u, D, z, dtype_in)
    return (out, last) if return_last_state else out
