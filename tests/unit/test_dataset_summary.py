"""Dataset overview statistics: counts per label and split, co-occurrence, classes, examples."""

from __future__ import annotations

import random

import pytest

from app.domain.dataset_summary import (
    ALL_UNKNOWN,
    NONE_POSITIVE,
    Counts,
    class_name,
    examples_per_label,
    summarise,
)

NAMES = ("A", "B", "C")
# Missing labels, a CheXpert-style -1 code, a label outside NAMES and five splits.
ENTRIES = [
    ({"A": 1, "B": 1, "C": 0}, "train"),
    ({"A": 1, "B": 0, "C": 0}, "train"),
    ({"A": 1, "B": 0}, "train"),
    ({"A": 0, "B": 0, "C": 0}, "val"),
    ({"A": 0, "B": 0, "C": 0}, "test"),
    ({"A": 1, "B": 1, "C": 1}, "test"),
    ({"A": -1, "B": 1, "C": 0}, "val"),
    ({"A": 1, "B": 0, "C": 0}, "val"),
    ({}, "zeta"),
    ({"A": 1, "B": 0, "C": 0, "Other": 1}, "train"),
    ({"A": 0, "B": 0, "C": 0}, "external"),
]
SPLITS = ("train", "val", "test", "external", "zeta")


def counts(*per_split: int) -> Counts:
    return Counts(dict(zip(SPLITS, per_split, strict=True)), sum(per_split))


def test_splits_come_in_the_usual_order_then_sorted() -> None:
    s = summarise(NAMES, ENTRIES)
    assert s.n_images == 11
    assert list(s.splits.items()) == [
        ("train", 4),
        ("val", 3),
        ("test", 2),
        ("external", 1),
        ("zeta", 1),
    ]


def test_label_counts_per_split_with_missing_and_codes() -> None:
    a, b, c = summarise(NAMES, ENTRIES).labels
    assert (a.name, b.name, c.name) == NAMES
    assert a.positives == counts(4, 1, 1, 0, 0)
    assert a.negatives == counts(0, 2, 1, 1, 0)  # the -1 code counts as not positive
    assert a.missing == counts(0, 0, 0, 0, 1)
    assert a.prevalence == pytest.approx(0.6)
    assert b.positives == counts(1, 1, 1, 0, 0)
    assert b.negatives == counts(3, 2, 1, 1, 0)
    assert b.prevalence == pytest.approx(0.3)
    assert c.positives == counts(0, 0, 1, 0, 0)
    assert c.negatives == counts(3, 3, 1, 1, 0)
    assert c.missing == counts(1, 0, 0, 0, 1)
    assert c.prevalence == pytest.approx(1 / 9)
    for row in (a, b, c):
        assert row.positives.total + row.negatives.total + row.missing.total == 11


def test_cooccurrence_is_symmetric_with_positives_on_the_diagonal() -> None:
    s = summarise(NAMES, ENTRIES)
    assert s.cooccurrence == [[6, 2, 1], [2, 3, 1], [1, 1, 1]]
    k = len(NAMES)
    assert all(s.cooccurrence[i][j] == s.cooccurrence[j][i] for i in range(k) for j in range(k))
    assert [s.cooccurrence[i][i] for i in range(k)] == [r.positives.total for r in s.labels]


def test_classes_sorted_by_count_then_name() -> None:
    s = summarise(NAMES, ENTRIES)
    assert [(c.name, c.counts.total) for c in s.classes] == [
        ("A", 3),
        (NONE_POSITIVE, 3),
        ("A (C unknown)", 1),
        ("A + B", 1),
        ("A + B + C", 1),
        ("A=-1 + B", 1),
        (ALL_UNKNOWN, 1),
    ]
    first = s.classes[0]
    assert first.key == (1, 0, 0)
    assert first.counts == counts(2, 1, 0, 0, 0)
    assert first.share == pytest.approx(3 / 11)
    assert s.classes[1].counts == counts(0, 1, 1, 1, 0)
    assert sum(c.counts.total for c in s.classes) == s.n_images
    assert s.imbalance_ratio == pytest.approx(3.0)


