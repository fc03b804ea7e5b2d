"""MicroSegFormer: a small hierarchical efficient-attention encoder (overlapping patch embeddings,
spatial-reduction attention, Mix-FFN) with an all-MLP decoder and dropout.
(B, bands, H, W) -> (B, classes, H, W)."""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn


class EfficientAttention(nn.Module):
    """Self-attention whose keys and values come from a map reduced by ``sr`` (cost / sr^2)."""

    def __init__(self, dim: int, heads: int, sr: int) -> None:
        super().__init__()
        self.attn = nn.MultiheadAttention(dim, heads, batch_first=True)
        self.sr = nn.Conv2d(dim, dim, sr, stride=sr) if sr > 1 else None
        self.norm = nn.LayerNorm(dim) if sr > 1 else None

    def forward(self, x: torch.Tensor, h: int, w: int) -> torch.Tensor:
        kv = x
        if self.sr is not None:
            b, _, c = x.shape
            kv = self.sr(x.transpose(1, 2).reshape(b, c, h, w)).flatten(2).transpose(1, 2)
            kv = self.norm(kv)
        return self.attn(x, kv, kv, need_weights=False)[0]


class MixFFN(nn.Module):
    def __init__(self, dim: int, ratio: int = 4) -> None:
        super().__init__()
        hidden = dim * ratio
        self.fc1, self.fc2 = nn.Linear(dim, hidden), nn.Linear(hidden, dim)
        self.dw = nn.Conv2d(hidden, hidden, 3, padding=1, groups=hidden)

    def forward(self, x: torch.Tensor, h: int, w: int) -> torch.Tensor:
        y = self.fc1(x)
        b, _, c = y.shape
        y = self.dw(y.transpose(1, 2).reshape(b, c, h, w)).flatten(2).transpose(1, 2)
        return self.fc2(F.gelu(y))


class Block(nn.Module):
    def __init__(self, dim: int, heads: int, sr: int) -> None:
        super().__init__()
        self.n1, self.n2 = nn.LayerNorm(dim), nn.LayerNorm(dim)
        self.attn, self.ffn = EfficientAttention(dim, heads, sr), MixFFN(dim)

    def forward(self, x: torch.Tensor, h: int, w: int) -> torch.Tensor:
        x = x + self.attn(self.n1(x), h, w)
        return x + self.ffn(self.n2(x), h, w)


class MicroSegFormer(nn.Module):
    def __init__(
        self, in_channels: int, num_classes: int, width: int = 32, depth: int = 3, dropout: float = 0.1
    ) -> None:
        super().__init__()
        dims = [width * 2**i for i in range(depth + 1)]
        self.embeds = nn.ModuleList()
        self.blocks = nn.ModuleList()
        for i, dim in enumerate(dims):
            cin, k, s = (in_channels, 7, 4) if i == 0 else (dims[i - 1], 3, 2)
            self.embeds.append(nn.Sequential(nn.Conv2d(cin, dim, k, s, k // 2), nn.GroupNorm(1, dim)))
            sr = 2 ** max(0, len(dims) - 1 - i)
            self.blocks.append(Block(dim, heads=max(1, dim // 32), sr=sr))
        dec = dims[0] * 2
        self.proj = nn.ModuleList(nn.Conv2d(d, dec, 1) for d in dims)
        self.fuse = nn.Sequential(nn.Conv2d(dec * len(dims), dec, 1), nn.GroupNorm(1, dec), nn.GELU())
        self.drop = nn.Dropout2d(dropout)
        self.head = nn.Conv2d(dec, num_classes, 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        size = x.shape[-2:]
        feats, y = [], x
        for embed, block in zip(self.embeds, self.blocks, strict=True):
            y = embed(y)
            b, c, h, w = y.shape
            t = block(y.flatten(2).transpose(1, 2), h, w)
            y = t.transpose(1, 2).reshape(b, c, h, w)
            feats.append(y)
        top = feats[0].shape[-2:]
        fused = [
            F.interpolate(p(f), size=top, mode="bilinear", align_corners=False)
            for p, f in zip(self.proj, feats, strict=True)
        ]
        logits = self.head(self.drop(self.fuse(torch.cat(fused, dim=1))))
        return F.interpolate(logits, size=size, mode="bilinear", align_corners=False)
