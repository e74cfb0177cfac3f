from collections import Counter
from itertools import pairwise

import pytest

from app.domain.reader_study import (
    ImageRef,
    Selection,
    StudyDesign,
    reader_schedule,
    reader_seed,
    repeat_count,
    select_images,
)

LABELS = ("normal", "pneumonia")
SOURCES = ("ddpm", "gan")


def real_pool(per_label=30, labels=LABELS):
    return [ImageRef(f"r-{lab}-{i}", "real", lab) for lab in labels for i in range(per_label)]


def synthetic_pool(per_cell=10, labels=LABELS, sources=SOURCES):
    return [
        ImageRef(f"s-{lab}-{src}-{i}", "synthetic", lab, src)
        for lab in labels
        for src in sources
        for i in range(per_cell)
    ]


def counts(refs, *fields):
    return Counter(tuple(getattr(r, f) for f in fields) for r in refs)


def first_and_repeat_positions(schedule):
    first, gaps = {}, {}
    for item in schedule:
        if item.repeat:
            gaps[item.image_key] = item.position - first[item.image_key]
        else:
            first[item.image_key] = item.position
    return gaps


def selection_of(n, practice=0):
    scored = tuple(ImageRef(f"img{i:03d}", "real" if i % 2 else "synthetic") for i in range(n))
    extra = tuple(ImageRef(f"p{i}", "real") for i in range(practice))
    return Selection(scored=scored, practice=extra)


# --- design validation -------------------------------------------------------------------------


def test_validate_accepts_a_sound_design():
    design = StudyDesign(40, 0.5, repeat_share=0.1, practice_images=4, seed=3)
    assert design.validate() == []
    assert design.validate(real_pool(), synthetic_pool()) == []


def test_validate_reports_synthetic_shortfall_in_words():
    design = StudyDesign(40, 0.5, seed=1)
    problems = design.validate(real_pool(), synthetic_pool()[:12])
    assert problems == [
        "Asked for 40 images with 50% synthetic (20) but only 12 synthetic images are available."
    ]
    with pytest.raises(ValueError, match="only 12 synthetic images"):
        select_images(real_pool(), synthetic_pool()[:12], design)


def test_validate_reports_real_and_practice_shortfalls():
    assert StudyDesign(40, 0.25).validate(real_pool(per_label=10), synthetic_pool()) == [
        "Asked for 40 images with 25% synthetic (30 real) but only 20 real images are available."
    ]
    problems = StudyDesign(40, 0.5, practice_images=5).validate(real_pool(11), synthetic_pool(5))
    assert problems == [
        "Asked for 5 practice images but only 2 images are left besides the 40 scored ones; "
        "practice never reuses a scored image."
    ]


def test_validate_collects_every_numeric_problem():
    problems = StudyDesign(0, 1.5, repeat_share=0.7, practice_images=-1, seed=-2).validate()
    assert len(problems) == 5
    assert any("0.7" in p for p in problems) and any("1.5" in p for p in problems)


def test_validate_flags_mixed_up_origins_and_duplicate_keys():
    real = [*real_pool(2), ImageRef("s-normal-ddpm-0", "synthetic", "normal", "ddpm")]
    problems = StudyDesign(4, 0.5).validate(real, synthetic_pool(1))
    assert "The real list holds images of another origin: 's-normal-ddpm-0'." in problems
    assert "Image keys listed more than once: 's-normal-ddpm-0'." in problems


def test_image_ref_rejects_unknown_origin():
    with pytest.raises(ValueError, match="origin"):
        ImageRef("a", "fake")


# --- selection ---------------------------------------------------------------------------------


def test_selection_is_stratified_by_label_and_source():
    design = StudyDesign(40, 0.5, practice_images=4, seed=7)
    selection = select_images(real_pool(), synthetic_pool(), design)
    assert len(selection.scored) == 40
    assert counts(selection.scored, "origin", "label") == {
        ("real", "normal"): 10,
        ("real", "pneumonia"): 10,
        ("synthetic", "normal"): 10,
        ("synthetic", "pneumonia"): 10,
    }
    synthetic = [r for r in selection.scored if r.origin == "synthetic"]
    assert counts(synthetic, "label", "source") == {
        (lab, src): 5 for lab in LABELS for src in SOURCES
    }
    assert selection.notes == ()


