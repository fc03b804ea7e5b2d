"""Leak-free assignment of spatial blocks (or whole sources) to train/val/test and to folds.

Assignment is stratified: first every class is given to every split that lacks it, from the blocks that
hold it, as far as the data allows; then the remaining blocks go to the split furthest below its share of
labelled pixels. Folds are drawn over the non-test units the same way, independently of train/val, so
``cover_folds`` then moves the fewest val units into train (each with a train unit back to val where that keeps
the shares) until every fold's training part (the train units outside it) holds every class found outside the
fold, as far as the data allows. ``find_leaks`` proves the result: no labelled pixel of a val/test patch lies
inside any training patch's window.
"""

from __future__ import annotations

from collections import defaultdict
from typing import Any

import numpy as np

from ssmseg.errors import InputError

SPLITS = ("train", "val", "test")


# What a split unit is in each prep.split.mode, and how to get more of them.
UNITS = {
    "blocks": ("blocks", "use a smaller prep.split.block_size"),
    "sources": ("source files", "add image files (each whole file is one unit) or use prep.split.mode blocks"),
    "random": ("patches", "use a smaller data.crop_size or more images"),
}


def stratified_assign(
    counts: np.ndarray, shares: list[float], seed: int, mode: str = "blocks", what: str = "splits"
) -> np.ndarray:
    """counts (units, classes) labelled pixels per unit -> group per unit (index into shares)."""
    rng = np.random.default_rng(seed)
    n_units, n_classes = counts.shape
    groups = [g for g, s in enumerate(shares) if s > 0]
    if n_units < len(groups):
        unit, fix = UNITS.get(mode, UNITS["blocks"])
        fix += " or fewer folds (prep.split.folds, cv --folds)" if what == "folds" else ""
        raise InputError(f"{n_units} {unit} cannot fill {len(groups)} {what} (prep.split.mode {mode}); {fix}")
    assigned = np.full(n_units, -1)
    have = np.zeros((len(shares), n_classes), dtype=np.int64)
    # Each group needs at least one unit; then every class in every group, rarest class first.
    for c in np.argsort(counts.sum(0), kind="stable"):
        for g in groups:
            if have[g, c] > 0:
                continue
            free = np.flatnonzero((assigned < 0) & (counts[:, c] > 0))
            still_empty = [h for h in groups if not (assigned == h).any()]
            if len(free) == 0 or (assigned < 0).sum() <= len(still_empty) - (g in still_empty):
                continue
            best = free[np.flatnonzero(counts[free, c] == counts[free, c].max())]
            unit = int(rng.choice(best))
            assigned[unit] = g
            have[g] += counts[unit]
    for g in groups:  # a group still empty gets the smallest free unit
        if not (assigned == g).any():
            free = np.flatnonzero(assigned < 0)
            unit = int(free[np.argmin(counts[free].sum(1))])
            assigned[unit] = g
            have[g] += counts[unit]
    total = max(int(counts.sum()), 1)
    for unit in sorted(np.flatnonzero(assigned < 0), key=lambda u: (-counts[u].sum(), rng.random())):
        deficit = [shares[g] - have[g].sum() / total if shares[g] > 0 else -np.inf for g in range(len(shares))]
        g = int(np.argmax(deficit))
        assigned[unit] = g
        have[g] += counts[unit]
    return assigned


def assign_splits(
    counts: np.ndarray, ratios: tuple[float, float, float], seed: int, mode: str = "blocks"
) -> np.ndarray:
    """0 train, 1 val, 2 test for each unit."""
    return stratified_assign(counts, list(ratios), seed, mode)


def assign_folds(counts: np.ndarray, split: np.ndarray, k: int, seed: int, mode: str = "blocks") -> np.ndarray:
    """Fold 0..k-1 for every non-test unit (train and val together); -1 for test."""
    eligible = np.flatnonzero(split != 2)
    folds = np.full(len(split), -1)
    if len(eligible) < k:
        unit, fix = UNITS.get(mode, UNITS["blocks"])
        raise InputError(
            f"{k} folds need at least {k} {unit} outside the test split, found {len(eligible)} "
            f"(prep.split.mode {mode}); lower prep.split.folds, or {fix}"
        )
    folds[eligible] = stratified_assign(counts[eligible], [1.0 / k] * k, seed + 1, mode, "folds")
    return folds


def _trained(counts: np.ndarray, split: np.ndarray, folds: np.ndarray, k: int) -> np.ndarray:
    """(k + 1, classes) bool: class in the train units outside fold f (row f), and in the train split (row k)."""
    train = split == SPLITS.index("train")
    rows = [counts[train & (folds >= 0) & (folds != f)].sum(0) > 0 for f in range(k)]
    return np.array([*rows, counts[train].sum(0) > 0])


