"""Benchmark subsets of a prepared dataset along two axes: how many classes, how many samples.

A class is a unique label combination (for multi-label data, e.g. (pneumonia=1, effusion=0)).
Entries are `(key, label_combination, split)`. Both functions are deterministic for a seed,
independent of input order, and return the kept keys in input order plus a description that a
job stores next to its results.

`by_samples_per_class` caps only the training split: val and test are kept whole, so every
point on the samples-per-class axis is scored on the same held-out images and the numbers are
comparable along the axis.
"""

from __future__ import annotations

from collections import Counter, defaultdict
from collections.abc import Hashable, Sequence
from typing import NamedTuple

import numpy as np

SubsetEntry = tuple[str, Hashable, str]  # (image key, label combination, split)

__all__ = ["Subset", "SubsetEntry", "by_label_combinations", "by_samples_per_class"]


class Subset(NamedTuple):
    keys: list[str]
    description: str


def _sort_key(value: Hashable) -> str:
    return repr(value)


def _check_unique(entries: Sequence[SubsetEntry]) -> None:
    keys = [e[0] for e in entries]
    if len(set(keys)) != len(keys):
        raise ValueError("duplicate image keys")


def by_label_combinations(entries: Sequence[SubsetEntry], k: int, seed: int = 0) -> Subset:
    """Keep the `k` most frequent label combinations (counted over all splits) and their images.

    Equally frequent combinations at the cut are chosen in a seeded random order, so no class
    wins a tie merely by how its labels sort.
    """
    if k < 1:
        raise ValueError(f"k must be >= 1, got {k}")
    _check_unique(entries)
    counts = Counter(combo for _, combo, _ in entries)
    classes = sorted(counts, key=_sort_key)
    rng = np.random.default_rng(seed)
    classes = [classes[i] for i in rng.permutation(len(classes))]
    classes.sort(key=lambda c: -counts[c])  # stable: ties keep the seeded order
    kept = set(classes[:k])
    keys = [key for key, combo, _ in entries if combo in kept]
    shown = ", ".join(f"{c!r}: {counts[c]}" for c in classes[:k])
    description = (
        f"label combinations: the {len(kept)} most frequent of {len(classes)} "
        f"({shown}); {len(keys)} of {len(entries)} images kept"
    )
    return Subset(keys, description)


def by_samples_per_class(
    entries: Sequence[SubsetEntry], n: int, seed: int = 0, *, train_split: str = "train"
) -> Subset:
    """At most `n` training images per label combination; other splits are kept whole.

    The training images of each class are a seeded sample without replacement; for one seed
    the subset for a smaller `n` is contained in the subset for a larger one.
    """
    if n < 1:
        raise ValueError(f"n must be >= 1, got {n}")
    _check_unique(entries)
    train: dict[Hashable, list[str]] = defaultdict(list)
    for key, combo, split in entries:
        if split == train_split:
            train[combo].append(key)
    rng = np.random.default_rng(seed)
    chosen: set[str] = set()
    capped = 0
    for combo in sorted(train, key=_sort_key):
        keys = sorted(train[combo])  # sorted so input order cannot change the sample
        # One full permutation per class whatever n is: the rng stream, and so the order, is
        # the same for every n, which makes smaller subsets nested in larger ones.
        perm = rng.permutation(len(keys))
        capped += len(keys) > n
        chosen.update(keys[i] for i in perm[:n])
    kept = [key for key, _, split in entries if split != train_split or key in chosen]
    n_train = sum(len(v) for v in train.values())
    n_other = len(entries) - n_train
    description = (
        f"samples per class: at most {n} {train_split} images per label combination "
        f"({capped} of {len(train)} classes capped; {len(chosen)} of {n_train} {train_split} "
        f"images kept); other splits kept whole ({n_other} images)"
    )
    return Subset(kept, description)
