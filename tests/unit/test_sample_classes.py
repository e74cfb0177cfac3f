"""`run sample --classes`: class names or 0-based indexes of the run's classes."""

from __future__ import annotations

import pytest

from app.gans.sample_classes import pick_classes
from app.jobs.specs import SpecError

RUN = ["normal", "pneumonia", "effusion"]


def test_indexes_and_names_pick_classes_in_the_order_given() -> None:
    assert pick_classes("0,2", RUN) == ("normal", "effusion")
    assert pick_classes(" effusion , 0 ", RUN) == ("effusion", "normal")
    assert pick_classes("1,pneumonia,1", RUN) == ("pneumonia",)  # each class once


def test_nothing_chosen_means_every_class() -> None:
    assert pick_classes("", RUN) == ()
    assert pick_classes(" , ", RUN) == ()


def test_a_class_named_like_an_index_is_taken_by_name() -> None:
    assert pick_classes("1", ["1", "0"]) == ("1",)
    assert pick_classes("0,1", ["1", "0"]) == ("0", "1")


def test_unknown_classes_are_named_with_the_run_classes() -> None:
    with pytest.raises(SpecError) as caught:
        pick_classes("3,cardiomegaly,normal", RUN)
    assert caught.value.field == "classes"
    message = caught.value.message
    assert "'3'" in message and "'cardiomegaly'" in message and "'normal'" not in message
    assert "0 = normal, 1 = pneumonia, 2 = effusion" in message