def _validated(counts: np.ndarray, split: np.ndarray, folds: np.ndarray, k: int) -> np.ndarray:
    """(k + 1,) bool: labelled val pixels outside fold f (entry f), and in the val split (entry k)."""
    val = (split == SPLITS.index("val")) & (counts.sum(1) > 0)
    parts = [bool((val & (folds >= 0) & (folds != f)).any()) for f in range(k)]
    return np.array([*parts, bool(val.any())])


def training_gaps(counts: np.ndarray, split: np.ndarray, folds: np.ndarray, k: int) -> list[tuple[int, int]]:
    """(fold, class) for every class found in the non-test units outside a fold but in none of its train units."""
    outside = [counts[(folds >= 0) & (folds != f)].sum(0) > 0 for f in range(k)]
    trained = _trained(counts, split, folds, k)
    return [(f, c) for f in range(k) for c in range(counts.shape[1]) if outside[f][c] and not trained[f, c]]


def cover_folds(
    counts: np.ndarray, split: np.ndarray, folds: np.ndarray, k: int, seed: int, ratios: tuple[float, ...]
) -> np.ndarray:
    """The split per unit, repaired so that every fold's training part holds every class found outside the fold.

    For each gap (rarest class first) one val unit outside the fold that holds the class moves to train (the one
    closing most gaps, then with most pixels of it); a train unit then moves back to val when that keeps every
    class covered and restores a class val lost or brings val closer to its share (preferred in that order: a
    restored class, the same fold, a class val lacks, the nearest size).
    A move that would leave a fold (or the whole split) without labelled val pixels is not made. Gaps no move can
    close (the class lies in one fold only) stay: ``untrainable`` words them. counts (units, classes)."""
    split = split.copy()
    rng = np.random.default_rng(seed + 2)
    val = SPLITS.index("val")
    share = ratios[val] / max(ratios[SPLITS.index("train")] + ratios[val], 1e-9)  # of the non-test pixels
    target = share * int(counts[folds >= 0].sum())
    need_val = _validated(counts, split, folds, k)
    moved_in: set[int] = set()
    skipped: set[tuple[int, int]] = set()
    order = {int(c): r for r, c in enumerate(np.argsort(counts.sum(0), kind="stable"))}
    while gaps := sorted(set(training_gaps(counts, split, folds, k)) - skipped, key=lambda g: (order[g[1]], g[0])):
        f, c = gaps[0]
        cands = np.flatnonzero((split == val) & (folds >= 0) & (folds != f) & (counts[:, c] > 0))
        ranked = sorted(
            (-sum(bool(counts[u, h] > 0) and folds[u] != g for g, h in gaps), -int(counts[u, c]), tie, int(u))
            for u, tie in zip(cands, rng.random(len(cands)), strict=True)
        )
        for *_, u in ranked:
            if _move(counts, split, folds, k, u, moved_in, need_val, target, rng):
                moved_in.add(u)
                break
        else:
            skipped.add((f, c))
    return split


def _move(counts, split, folds, k, u, moved_in, need_val, target, rng) -> bool:
    """Move val unit ``u`` into train, and a train unit back to val where that restores a class val lost, brings
    val closer to its share or keeps the val parts labelled; False (nothing moved) when they cannot stay labelled.
    Every train unit is weighed at once: O(units x folds x classes)."""
    train, val = SPLITS.index("train"), SPLITS.index("val")
    size = counts.sum(1)
    had = counts[split == val].sum(0) > 0
    split[u] = train
    in_train = split == train
    outside = (folds[None, :] >= 0) & (folds[None, :] != np.arange(k)[:, None])  # (k, units)
    parts = np.concatenate([outside & in_train[None], in_train[None]]).astype(np.int64) @ counts  # (k + 1, classes)
    after = _validated(counts, split, folds, k)
    needed = not (after >= need_val).all()
    v = np.flatnonzero(in_train & (folds >= 0) & (size > 0))
    v = v[(v != u) & ~np.isin(v, list(moved_in))]
    left = np.concatenate([outside[:, v], np.ones((1, len(v)), bool)]).T  # (v, k + 1): the parts v leaves
    # v may go when every class it holds keeps a train pixel in every part it leaves, and the val parts stay labelled
    keeps = ~(left[:, :, None] & (counts[v][:, None, :] > 0) & (parts[None] == counts[v][:, None, :])).any((1, 2))
    labelled = ((after[None] | left) >= need_val[None]).all(1)
    val_size = size[split == val].sum()
    closer = np.abs(val_size + size[v] - target) < abs(val_size - target)
    lacks = counts[split == val].sum(0) == 0
    restores = ((counts[v] > 0) & (had & lacks)[None]).sum(1)
    ok = keeps & labelled & ((restores > 0) | closer | needed)
    if ok.any():
        adds = ((counts[v] > 0) & lacks[None]).sum(1)
        keys = (rng.random(len(v)), np.abs(size[v] - size[u]), -adds, folds[v] != folds[u], -restores)
        split[v[ok][np.lexsort([key[ok] for key in keys])[0]]] = val
    elif needed:
        split[u] = val
        return False
    return True


