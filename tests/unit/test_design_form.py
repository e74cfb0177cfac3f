"""The study design form: every field parsed or reported, nothing half-built."""

from __future__ import annotations

from app.studies.design import StoredDesign, load_design
from app.studies.design_form import parse_design_form

GOOD = {
    "name": "CXR study",
    "n_images": "20",
    "synthetic_percent": "50",
    "repeat_percent": "10",
    "practice_images": "2",
    "stratify_label": "on",
    "reason_required": "on",
    "answers": "real_fake_uncertain",
    "confidence": "1-5",
    "margin": "0.1",
    "second_prompt": "Which finding?",
    "second_choices": "none, consolidation , effusion",
    "seed": "42",
}


def test_good_form_builds_design_and_reading_options() -> None:
    parsed = parse_design_form(GOOD, ["3", "1", "3"])
    assert parsed.ok, parsed.errors
    assert parsed.image_set_ids == [1, 3]
    assert parsed.design.n_images == 20 and parsed.design.synthetic_share == 0.5
    assert parsed.design.repeat_share == 0.1 and parsed.design.practice_images == 2
    assert parsed.design.stratify_by_label and not parsed.design.stratify_by_source
    assert parsed.design.seed == 42
    assert parsed.reading.confidence_bounds() == (1, 5)
    assert parsed.reading.second_question.choices == ("none", "consolidation", "effusion")
    assert parsed.reading.reason_required and not parsed.reading.practice_feedback


def test_design_round_trips_through_json() -> None:
    parsed = parse_design_form(GOOD, ["1"])
    stored = StoredDesign(selection=parsed.design, reading=parsed.reading)
    assert load_design(stored.to_json()) == stored


def test_blank_seed_draws_one_and_records_it() -> None:
    parsed = parse_design_form({**GOOD, "seed": ""}, ["1"])
    assert parsed.ok and 0 <= parsed.design.seed < 2**31


def test_every_bad_field_is_reported_at_once() -> None:
    bad = {
        **GOOD,
        "name": " ",
        "n_images": "many",
        "synthetic_percent": "100",
        "repeat_percent": "60",
        "margin": "0.7",
        "answers": "yes_no",
        "confidence": "1-10",
        "second_choices": "",
    }
    parsed = parse_design_form(bad, [])
    assert not parsed.ok and parsed.design is None
    assert set(parsed.errors) >= {
        "name",
        "image_sets",
        "n_images",
        "synthetic_percent",
        "repeat_percent",
        "margin",
        "answers",
        "confidence",
        "second_question",
    }
    assert parsed.errors["n_images"] == "Enter a number (got 'many')."
    assert parsed.errors["synthetic_percent"] == "Must be between 1 and 99."


def test_fractional_image_count_is_refused() -> None:
    assert parse_design_form({**GOOD, "n_images": "10.5"}, ["1"]).errors == {
        "n_images": "Enter a whole number."
    }


def test_preregistered_analysis_defaults_and_options() -> None:
    # Issue 18: "uncertain" left out and the two-sided binomial test unless pre-registered.
    default = parse_design_form(GOOD, ["1"]).reading
    assert (default.uncertain_policy, default.binomial_alternative) == ("excluded", "two-sided")
    chosen = {**GOOD, "uncertain_policy": "wrong", "binomial_alternative": "greater"}
    reading = parse_design_form(chosen, ["1"]).reading
    assert (reading.uncertain_policy, reading.binomial_alternative) == ("wrong", "greater")
    bad = parse_design_form({**GOOD, "binomial_alternative": "less"}, ["1"])
    assert not bad.ok and "binomial_alternative" in bad.errors
    # A study stored before the option existed reads as two-sided.
    assert load_design({"reading": {"uncertain_policy": "wrong"}}).reading.binomial_alternative == (
        "two-sided"
    )
