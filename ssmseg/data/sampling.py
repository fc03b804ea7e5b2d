"""Which patches each process sees in each epoch: a seeded permutation per epoch, optionally capped
(``data.max_patches``), split across ranks so that the ranks' batches together form the batch a single
process would have drawn. With per-item weights (``data.balance``), each epoch instead draws its items with
replacement in proportion to the weights (``balanced_weights``: class-balanced patch sampling)."""

from __future__ import annotations

from collections.abc import Iterator, Sequence

import numpy as np
import torch
from torch.utils.data import Sampler


class EpochSampler(Sampler[int]):
    def __init__(
        self,
        n: int,
        seed: int,
        rank: int = 0,
        world: int = 1,
        shuffle: bool = True,
        max_items: int | None = None,
        weights: Sequence[float] | None = None,
    ) -> None:
        self.n, self.seed, self.rank, self.world = n, seed, rank, world
        self.shuffle, self.max_items, self.epoch = shuffle, max_items, 0
        self.weights = None if weights is None else torch.as_tensor(weights, dtype=torch.float64)
        if self.weights is not None and (len(self.weights) != n or not self.weights.sum() > 0):
            raise ValueError(f"weights: {len(self.weights)} values for {n} items, none positive or too few")

    def set_epoch(self, epoch: int) -> None:
        self.epoch = epoch

    def _order(self) -> list[int]:
        if self.shuffle and self.weights is not None:  # as many draws as an epoch has items, with replacement
            g = torch.Generator().manual_seed(self.seed * 1_000_003 + self.epoch)
            order = torch.multinomial(self.weights, self.n, replacement=True, generator=g).tolist()
        elif self.shuffle:
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


def balanced_weights(counts: np.ndarray, balance: float) -> np.ndarray:
    """Per-item sampling weights from ``counts`` (items, classes) of labelled pixels: ``balance`` 0 draws every
    item alike; 1 draws a class uniformly, then an item in proportion to its pixels of that class (each class
    present in training is then as likely as any other); between, a mixture of the two. (items,) summing to 1;
    items without a labelled pixel get only the uniform share."""
    counts = np.asarray(counts, np.float64)
    uniform = np.full(len(counts), 1.0 / len(counts))
    totals = counts.sum(0)
    present = totals > 0
    if balance <= 0 or not present.any():
        return uniform
    per_class = counts[:, present] / totals[present]  # each present class's pixels spread over the items: sums 1
    balanced = per_class.sum(1) / present.sum()
    return (1 - balance) * uniform + balance * balanced