def test_synthetic_count_rounds_half_up_and_odd_splits_differ_by_one():
    design = StudyDesign(15, 0.5, seed=2)
    assert (design.n_synthetic, design.n_real) == (8, 7)
    selection = select_images(real_pool(), synthetic_pool(), design)
    assert counts(selection.scored, "origin") == {("synthetic",): 8, ("real",): 7}
    real_labels = counts([r for r in selection.scored if r.origin == "real"], "label")
    assert sorted(real_labels.values()) == [3, 4]


def test_short_stratum_is_filled_from_the_others_with_a_note():
    # Only 3 synthetic pneumonia images exist, so the other label supplies the remaining 7.
    synthetic = synthetic_pool(labels=("normal",)) + synthetic_pool(labels=("pneumonia",))[:3]
    selection = select_images(real_pool(), synthetic, StudyDesign(40, 0.5, seed=5))
    synthetic_labels = counts([r for r in selection.scored if r.origin == "synthetic"], "label")
    assert synthetic_labels == {("normal",): 17, ("pneumonia",): 3}
    assert counts([r for r in selection.scored if r.origin == "real"], "label") == {
        ("normal",): 10,
        ("pneumonia",): 10,
    }
    assert any("Only 3 synthetic image(s) with label 'pneumonia'" in n for n in selection.notes)


def test_sources_stay_even_without_label_stratification():
    synthetic = synthetic_pool(sources=("a", "b", "c"))
    design = StudyDesign(24, 0.5, stratify_by_label=False, seed=11)
    selection = select_images(real_pool(), synthetic, design)
    synthetic_sources = counts([r for r in selection.scored if r.origin == "synthetic"], "source")
    assert synthetic_sources == {("a",): 4, ("b",): 4, ("c",): 4}


@pytest.mark.parametrize("seed", range(20))
def test_odd_split_within_labels_still_balances_sources_overall(seed):
    # 6 synthetic = 3 per label; each label's odd one must go to a different source.
    selection = select_images(real_pool(), synthetic_pool(), StudyDesign(12, 0.5, seed=seed))
    synthetic = [r for r in selection.scored if r.origin == "synthetic"]
    assert counts(synthetic, "source") == {("ddpm",): 3, ("gan",): 3}
    assert counts(synthetic, "label") == {("normal",): 3, ("pneumonia",): 3}


def test_label_present_on_one_side_only_is_noted():
    real = real_pool(labels=("normal", "covid"))
    selection = select_images(real, synthetic_pool(labels=("normal",)), StudyDesign(20, 0.5))
    assert any("Label 'covid' appears only among the real" in n for n in selection.notes)


def test_practice_is_disjoint_from_scored_and_half_synthetic():
    design = StudyDesign(40, 0.5, practice_images=6, seed=9)
    selection = select_images(real_pool(), synthetic_pool(), design)
    scored = {r.key for r in selection.scored}
    practice = {r.key for r in selection.practice}
    assert len(practice) == 6 and not scored & practice
    assert counts(selection.practice, "origin") == {("real",): 3, ("synthetic",): 3}


def test_practice_falls_back_to_the_other_origin():
    # 20 synthetic available and all 20 scored: practice can only be real.
    design = StudyDesign(40, 0.5, practice_images=4, seed=9)
    selection = select_images(real_pool(), synthetic_pool(per_cell=5), design)
    assert counts(selection.practice, "origin") == {("real",): 4}
    assert any("Practice has 4 real and 0 synthetic" in n for n in selection.notes)


def test_selection_is_deterministic_and_ignores_input_order():
    design = StudyDesign(40, 0.5, practice_images=4, seed=21)
    real, synthetic = real_pool(), synthetic_pool()
    first = select_images(real, synthetic, design)
    assert select_images(real[::-1], synthetic[::-1], design) == first
    other = select_images(real, synthetic, StudyDesign(40, 0.5, practice_images=4, seed=22))
    assert other.scored != first.scored


# --- schedules ---------------------------------------------------------------------------------