def test_summary_does_not_depend_on_entry_order() -> None:
    shuffled = ENTRIES[:]
    random.Random(3).shuffle(shuffled)
    assert summarise(NAMES, shuffled) == summarise(NAMES, ENTRIES)


def test_one_hot_folder_classes_and_imbalance() -> None:
    names = ("NORMAL", "PNEUMONIA")
    entries = [({"NORMAL": 1, "PNEUMONIA": 0}, "train")] * 3
    entries += [({"NORMAL": 0, "PNEUMONIA": 1}, "test")] * 12
    s = summarise(names, entries)
    assert [(c.name, c.counts.total) for c in s.classes] == [("PNEUMONIA", 12), ("NORMAL", 3)]
    assert s.imbalance_ratio == pytest.approx(4.0)
    assert s.cooccurrence == [[3, 0], [0, 12]]
    assert list(s.splits) == ["train", "test"]


@pytest.mark.parametrize(
    ("key", "name"),
    [
        ((0, 0, 0, 0), NONE_POSITIVE),
        ((1, 0, 1, 0), "A + C"),
        ((0, None, 0, None), f"{NONE_POSITIVE} (B, D unknown)"),
        ((1, None, None, None), "A (3 unknown)"),
        ((None,) * 4, ALL_UNKNOWN),
        ((0, "0.5", 1, 0), "B=0.5 + C"),
        ((1, 0, 0, -1), "A + D=-1"),
    ],
)
def test_class_names(key: tuple, name: str) -> None:
    assert class_name(("A", "B", "C", "D"), key) == name


def test_empty_dataset() -> None:
    s = summarise(NAMES, [])
    assert s.n_images == 0
    assert s.splits == {}
    assert s.classes == ()
    assert s.imbalance_ratio is None
    assert [r.prevalence for r in s.labels] == [None, None, None]
    assert s.cooccurrence == [[0] * 3 for _ in range(3)]


def test_duplicate_label_names_are_refused() -> None:
    with pytest.raises(ValueError, match="duplicate"):
        summarise(("A", "A"), [])


def random_rows(n: int, seed: int) -> list[tuple[int, dict[str, int]]]:
    rng = random.Random(seed)
    rows = []
    for i in range(n):
        labels = {name: int(rng.random() < 0.3) for name in NAMES}
        if rng.random() < 0.1:
            del labels["B"]  # unknown: never positive
        rows.append((1000 + i, labels))
    return rows


def test_examples_are_positive_capped_and_deterministic() -> None:
    rows = random_rows(300, seed=1)
    examples = examples_per_label(NAMES, rows, per_label=8, seed=42)
    assert list(examples) == [*NAMES, NONE_POSITIVE]
    by_row = dict(rows)
    for name in NAMES:
        assert len(examples[name]) == 8
        assert examples[name] == sorted(set(examples[name]))
        assert all(by_row[r][name] == 1 for r in examples[name])
    assert all(not any(v == 1 for v in by_row[r].values()) for r in examples[NONE_POSITIVE])
    shuffled = rows[:]
    random.Random(9).shuffle(shuffled)
    assert examples_per_label(NAMES, shuffled, per_label=8, seed=42) == examples
    assert examples_per_label(NAMES, rows, per_label=8, seed=43) != examples


def test_examples_of_a_label_do_not_depend_on_other_labels() -> None:
    rows = random_rows(200, seed=2)
    alone = examples_per_label(("A",), rows, per_label=5, seed=0)["A"]
    assert examples_per_label(NAMES, rows, per_label=5, seed=0)["A"] == alone


def test_examples_with_few_positives_and_no_unlabelled_images() -> None:
    rows = [(0, {"A": 1, "B": 0}), (1, {"A": 1, "B": 1}), (2, {"A": 0, "B": 1})]
    examples = examples_per_label(("A", "B", "C"), rows, per_label=10, seed=0)
    assert examples == {"A": [0, 1], "B": [1, 2], "C": []}  # no NONE_POSITIVE: all have one
    assert examples_per_label(("A",), rows, per_label=0, seed=0) == {
        "A": [],
        NONE_POSITIVE: [],
    }
    with pytest.raises(ValueError, match="per_label"):
        examples_per_label(("A",), rows, per_label=-1, seed=0)
