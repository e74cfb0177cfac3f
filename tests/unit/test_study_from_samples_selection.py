"""Which real images a sampling job's reader study gets: per-label counts, split preference,
shortfalls, determinism, and the study design built from the two sets."""

from __future__ import annotations

from collections import Counter

import pytest

from app.domain.real_matching import (
    Candidate,
    match_key,
    match_real_images,
    rank_candidates,
    shortfall_notes,
    split_order,
    study_design,
)
from app.studies.from_samples import FromSamplesError, parse_study_options

ORDER = ("test", "val", "train")


def _pool(spec: dict[tuple[str, str], int]) -> list[Candidate]:
    """Candidates with consecutive rows, `spec[(label, split)]` of each."""
    out: list[Candidate] = []
    for (label, split), n in spec.items():
        out += [Candidate(len(out) + i, label, split) for i in range(n)]
    return out


def test_counts_match_the_synthetic_counts_per_label() -> None:
    pool = _pool({("normal", "test"): 10, ("pneumonia", "test"): 10, ("other", "test"): 5})
    match = match_real_images(pool, {"normal": 4, "pneumonia": 6}, ORDER)
    assert match.counts == Counter({"normal": 4, "pneumonia": 6})
    assert match.complete
    assert len({c.row for c in match.picked}) == 10  # without replacement


def test_test_split_first_then_val_then_train() -> None:
    pool = _pool({("a", "train"): 5, ("a", "val"): 2, ("a", "test"): 3})
    match = match_real_images(pool, {"a": 7}, ORDER)
    assert match.by_split == Counter({"test": 3, "val": 2, "train": 2})
    assert [c.split for c in match.picked] == ["test"] * 3 + ["val"] * 2 + ["train"] * 2


def test_held_out_images_suffice_so_train_is_untouched() -> None:
    pool = _pool({("a", "train"): 50, ("a", "test"): 4, ("a", "val"): 4})
    match = match_real_images(pool, {"a": 8}, ORDER)
    assert match.by_split == Counter({"test": 4, "val": 4})


def test_not_enough_real_images_takes_what_exists_and_says_so() -> None:
    pool = _pool({("a", "test"): 2, ("a", "train"): 1, ("b", "val"): 9})
    wanted = {"a": 5, "b": 5, "c": 3}
    match = match_real_images(pool, wanted, ORDER)
    assert match.counts == Counter({"a": 3, "b": 5})
    assert not match.complete
    notes = shortfall_notes(wanted, match.counts)
    assert notes == [
        "Label 'a': only 3 real image(s) for 5 synthetic; the dataset has no more.",
        "Label 'c': only 0 real image(s) for 3 synthetic; the dataset has no more.",
    ]
    assert shortfall_notes({"a": 2}, {"a": 2}) == []


def test_deterministic_with_a_seed_and_independent_of_input_order() -> None:
    pool = _pool({("a", "test"): 30, ("b", "test"): 30})
    first = match_real_images(pool, {"a": 5, "b": 5}, ORDER, seed=3)
    again = match_real_images(list(reversed(pool)), {"a": 5, "b": 5}, ORDER, seed=3)
    other = match_real_images(pool, {"a": 5, "b": 5}, ORDER, seed=4)
    assert first == again
    assert {c.row for c in first.picked} != {c.row for c in other.picked}


def test_a_row_keeps_its_rank_when_other_rows_come_and_go() -> None:
    pool = _pool({("a", "test"): 20})
    full = rank_candidates(pool, ORDER, seed=0)["a"]
    fewer = rank_candidates(pool[::2], ORDER, seed=0)["a"]
    assert [c for c in full if c in fewer] == fewer


def test_unusable_candidates_are_skipped_and_the_next_taken() -> None:
    pool = _pool({("a", "test"): 6})
    asked: list[int] = []

    def usable(candidate: Candidate) -> bool:
        asked.append(candidate.row)
        return candidate.row % 2 == 0

    match = match_real_images(pool, {"a": 2}, ORDER, usable=usable)
    assert [c.row % 2 for c in match.picked] == [0, 0]
    # Asked only until the label had enough: costly work happens for few rows.
    assert asked[-1] == match.picked[-1].row and len(asked) < len(pool)


def test_splits_outside_the_order_are_not_used() -> None:
    pool = _pool({("a", "test"): 1, ("a", "holdout"): 5})
    assert match_real_images(pool, {"a": 3}, ("test",)).counts == Counter({"a": 1})


def test_bad_wanted_counts_are_refused() -> None:
    with pytest.raises(ValueError, match="whole numbers"):
        match_real_images([], {"a": -1}, ORDER)


@pytest.mark.parametrize(
    ("available", "trained_on", "expected"),
    [
        (["train", "val", "test"], "train", ("test", "val", "train")),
        (["train", "test"], "train", ("test", "train")),
        (["train", "val", "test"], "test", ("val", "train", "test")),
        (["train", "val", "test", "extra"], "train", ("test", "val", "extra", "train")),
        (["train", "val", "test"], None, ("test", "val", "train")),
    ],
)
def test_split_order_puts_the_training_split_last(
    available: list[str], trained_on: str | None, expected: tuple[str, ...]
) -> None:
    assert split_order(available, trained_on) == expected


def test_match_key_changes_with_every_input_but_not_dict_order() -> None:
    base = match_key("h", 32, ORDER, 0, {"a": 1, "b": 2})
    assert base == match_key("h", 32, ORDER, 0, {"b": 2, "a": 1})
    variants = [
        match_key("g", 32, ORDER, 0, {"a": 1, "b": 2}),
        match_key("h", 64, ORDER, 0, {"a": 1, "b": 2}),
        match_key("h", 32, ("val", "test", "train"), 0, {"a": 1, "b": 2}),
        match_key("h", 32, ORDER, 1, {"a": 1, "b": 2}),
        match_key("h", 32, ORDER, 0, {"a": 1, "b": 3}),
    ]
    assert base not in variants and len(set(variants)) == len(variants)


def test_study_design_uses_every_image_stratified_by_label_and_source() -> None:
    design = study_design(12, 12, None, seed=5)
    assert (design.n_images, design.n_synthetic, design.n_real) == (24, 12, 12)
    assert design.stratify_by_label and design.stratify_by_source
    assert design.practice_images == 0 and design.seed == 5 and design.validate() == []


def test_study_design_with_fewer_images_keeps_the_ratio_and_caps_at_the_pool() -> None:
    short = study_design(12, 6, None, seed=0)
    assert (short.n_synthetic, short.n_real) == (12, 6)
    fewer = study_design(12, 6, 9, seed=0)
    assert (fewer.n_synthetic, fewer.n_real) == (6, 3)
    assert study_design(4, 4, 100, seed=0).n_images == 8


def test_parse_study_options() -> None:
    assert parse_study_options("  My   study ", "") == parse_study_options("My study", " ")
    options = parse_study_options("", "10")
    assert options.name is None and options.n_images == 10
    for bad in ("1", "x", "-4"):
        with pytest.raises(FromSamplesError, match="whole number from 2"):
            parse_study_options("", bad)
    with pytest.raises(FromSamplesError, match="longer than"):
        parse_study_options("x" * 201, "")
