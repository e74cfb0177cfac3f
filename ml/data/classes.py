"""The classes of a prepared dataset's split, without torch (the web forms count them too).

A class is a unique label combination of the chosen split, numbered by frequency (most
frequent first, ties by name) so class 0 is the same in every run on the same data.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

from ml.data.store import LabelValue, PreparedDataset

__all__ = ["SplitClasses", "class_name", "split_classes"]


def class_name(label_names: Sequence[str], combo: tuple[LabelValue | None, ...]) -> str:
    """'pneumonia', 'Edema + Effusion', 'none positive': the names shown on grids and sets."""
    positive = [n for n, v in zip(label_names, combo, strict=True) if v == 1]
    return " + ".join(positive) if positive else "none positive"


@dataclass(frozen=True)
class SplitClasses:
    rows: np.ndarray  # store rows of the split
    combos: tuple[tuple[LabelValue | None, ...], ...]  # one per class, in class order
    names: tuple[str, ...]
    labels: list[int]  # class index of each row


def split_classes(store: PreparedDataset, split: str | None) -> SplitClasses:
    rows = store.indices(split) if split else np.arange(len(store))
    if rows.size == 0:
        raise ValueError(f"the dataset has no {split!r} images")
    combos = [store.label_tuple(store.entries[i]) for i in rows]
    counts = Counter(combos)
    names = store.info.label_names
    ordered = sorted(counts, key=lambda c: (-counts[c], class_name(names, c), repr(c)))
    index = {c: i for i, c in enumerate(ordered)}
    return SplitClasses(
        rows=rows,
        combos=tuple(ordered),
        names=tuple(class_name(names, c) for c in ordered),
        labels=[index[c] for c in combos],
    )
