"""FieldFlow: the token flow-matching model for sparse-field reconstruction (Fourier features, Mamba tokens,
cross-attention to the observations), on the same floor as FieldUNet.

    forward(x_t (B, C, H, W), t (B,), observed (B, C, H, W), mask (B, 1, H, W)) -> velocity (B, C, H, W)
    forward(..., return_clean=True) -> the clean estimate x1_hat (B, C, H, W) the velocity is made from

The input stem is FieldUNet's (``field_inputs.stem_inputs``): per-field units from the observed pixels
(location and scale), x_t, the observations and mask, normalised convolutions at ``interp_widths`` times the
observation spacing with their certainties, and coordinates. The model predicts a correction to the middle
interpolant (its output layer starts near zero, so an untrained model is that interpolant), bounded to the
field's observed range widened by ``bound_margin`` times its span, and mapped back to data units; the velocity
is ``(x1_hat - x_t) / (1 - t)``, so one Euler step from t = 0 is the posterior-mean estimate.

Tokens. The stem is cut into ``patch`` x ``patch`` patches (zero-padded at the bottom and right: padding reads
as unobserved), each a query token: a linear embedding of its pixels, learnable Fourier features of its centre
(x, y in [0, 1]^2, pixel-centre units, so any H x W is the same unit square) and the time embedding. Every
observed pixel is also an observation token (position + value in field units); the counts differ across a
batch, so observation tokens are padded at the end and carried with a validity mask. (Per-pixel query tokens,
``patch=1`` without the stem, were the first design: 16 x more tokens and 5-8 x slower to train on a CPU.)

Both sequences are read along one order of the unit square (``hilbert`` by default; ``rows`` and ``random``
for ablations: a scan over points in arbitrary order is a known trap). The observations pass through
``max(1, n_layers // 2)`` encoder blocks; the queries through ``n_layers`` blocks of
cross-attention to the observations (plus a learned null token, so a field with no observation is defined;
with ``distance_bias`` each head also scores keys by a Gaussian of their distance, of learned width),
a token mixer, and an MLP, each modulated by the time embedding (adaLN). The mixer is the ``backbone``:
``mamba`` (Mamba scans along the order; ``directions="interleave"`` alternates forward and reversed from one
block to the next, ``"both"`` runs both in every block and sums them at twice the cost; dt comes from each
token, never from the length) or ``attention`` (all-pairs self-attention), with everything else identical.
The tokens go back to pixels by a linear map to ``refine`` channels per pixel (pixel shuffle), and one 3 x 3
convolution over them and the stem gives the correction at full resolution.

Padding never reaches real tokens: the forward scan is causal and padding sits at the end, the reversed scan
reverses each field's real tokens only, attention masks padded keys, and padded tokens are zeroed after every
block. Observation counts are padded up to a multiple of 32 (few distinct shapes for oneDNN's caches).
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import nn

from ssmseg.models.field_inputs import clean_from_correction, stem_channels, stem_inputs, velocity_to
from ssmseg.models.layers.embed import FourierFeatures, TimeEmbedding
from ssmseg.ssm.mamba import Mamba
from ssmseg.ssm.order import POINT_ORDERS, grid_coords, point_order

BACKBONES = ("mamba", "attention")
DIRECTIONS = ("interleave", "both")
OBS_BUCKET = 32


def reverse_index(valid: torch.Tensor) -> torch.Tensor:
    """(B, L) validity (a prefix of True per row) -> (B, L) gather index reversing each row's valid prefix and
    leaving the padding in place. It is its own inverse."""
    L = valid.shape[1]
    pos = torch.arange(L, device=valid.device).expand_as(valid)
    n = valid.sum(1, keepdim=True)
    return torch.where(pos < n, n - 1 - pos, pos)


def _gather(x: torch.Tensor, index: torch.Tensor) -> torch.Tensor:
    """x (B, L, D), index (B, L) -> x[b, index[b]]."""
    return x.gather(1, index[..., None].expand(-1, -1, x.shape[-1]))


def _reversed(fn: nn.Module, x: torch.Tensor, valid: torch.Tensor | None) -> torch.Tensor:
    """fn applied to each sequence read backwards (only the valid prefix when padded), put back in place."""
    if valid is None or bool(valid.all()):
        return fn(x.flip(1)).flip(1)
    rev = reverse_index(valid)
    return _gather(fn(_gather(x, rev)), rev)


class MambaMixer(nn.Module):
    """Mamba scans on (B, L, d) in the directions given: ``("forward",)``, ``("reverse",)`` or both (summed).
    Padding must sit at the end of each row (``valid`` a prefix): causal scans never read it."""

    def __init__(self, d_model: int, d_state: int, expand: int, d_conv: int, directions: tuple[str, ...]) -> None:
        super().__init__()
        self.directions = directions
        self.scans = nn.ModuleList(Mamba(d_model, d_state=d_state, d_conv=d_conv, expand=expand) for _ in directions)

    def forward(self, x: torch.Tensor, valid: torch.Tensor | None = None) -> torch.Tensor:
        out = 0
        for direction, scan in zip(self.directions, self.scans, strict=True):
            out = out + (scan(x) if direction == "forward" else _reversed(scan, x, valid))
        return out


class SelfAttention(nn.Module):
    """Multi-head self-attention on (B, L, d); padded keys are masked (a padded token still sees itself)."""

    def __init__(self, d_model: int, n_heads: int, dropout: float) -> None:
        super().__init__()
        self.n_heads, self.dropout = n_heads, dropout
        self.qkv = nn.Linear(d_model, 3 * d_model)
        self.out = nn.Linear(d_model, d_model)

    def forward(self, x: torch.Tensor, valid: torch.Tensor | None = None) -> torch.Tensor:
        b, L, d = x.shape
        q, k, v = self.qkv(x).view(b, L, 3, self.n_heads, d // self.n_heads).permute(2, 0, 3, 1, 4)
        mask = None
        if valid is not None and not bool(valid.all()):
            mask = (valid[:, None, :] | torch.eye(L, dtype=torch.bool, device=x.device))[:, None]
        y = F.scaled_dot_product_attention(q, k, v, attn_mask=mask, dropout_p=self.dropout if self.training else 0.0)
        return self.out(y.transpose(1, 2).reshape(b, L, d))


class CrossAttention(nn.Module):
    """Queries (B, L, d) attend to a memory (B, M, d) whose padded entries are masked.

    With ``distance_bias`` each head adds -|p_query - p_key|^2 / (2 sigma_h^2) to its scores: a Gaussian kernel of
    learned width (initialised log-spaced from 0.04 to 0.2 of the unit square), so attention starts out as a
    kernel interpolation of the observations and the content scores learn what distance alone misses. The bias
    is four extra dimensions of q and k (the |p_query|^2 term is the same for every key, so softmax drops it),
    which keeps SDPA's fused kernel (no (L, M) bias tensor); the null entry sits at distance 1 from every query.
    Computed in float32: the extra dimensions reach |p|^2 / sigma^2, too large for bfloat16's 8 bits.
    """

    def __init__(self, d_model: int, n_heads: int, dropout: float, distance_bias: bool = True) -> None:
        super().__init__()
        self.n_heads, self.dropout = n_heads, dropout
        self.q = nn.Linear(d_model, d_model)
        self.kv = nn.Linear(d_model, 2 * d_model)
        self.out = nn.Linear(d_model, d_model)
        self.log_sigma = nn.Parameter(torch.linspace(math.log(0.04), math.log(0.2), n_heads)) if distance_bias else None

    def forward(
        self,
        x: torch.Tensor,
        mem: torch.Tensor,
        mem_valid: torch.Tensor,
        q_pos: torch.Tensor,
        mem_pos: torch.Tensor,
        mem_null: torch.Tensor,
    ) -> torch.Tensor:
        """x (B, L, d), mem (B, M, d), mem_valid (B, M) bool; q_pos (L, 2) and mem_pos (B, M, 2) coordinates in
        [0, 1]^2; mem_null (B, M) bool: entries without a position (the null token)."""
        b, L, d = x.shape
        M = mem.shape[1]
        h, dh = self.n_heads, d // self.n_heads
        with torch.autocast(x.device.type, enabled=False):
            q = self.q(x).float().view(b, L, h, dh).transpose(1, 2)
            k, v = self.kv(mem).float().view(b, M, 2, h, dh).permute(2, 0, 3, 1, 4)
            if self.log_sigma is not None:
                inv = torch.exp(-2 * self.log_sigma.float())[:, None, None]  # 1 / sigma^2, (h, 1, 1)
                qp = q_pos.float() - 0.5
                q_extra = torch.cat(
                    [qp * inv, (-0.5 * inv).expand(h, L, 1), 0.5 * inv * qp.square().sum(-1, keepdim=True)], -1
                ) * math.sqrt(dh + 4)  # (h, L, 4); SDPA divides every score by sqrt(dh + 4)
                kp = mem_pos.float() - 0.5
                k_real = torch.cat([kp, kp.square().sum(-1, keepdim=True), torch.zeros_like(kp[..., :1])], -1)
                k_null = torch.tensor([0.0, 0.0, 1.0, 1.0], device=x.device)
                k_extra = torch.where(mem_null[..., None], k_null, k_real)  # (B, M, 4)
                q = torch.cat([q, q_extra.expand(b, h, L, 4)], -1)
                k = torch.cat([k, k_extra[:, None].expand(b, h, M, 4)], -1)
                v = F.pad(v, (0, 4))  # values as wide as keys: otherwise SDPA leaves its fused kernel (4x slower)
            y = F.scaled_dot_product_attention(
                q, k, v, attn_mask=mem_valid[:, None, None, :], dropout_p=self.dropout if self.training else 0.0
            )[..., :dh]
        return self.out(y.to(x.dtype).transpose(1, 2).reshape(b, L, d))


def _mlp(d_model: int, dropout: float, ratio: int = 2) -> nn.Sequential:
    return nn.Sequential(
        nn.Linear(d_model, ratio * d_model), nn.GELU(), nn.Dropout(dropout), nn.Linear(ratio * d_model, d_model)
    )


class ObservationBlock(nn.Module):
    """x + mixer(LN x), then x + MLP(LN x), on padded observation tokens; padding is zeroed."""

    def __init__(self, mixer: nn.Module, d_model: int, dropout: float) -> None:
        super().__init__()
        self.norm1, self.mixer = nn.LayerNorm(d_model), mixer
        self.norm2, self.mlp = nn.LayerNorm(d_model), _mlp(d_model, dropout)
        self.drop = nn.Dropout(dropout)

    def forward(self, x: torch.Tensor, valid: torch.Tensor) -> torch.Tensor:
        x = x + self.drop(self.mixer(self.norm1(x), valid))
        x = x + self.drop(self.mlp(self.norm2(x)))
        return x * valid[..., None]


class QueryBlock(nn.Module):
    """Cross-attention to the observations, the mixer over the queries, an MLP; each pre-norm with a
    time-dependent shift and scale (adaLN, starting at the identity)."""

    def __init__(self, mixer: nn.Module, d_model: int, n_heads: int, dropout: float, distance_bias: bool) -> None:
        super().__init__()
        self.norms = nn.ModuleList(nn.LayerNorm(d_model, elementwise_affine=False) for _ in range(3))
        self.cross = CrossAttention(d_model, n_heads, dropout, distance_bias)
        self.mixer = mixer
        self.mlp = _mlp(d_model, dropout)
        self.drop = nn.Dropout(dropout)
        self.modulation = nn.Linear(d_model, 6 * d_model)
        nn.init.zeros_(self.modulation.weight)
        nn.init.zeros_(self.modulation.bias)

    def forward(
        self, x: torch.Tensor, temb: torch.Tensor, pos: torch.Tensor, memory: tuple[torch.Tensor, ...]
    ) -> torch.Tensor:
        """x (B, L, d) at positions pos (L, 2); memory: (tokens, valid, positions, null) for CrossAttention."""
        mod = self.modulation(F.silu(temb))[:, None].chunk(6, dim=-1)

        def pre(i: int) -> torch.Tensor:
            return self.norms[i](x) * (1 + mod[2 * i]) + mod[2 * i + 1]

        mem, mem_valid, mem_pos, mem_null = memory
        x = x + self.drop(self.cross(pre(0), mem, mem_valid, pos, mem_pos, mem_null))
        x = x + self.drop(self.mixer(pre(1)))
        return x + self.drop(self.mlp(pre(2)))


class FieldFlow(nn.Module):
    """Clean field (and the velocity towards it) from patch tokens that attend to observation tokens, in
    per-field units (see the module docstring)."""

    predicts_clean = True  # the task trains x1_hat (return_clean=True) rather than the velocity
    per_field_units = True  # data in any affine units gives the same answer in those units

    def __init__(
        self,
        in_channels: int = 1,
        d_model: int = 48,
        n_layers: int = 4,
        d_state: int = 16,
        expand: int = 2,
        d_conv: int = 4,
        n_fourier: int = 64,
        fourier_scale: float = 8.0,
        backbone: str = "mamba",
        order: str = "hilbert",
        n_heads: int = 4,
        dropout: float = 0.0,
        directions: str = "interleave",
        distance_bias: bool = True,
        patch: int = 4,
        interp_widths: tuple[float, ...] = (0.5, 1.0, 2.0),
        bound_margin: float | None = 0.25,
        refine: int = 16,
    ) -> None:
        super().__init__()
        if directions not in DIRECTIONS:
            raise ValueError(f"unknown directions '{directions}'; valid: {', '.join(DIRECTIONS)}")
        if backbone not in BACKBONES:
            raise ValueError(f"unknown backbone '{backbone}'; valid backbones: {', '.join(BACKBONES)}")
        if order not in POINT_ORDERS:
            raise ValueError(f"unknown order '{order}'; valid orders: {', '.join(POINT_ORDERS)}")
        if d_model % n_heads:
            raise ValueError(f"d_model ({d_model}) must be a multiple of n_heads ({n_heads})")
        self.in_channels, self.backbone, self.order, self.patch = in_channels, backbone, order, patch
        self.interp_widths, self.bound_margin = tuple(interp_widths), bound_margin
        n_in = stem_channels(in_channels, len(self.interp_widths))
        self.embed = nn.Conv2d(n_in, d_model, patch, stride=patch)
        self.position = FourierFeatures(n_fourier, fourier_scale, d_model)
        self.time = TimeEmbedding(d_model)
        self.obs_in = nn.Linear(in_channels, d_model)
        self.null = nn.Parameter(torch.zeros(1, 1, d_model))  # always-visible memory entry
        nn.init.normal_(self.null, std=0.02)

        def mixer(i: int) -> nn.Module:
            if backbone == "attention":
                return SelfAttention(d_model, n_heads, dropout)
            dirs = ("forward", "reverse") if directions == "both" else (("forward", "reverse")[i % 2],)
            return MambaMixer(d_model, d_state, expand, d_conv, dirs)

        n_obs = max(1, n_layers // 2)
        self.obs_blocks = nn.ModuleList(ObservationBlock(mixer(i), d_model, dropout) for i in range(n_obs))
        self.obs_norm = nn.LayerNorm(d_model)
        self.blocks = nn.ModuleList(
            QueryBlock(mixer(i), d_model, n_heads, dropout, distance_bias) for i in range(n_layers)
        )
        self.head = nn.Sequential(nn.LayerNorm(d_model), nn.Linear(d_model, refine * patch * patch))
        self.refine = nn.Conv2d(refine + n_in, refine, 3, padding=1)
        self.out = nn.Conv2d(refine, in_channels, 1)
        nn.init.normal_(self.out.weight, std=1e-3)  # starts at the interpolant
        nn.init.zeros_(self.out.bias)
        self._orders: dict[tuple[int, int, str], tuple[torch.Tensor, torch.Tensor]] = {}

    def grid_order(self, h: int, w: int, device: torch.device) -> tuple[torch.Tensor, torch.Tensor]:
        """(perm (H*W,), coords in sequence order (H*W, 2)) for an H x W grid; cached per size."""
        key = (h, w, str(device))
        if key not in self._orders:
            coords = grid_coords(h, w)
            gen = torch.Generator().manual_seed(h * 100_003 + w)  # "random" is a fixed draw per size
            perm = point_order(coords, self.order, generator=gen)
            self._orders[key] = (perm.to(device), coords[perm].to(device))
        return self._orders[key]

    def memory(self, z_obs: torch.Tensor, m: torch.Tensor) -> tuple[torch.Tensor, ...]:
        """Observation tokens of fields z_obs (B, C, H, W) (field units) observed where m (B, 1, H, W), encoded:
        (tokens (B, 1 + M, d), valid (B, 1 + M), positions (B, 1 + M, 2), null (B, 1 + M)), the null entry first."""
        b, _, h, w = z_obs.shape
        perm, coords = self.grid_order(h, w, z_obs.device)
        mask = m.flatten(2).index_select(2, perm)[:, 0]  # (B, HW) in scan order
        values = z_obs.flatten(2).index_select(2, perm).transpose(1, 2)  # (B, HW, C)
        counts = mask.sum(1).long()
        # Rounded up to a multiple of 32: a handful of distinct lengths, so oneDNN reuses its convolution
        # primitives (building one for every new length costs more than the whole observation encoder).
        n_max = min(max(1, -(-int(counts.max()) // OBS_BUCKET) * OBS_BUCKET), h * w)
        idx = torch.argsort((mask < 0.5).to(torch.uint8), dim=1, stable=True)[:, :n_max]
        valid = torch.arange(n_max, device=z_obs.device)[None] < counts[:, None]
        o = (self.position(coords)[idx] + self.obs_in(_gather(values, idx))) * valid[..., None]
        for block in self.obs_blocks:
            o = block(o, valid)
        return (
            torch.cat([self.null.expand(b, -1, -1), self.obs_norm(o)], dim=1),
            torch.cat([valid.new_ones(b, 1), valid], dim=1),
            torch.cat([coords.new_zeros(b, 1, 2), coords[idx]], dim=1),
            torch.cat([valid.new_ones(b, 1), valid.new_zeros(b, n_max)], dim=1),
        )

    def forward(
        self,
        x_t: torch.Tensor,
        t: torch.Tensor,
        observed: torch.Tensor,
        mask: torch.Tensor,
        return_clean: bool = False,
    ) -> torch.Tensor:
        b, c, h, w = x_t.shape
        x, base, loc, scale = stem_inputs(x_t, t, observed, mask, self.interp_widths)
        p = self.patch
        ph, pw = (-h) % p, (-w) % p
        if ph or pw:  # zeros: padded pixels read as unobserved, with x_t = 0 and coordinates (0, 0)
            x = F.pad(x, (0, pw, 0, ph))
        gh, gw = (h + ph) // p, (w + pw) // p
        m = (mask > 0.5).to(x_t.dtype)
        memory = self.memory(x[:, c : 2 * c, :h, :w], m)  # the observed values in field units
        temb = self.time(t)

        perm, centres = self.grid_order(gh, gw, x_t.device)
        centres = centres * centres.new_tensor([gw * p / w, gh * p / h])  # patch centres in the field's units
        tokens = self.embed(x).flatten(2).index_select(2, perm).transpose(1, 2)  # (B, L, d) in scan order
        q = tokens + self.position(centres)[None] + temb[:, None]
        for block in self.blocks:
            q = block(q, temb, centres, memory)
        y = self.head(q).transpose(1, 2)  # (B, refine p^2, L) in scan order
        y = torch.empty_like(y).index_copy_(2, perm, y).view(b, -1, gh, gw)
        y = F.gelu(self.refine(torch.cat([F.pixel_shuffle(y, p), x], dim=1)))
        z = base + self.out(y)[..., :h, :w]
        clean = clean_from_correction(z, observed, mask, loc, scale, self.bound_margin)
        return clean if return_clean else velocity_to(clean, x_t, t)
