"""Descriptive statistics of a prepared dataset's labels, for its overview page: pure functions.

An entry is one image's labels plus its split. Only the value 1 counts as positive; any other
value (0, or a code such as CheXpert's -1) counts as "not positive", and a label absent from an
image is "missing" (unknown, or uncertain and ignored). A class is a unique label combination:
the tuple of each label's value in `label_names` order, None where the label is missing, as in
the benchmark subsets of `ml.data.subsets`.
"""

from __future__ import annotations

import random
from collections import Counter
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass

LabelValue = int | str
ClassKey = tuple[LabelValue | None, ...]

NONE_POSITIVE = "none positive"
ALL_UNKNOWN = "all unknown"
SPLIT_ORDER = ("train", "val", "test")
# Up to this many unknown labels are named in a class name; beyond it only counted, since a
# list of ten names makes an unreadable table row.
_NAMED_UNKNOWN = 2


@dataclass(frozen=True)
class Counts:
    """Images per split (every split of the dataset, in `DatasetSummary.splits` order)."""

    by_split: dict[str, int]
    total: int


@dataclass(frozen=True)
class LabelRow:
    name: str
    positives: Counts
    negatives: Counts  # known and not 1 (0 or another code)
    missing: Counts
    prevalence: float | None  # positives / (positives + negatives); None with no known value


@dataclass(frozen=True)
class ClassRow:
    key: ClassKey
    name: str
    counts: Counts
    share: float  # of all images


@dataclass(frozen=True)
class DatasetSummary:
    label_names: tuple[str, ...]
    n_images: int
    splits: dict[str, int]
    labels: tuple[LabelRow, ...]
    cooccurrence: list[list[int]]  # [i][j]: images with labels i and j both positive
    classes: tuple[ClassRow, ...]  # by count descending, then name
    imbalance_ratio: float | None  # largest class / smallest class; None with no images


def is_positive(value: LabelValue | None) -> bool:
    # Stored labels are ints or strings ("0.5"), so the string "1" never stands for positive.
    return not isinstance(value, str) and value == 1


def class_name(label_names: Sequence[str], key: ClassKey) -> str:
    """Readable name of a label combination, e.g. "Edema + Effusion (Pneumonia unknown)"."""
    parts: list[str] = []
    unknown: list[str] = []
    for name, value in zip(label_names, key, strict=True):
        if value is None:
            unknown.append(name)
        elif is_positive(value):
            parts.append(name)
        elif value != 0:
            parts.append(f"{name}={value}")
    if unknown and len(unknown) == len(key):
        return ALL_UNKNOWN
    text = " + ".join(parts) or NONE_POSITIVE
    if len(unknown) > _NAMED_UNKNOWN:
        text += f" ({len(unknown)} unknown)"
    elif unknown:
        text += f" ({', '.join(unknown)} unknown)"
    return text


def summarise(
    label_names: Sequence[str], entries: Iterable[tuple[Mapping[str, LabelValue], str]]
) -> DatasetSummary:
    """Counts per label, split and label combination. Labels not in `label_names` are ignored."""
    names = tuple(label_names)
    if len(set(names)) != len(names):
        raise ValueError("duplicate label names")
    # Everything below is derived from (class, split) counts: far fewer than images.
    tally: Counter[tuple[ClassKey, str]] = Counter(
        (tuple(labels.get(n) for n in names), split) for labels, split in entries
    )
    split_totals: Counter[str] = Counter()
    for (_, split), n in tally.items():
        split_totals[split] += n
    splits = _ordered_splits(split_totals)
    classes = _class_rows(names, tally, splits)
    totals = [row.counts.total for row in classes]
    return DatasetSummary(
        label_names=names,
        n_images=sum(splits.values()),
        splits=splits,
        labels=tuple(_label_row(i, name, tally, splits) for i, name in enumerate(names)),
        cooccurrence=_cooccurrence(len(names), tally),
        classes=classes,
        imbalance_ratio=max(totals) / min(totals) if totals else None,
    )


def examples_per_label(
    label_names: Sequence[str],
    entries: Iterable[tuple[int, Mapping[str, LabelValue]]],
    per_label: int,
    seed: int,
) -> dict[str, list[int]]:
    """Up to `per_label` row indices of positive images for each label, ascending.

    Entries are (row index, labels). Every label gets a key, possibly with an empty list; when
    some images have no positive label they are sampled too, under `NONE_POSITIVE`. The sample
    depends only on the seed, the label and the set of rows, not on their order.
    """
    if per_label < 0:
        raise ValueError(f"per_label must be >= 0, got {per_label}")
    pools: dict[str, list[int]] = {name: [] for name in label_names}
    none_positive: list[int] = []
    for row, labels in entries:
        positive = [n for n in label_names if is_positive(labels.get(n))]
        for name in positive:
            pools[name].append(row)
        if not positive:
            none_positive.append(row)
    if none_positive:
        pools[NONE_POSITIVE] = none_positive
    return {name: _sample(rows, per_label, seed, name) for name, rows in pools.items()}


def _sample(rows: list[int], n: int, seed: int, name: str) -> list[int]:
    # One generator per label, so adding a label or an image of another label leaves this
    # label's sample unchanged; string seeds are hashed the same way on every platform.
    rng = random.Random(f"{seed}\0{name}")  # noqa: S311 - a display sample, not a secret
    return sorted(rng.sample(sorted(rows), min(n, len(rows))))


def _ordered_splits(counts: Counter[str]) -> dict[str, int]:
    known = [s for s in SPLIT_ORDER if s in counts]
    others = sorted(s for s in counts if s not in SPLIT_ORDER)
    return {s: counts[s] for s in [*known, *others]}


def _counts(by_split: Counter[str], splits: Mapping[str, int]) -> Counts:
    return Counts({s: by_split[s] for s in splits}, sum(by_split.values()))


def _label_row(
    index: int, name: str, tally: Counter[tuple[ClassKey, str]], splits: Mapping[str, int]
) -> LabelRow:
    pos: Counter[str] = Counter()
    neg: Counter[str] = Counter()
    miss: Counter[str] = Counter()
    for (key, split), n in tally.items():
        value = key[index]
        bucket = miss if value is None else pos if is_positive(value) else neg
        bucket[split] += n
    known = pos.total() + neg.total()
    return LabelRow(
        name=name,
        positives=_counts(pos, splits),
        negatives=_counts(neg, splits),
        missing=_counts(miss, splits),
        prevalence=pos.total() / known if known else None,
    )


def _cooccurrence(k: int, tally: Counter[tuple[ClassKey, str]]) -> list[list[int]]:
    matrix = [[0] * k for _ in range(k)]
    for (key, _), n in tally.items():
        positive = [i for i, value in enumerate(key) if is_positive(value)]
        for i in positive:
            for j in positive:
                matrix[i][j] += n
    return matrix


def _class_rows(
    names: tuple[str, ...], tally: Counter[tuple[ClassKey, str]], splits: Mapping[str, int]
) -> tuple[ClassRow, ...]:
    per_class: dict[ClassKey, Counter[str]] = {}
    for (key, split), n in tally.items():
        per_class.setdefault(key, Counter())[split] += n
    n_images = sum(splits.values())
    rows = [
        ClassRow(key, class_name(names, key), _counts(c, splits), c.total() / n_images)
        for key, c in per_class.items()
    ]
    # repr(key) breaks ties between equally named classes so the order never depends on input.
    rows.sort(key=lambda r: (-r.counts.total, r.name, repr(r.key)))
    return tuple(rows)
