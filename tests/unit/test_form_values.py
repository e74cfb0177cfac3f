"""The one number/choice parser every launch form and CLI option goes through."""

from __future__ import annotations

import pytest

from app.domain.form_values import FieldError, choice, decimal_number, whole_number
from app.jobs.specs import SpecError


def test_whole_numbers_from_forms_and_the_cli() -> None:
    assert whole_number("seed", " 7 ", 0, 10, "m") == 7
    assert whole_number("seed", 7, 0, 10, "m") == 7  # the CLI and JSON send ints
    assert whole_number("seed", "", 0, 10, "m", default=3) == 3
    assert whole_number("seed", None, 0, 10, "m", default=3) == 3
    for raw in ("", "11", "-1", "1.5", "²", "seven", None):
        with pytest.raises(FieldError) as refused:
            whole_number("seed", raw, 0, 10, "Seed: 0 to 10.")
        assert (refused.value.field, refused.value.message) == ("seed", "Seed: 0 to 10.")


def test_decimal_numbers_refuse_what_is_not_a_finite_number_in_range() -> None:
    assert decimal_number("lr", "1e-3", 1e-7, 1.0, "m") == pytest.approx(1e-3)
    assert decimal_number("lr", "", 1e-7, 1.0, "m", default=0.5) == 0.5
    for raw in ("nan", "inf", "-inf", "2", "x", ""):
        with pytest.raises(FieldError):
            decimal_number("lr", raw, 0.0, float("inf") if raw == "inf" else 1.0, "m")


def test_choices_are_trimmed_and_checked() -> None:
    assert choice("queue", " gpu ", ("cpu", "gpu"), "m") == "gpu"
    with pytest.raises(FieldError):
        choice("queue", "GPU", ("cpu", "gpu"), "m")


def test_a_refused_value_is_a_spec_error_for_the_forms() -> None:
    # Launch routes catch SpecError to show the message beside its field.
    with pytest.raises(SpecError):
        whole_number("n", "x", 0, 1, "m")


def test_not_a_number_and_out_of_range_can_say_different_things() -> None:
    from app.domain.form_values import FieldError, decimal_number, whole_number

    messages = {"message": "not a number", "out_of_range": "from 1 to 5"}
    for raw, said in (("x", "not a number"), ("9", "from 1 to 5"), ("9" * 60, "not a number")):
        with pytest.raises(FieldError, match=said):
            whole_number("k", raw, 1, 5, **messages)
    for raw, said in (("x", "not a number"), ("nan", "from 1 to 5"), ("inf", "from 1 to 5")):
        with pytest.raises(FieldError, match=said):
            decimal_number("k", raw, 1, 5, **messages)
    assert whole_number("k", " 3 ", 1, 5, **messages) == 3
