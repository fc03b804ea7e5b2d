"""Which patches each process sees in each epoch: a seeded permutation per epoch, optionally capped
(``data.max_patches``), split across ranks so that the ranks' batches together form the batch a single
process would have drawn."""

from __future__ import annotations

from collections.abc import Iterator

import torch
from torch.utils.data import Sampler


class EpochSampler(Sampler[int]):
    def __init__(
        self, n: int, seed: int, rank: int = 0, world: int = 1, shuffle: bool = True, max_items: int | None = None
    ) -> None:
        self.n, self.seed, self.rank, self.world = n, seed, rank, world
        self.shuffle, self.max_items, self.epoch = shuffle, max_items, 0

    def set_epoch(self, epoch: int) -> None:
        self.epoch = epoch

    def _order(self) -> list[int]:
        if self.shuffle:
            g = torch.Generator().manual_seed(self.seed * 1_000_003 + self.epoch)
            order = torch.randperm(self.n, generator=g).tolist()
        else:
            order = list(range(self.n))
        if self.max_items is not None:
            order = order[: self.max_items]
        if self.shuffle and self.world > 1 and len(order) % self.world:
            order += order[: self.world - len(order) % self.world]  # equal steps on every rank
        return order

    def __iter__(self) -> Iterator[int]:
        return iter(self._order()[self.rank :: self.world])

    def __len__(self) -> int:
        return len(self._order()[self.rank :: self.world])