def test_schedule_starts_with_practice_then_every_scored_image_once_plus_repeats():
    selection = selection_of(40, practice=4)
    schedule = reader_schedule(selection, reader_seed=1, repeat_share=0.1)
    assert [item.position for item in schedule] == list(range(48))
    assert all(item.practice for item in schedule[:4])
    assert not any(item.practice for item in schedule[4:])
    assert {item.image_key for item in schedule[:4]} == {"p0", "p1", "p2", "p3"}
    firsts = [item.image_key for item in schedule[4:] if not item.repeat]
    assert sorted(firsts) == sorted(r.key for r in selection.scored)
    assert sum(item.repeat for item in schedule) == 4 == repeat_count(40, 0.1)


@pytest.mark.parametrize("seed", range(30))
def test_repeats_keep_the_minimum_gap(seed):
    schedule = reader_schedule(selection_of(30), reader_seed=seed, repeat_share=0.2, min_gap=5)
    gaps = first_and_repeat_positions(schedule)
    assert len(gaps) == 6
    assert min(gaps.values()) >= 5


@pytest.mark.parametrize(
    ("n", "share", "gap"), [(2, 0.5, 2), (3, 0.5, 2), (6, 0.5, 4), (8, 0.1, 5)]
)
def test_short_studies_shrink_the_gap_but_never_repeat_back_to_back(n, share, gap):
    for seed in range(40):
        schedule = reader_schedule(selection_of(n), reader_seed=seed, repeat_share=share)
        gaps = first_and_repeat_positions(schedule)
        assert len(gaps) == repeat_count(n, share)
        assert min(gaps.values()) >= gap
        keys = [item.image_key for item in schedule]
        assert all(a != b for a, b in pairwise(keys))


def test_repeat_count_is_the_nearest_whole_number_without_float_noise():
    assert repeat_count(100, 0.07) == 7
    assert repeat_count(41, 0.1) == 4
    assert repeat_count(12, 0.17) == 2  # the design page's "17%" of 12; a ceiling gave 3
    assert repeat_count(10, 0.05) == 1  # halves round up
    assert repeat_count(40, 0.01) == 1  # a share above 0 repeats at least one image
    assert repeat_count(40, 0.0) == 0


def test_schedule_is_reproducible_and_differs_between_readers():
    selection = selection_of(40, practice=4)
    a = reader_schedule(selection, reader_seed=reader_seed(5, 0), repeat_share=0.1)
    assert reader_schedule(selection, reader_seed=reader_seed(5, 0), repeat_share=0.1) == a
    b = reader_schedule(selection, reader_seed=reader_seed(5, 1), repeat_share=0.1)
    assert [i.image_key for i in a[4:]] != [i.image_key for i in b[4:]]
    # Order of the selection's tuples must not matter, only their content.
    flipped = Selection(selection.scored[::-1], selection.practice[::-1])
    assert reader_schedule(flipped, reader_seed=reader_seed(5, 0), repeat_share=0.1) == a


def test_schedule_rejects_overlap_and_bad_parameters():
    overlapping = Selection(
        scored=(ImageRef("a", "real"), ImageRef("b", "real")), practice=(ImageRef("a", "real"),)
    )
    with pytest.raises(ValueError, match="disjoint"):
        reader_schedule(overlapping, reader_seed=0, repeat_share=0.0)
    with pytest.raises(ValueError, match="repeat_share"):
        reader_schedule(selection_of(10), reader_seed=0, repeat_share=0.6)
    with pytest.raises(ValueError, match="min_gap"):
        reader_schedule(selection_of(10), reader_seed=0, repeat_share=0.1, min_gap=1)


def test_reader_seeds_are_stable_distinct_and_study_specific():
    seeds = [reader_seed(42, i) for i in range(500)]
    assert len(set(seeds)) == 500
    assert seeds[0] == reader_seed(42, 0)
    assert all(0 <= s < 2**64 for s in seeds)
    # Not a simple offset: study 1's reader 1 differs from study 2's reader 0.
    assert reader_seed(1, 1) != reader_seed(2, 0)
    with pytest.raises(ValueError):
        reader_seed(1, -1)