def untrainable(classes: list[str], trained: dict[int, list[int]], heldout: dict[int, list[int]]) -> list[str]:
    """One line per fold and class whose held-out pixels no training pixel outside the fold can teach.
    ``trained``/``heldout``: fold -> labelled pixels per class of its training part / of the fold itself."""
    return [
        f"fold_{f}: {name} ({heldout[f][c]} held-out px) has no training pixels outside this fold; "
        "no method can learn it there"
        for f in sorted(heldout)
        for c, name in enumerate(classes)
        if heldout[f][c] > 0 and trained[f][c] == 0
    ]


def _intersect(a: tuple[int, int, int, int], b: tuple[int, int, int, int]) -> tuple[int, int, int, int] | None:
    """Intersection of two (row, col, h, w) windows, or None."""
    r0, c0 = max(a[0], b[0]), max(a[1], b[1])
    r1, c1 = min(a[0] + a[2], b[0] + b[2]), min(a[1] + a[3], b[1] + b[3])
    return (r0, c0, r1 - r0, c1 - c0) if r1 > r0 and c1 > c0 else None


def _train_index(patches: list[dict], cell: int) -> dict[tuple[int, int, int], list[int]]:
    index: dict[tuple[int, int, int], list[int]] = defaultdict(list)
    for i, p in enumerate(patches):
        if p["split"] != "train":
            continue
        r, c, h, w = p["window"]
        for cr in range(r // cell, (r + h - 1) // cell + 1):
            for cc in range(c // cell, (c + w - 1) // cell + 1):
                index[(p["source"], cr, cc)].append(i)
    return index


def _near_train(patches: list[dict], i: int, index: dict, cell: int, margin: int) -> set[int]:
    r, c, h, w = patches[i]["window"]
    found: set[int] = set()
    for cr in range((r - margin) // cell, (r + h + margin - 1) // cell + 1):
        for cc in range((c - margin) // cell, (c + w + margin - 1) // cell + 1):
            found.update(index.get((patches[i]["source"], cr, cc), ()))
    return found


def apply_buffer(patches: list[dict], labels: Any, buffer: int, ignore_index: int) -> int:
    """Ignore val/test labels within ``buffer`` pixels of any training window; returns pixels ignored.
    ``labels`` is indexed per patch (``labels[i]`` read, ``labels[i] = patch`` written back)."""
    cell = max(max(p["window"][2] for p in patches), 1)
    index = _train_index(patches, cell)
    dropped = 0
    for i, p in enumerate(patches):
        if p["split"] == "train":
            continue
        for j in _near_train(patches, i, index, cell, buffer):
            r, c, h, w = patches[j]["window"]
            grown = (r - buffer, c - buffer, h + 2 * buffer, w + 2 * buffer)
            hit = _intersect(p["window"], grown)
            if hit:
                rr, cc = hit[0] - p["window"][0], hit[1] - p["window"][1]
                patch = labels[i]
                region = patch[rr : rr + hit[2], cc : cc + hit[3]]
                dropped += int((region != ignore_index).sum())
                region[...] = ignore_index
                labels[i] = patch
    return dropped


def find_leaks(patches: list[dict], labels: Any, ignore_index: int) -> list[str]:
    """Every val/test patch with a labelled pixel inside a training window, as readable lines."""
    cell = max(max(p["window"][2] for p in patches), 1)
    index = _train_index(patches, cell)
    leaks = []
    for i, p in enumerate(patches):
        if p["split"] == "train":
            continue
        for j in _near_train(patches, i, index, cell, 0):
            hit = _intersect(p["window"], patches[j]["window"])
            if hit:
                rr, cc = hit[0] - p["window"][0], hit[1] - p["window"][1]
                n = int((labels[i][rr : rr + hit[2], cc : cc + hit[3]] != ignore_index).sum())
                if n:
                    leaks.append(f"{p['split']} patch {i} shares {n} labelled pixels with train patch {j}")
    return leaks
