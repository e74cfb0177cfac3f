"""Patient-level stratified splits and the benchmark subsets (label combinations, samples)."""

from __future__ import annotations

from collections import Counter, defaultdict

import numpy as np
import pytest

from ml.data.splits import patient_split
from ml.data.subsets import by_label_combinations, by_samples_per_class

FRACTIONS = {"train": 0.7, "val": 0.1, "test": 0.2}
COMMON = [(0, 0), (1, 0), (0, 1)]
RARE = (1, 1)


def synthetic(seed: int, n_images: int = 200, n_patients: int = 60) -> list[tuple[str, str, tuple]]:
    """200 images of 60 patients (1 to 7 images each); 4 patients carry the rare combination."""
    rng = np.random.default_rng(seed)
    owner = np.concatenate([np.arange(n_patients), rng.integers(0, n_patients, n_images - 60)])
    rng.shuffle(owner)
    combo_of = {p: COMMON[int(rng.integers(0, 3))] for p in range(n_patients)}
    for p in range(4):
        combo_of[p] = RARE
    entries = []
    for i, p in enumerate(owner):
        # One image in ten disagrees with its patient's usual combination.
        combo = combo_of[int(p)] if rng.random() > 0.1 else COMMON[int(rng.integers(0, 3))]
        entries.append((f"img{i:03d}", f"pt{int(p):02d}", combo))
    return entries


def patient_of(entries: list[tuple[str, str, tuple]]) -> dict[str, str]:
    return {k: p for k, p, _ in entries}


@pytest.mark.parametrize("data_seed", range(5))
def test_no_patient_in_two_splits_and_proportions(data_seed: int) -> None:
    entries = synthetic(data_seed)
    owner = patient_of(entries)
    for seed in range(40):
        split = patient_split(entries, FRACTIONS, seed=seed)
        assert set(split) == set(owner)
        per_patient: dict[str, set[str]] = defaultdict(set)
        for key, name in split.items():
            per_patient[owner[key]].add(name)
        assert all(len(s) == 1 for s in per_patient.values())
        counts = Counter(split.values())
        for name, fraction in FRACTIONS.items():
            assert abs(counts[name] / len(entries) - fraction) <= 0.03, (seed, counts)


def test_rare_combination_reaches_every_split() -> None:
    for data_seed in range(5):
        entries = synthetic(data_seed)
        rare_patients = {p for _, p, c in entries if c == RARE}
        for seed in range(20):
            split = patient_split(entries, FRACTIONS, seed=seed)
            splits_with_rare = {split[k] for k, p, _ in entries if p in rare_patients}
            assert splits_with_rare == set(FRACTIONS)


def test_rare_combination_with_too_few_patients_stays_whole() -> None:
    entries = [(f"c{i}", f"p{i}", "common") for i in range(30)]
    entries += [("r0", "rare-patient", "rare"), ("r1", "rare-patient", "rare")]
    split = patient_split(entries, seed=1)
    assert split["r0"] == split["r1"]


def test_common_strata_keep_their_proportions() -> None:
    entries = [(f"a{i}", f"pa{i}", "a") for i in range(100)]
    entries += [(f"b{i}", f"pb{i}", "b") for i in range(50)]
    split = patient_split(entries, FRACTIONS, seed=0)
    for prefix, n in (("a", 100), ("b", 50)):
        counts = Counter(v for k, v in split.items() if k.startswith(prefix))
        for name, fraction in FRACTIONS.items():
            assert abs(counts[name] - fraction * n) <= 1


def test_deterministic_and_order_independent() -> None:
    entries = synthetic(7)
    first = patient_split(entries, FRACTIONS, seed=11)
    assert patient_split(entries, FRACTIONS, seed=11) == first
    assert patient_split(list(reversed(entries)), FRACTIONS, seed=11) == first
    others = [patient_split(entries, FRACTIONS, seed=s) for s in range(12, 16)]
    assert any(o != first for o in others)


def test_zero_fraction_and_bad_fractions() -> None:
    entries = synthetic(2)
    split = patient_split(entries, {"train": 0.8, "val": 0.0, "test": 0.2}, seed=0)
    assert set(split.values()) == {"train", "test"}
    with pytest.raises(ValueError):
        patient_split(entries, {"train": 0.8, "test": 0.1})
    with pytest.raises(ValueError):
        patient_split(entries, {"train": 1.2, "test": -0.2})
    with pytest.raises(ValueError, match="duplicate"):
        patient_split([("a", "p", 1), ("a", "q", 1)])
    assert patient_split([]) == {}


def subset_entries() -> list[tuple[str, tuple, str]]:
    """Class sizes 40, 25, 12, 6, 3 images; every class has train, val and test images."""
    entries = []
    for c, size in enumerate((40, 25, 12, 6, 3)):
        for i in range(size):
            split = "test" if i % 5 == 0 else "val" if i % 5 == 1 else "train"
            entries.append((f"c{c}-{i:02d}", (c, c % 2), split))
    return entries


def test_by_label_combinations_keeps_k_most_frequent() -> None:
    entries = subset_entries()
    keys, description = by_label_combinations(entries, 3, seed=0)
    assert len(keys) == 40 + 25 + 12
    assert {k.split("-")[0] for k in keys} == {"c0", "c1", "c2"}
    assert keys == [k for k, _, _ in entries if k in set(keys)]  # input order
    assert "3 most frequent of 5" in description and "77 of 86" in description
    assert len(by_label_combinations(entries, 10, seed=0).keys) == len(entries)


def test_by_label_combinations_tie_is_seeded() -> None:
    entries = [(f"{c}{i}", c, "train") for c in "abcd" for i in range(5)]
    chosen = {frozenset(k[0] for k in by_label_combinations(entries, 2, s).keys) for s in range(30)}
    assert len(chosen) > 1
    assert by_label_combinations(entries, 2, 4) == by_label_combinations(entries, 2, 4)


def test_by_samples_per_class_caps_train_only() -> None:
    entries = subset_entries()
    split_of = {k: s for k, _, s in entries}
    class_of = {k: c for k, c, _ in entries}
    for n in (1, 5, 10, 30):
        keys, description = by_samples_per_class(entries, n, seed=3)
        kept = set(keys)
        # Held-out images are never removed.
        assert {k for k, s in split_of.items() if s != "train"} <= kept
        train_counts = Counter(class_of[k] for k in keys if split_of[k] == "train")
        available = Counter(class_of[k] for k in split_of if split_of[k] == "train")
        assert train_counts == {c: min(n, m) for c, m in available.items()}
        assert f"at most {n} train images" in description
    small = set(by_samples_per_class(entries, 5, seed=3).keys)
    large = set(by_samples_per_class(entries, 10, seed=3).keys)
    assert small <= large  # nested along the axis for one seed
    shuffled = list(reversed(entries))
    assert set(by_samples_per_class(shuffled, 5, seed=3).keys) == small
    assert set(by_samples_per_class(entries, 5, seed=4).keys) != small


def test_subsets_reject_bad_arguments() -> None:
    entries = subset_entries()
    with pytest.raises(ValueError):
        by_samples_per_class(entries, 0)
    with pytest.raises(ValueError):
        by_label_combinations(entries, 0)
    with pytest.raises(ValueError, match="duplicate"):
        by_label_combinations([*entries, entries[0]], 2)
