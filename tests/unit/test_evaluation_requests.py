"""Typed requests of the evaluation jobs (`app.evaluation.requests`): one parse of a form, and
the same checks for a request built in code (the demo, sweeps) as for one from a form."""

from __future__ import annotations

import pytest

from app.evaluation.requests import (
    AttributionRequest,
    ClassifierRequest,
    FidelityRequest,
    NeighboursRequest,
)
from app.jobs.specs import SpecError


def test_a_form_parses_into_a_typed_classifier_request() -> None:
    request = ClassifierRequest.from_form(
        {"train_on": "mixed", "image_set_id": "7", "epochs": "4", "augment": "off",
         "test_set_ids": "9,7,9", "external_dataset_id": "", "preset": "tiny-cpu"}
    )  # fmt: skip
    assert request == ClassifierRequest(
        train_on="mixed", image_set_id=7, epochs=4, augment=False, test_set_ids=(7, 9)
    )
    assert request.checked() == request  # a parsed request parses to itself


def test_a_request_built_in_code_gets_the_same_checks_as_a_form() -> None:
    with pytest.raises(SpecError, match="Epochs: a whole number from 1") as caught:
        ClassifierRequest(epochs=0).checked()
    assert caught.value.field == "epochs"
    with pytest.raises(SpecError, match="Choose the synthetic image set"):
        ClassifierRequest(train_on="synthetic").checked()
    with pytest.raises(SpecError, match="Unknown preset"):
        ClassifierRequest(preset="nope").checked()
    with pytest.raises(SpecError, match="Flag level"):
        NeighboursRequest(3, level="p50").checked()
    with pytest.raises(SpecError, match="Methods"):
        AttributionRequest(1, 2, methods=("lime",)).checked()
    with pytest.raises(SpecError, match=r"0 \(none\) or at least 2"):
        FidelityRequest(3, fid_resamples=1).checked()


def test_the_config_is_the_preset_with_what_was_given() -> None:
    config = ClassifierRequest(preset="seed000-densenet121", epochs=3).config([32, 64])
    assert (config["arch"], config["epochs"], config["batch_size"]) == ("densenet121", 3, 32)
    assert config["resolution"] == 32  # none asked: the dataset's smallest
    with pytest.raises(SpecError, match="stored at 32, 64 px, not 48"):
        ClassifierRequest(resolution=48).config([32, 64])


def test_set_requests_parse_their_forms() -> None:
    fidelity = FidelityRequest.from_form(
        {"image_set_id": "5", "features": "domain", "classifier_job_id": "8", "fid_resize": "clean"}
    )
    assert fidelity == FidelityRequest(
        5, features="domain", classifier_job_id=8, fid_resize="clean"
    )
    neighbours = NeighboursRequest.from_form({"image_set_id": "5", "classifier_job_id": ""})
    assert neighbours == NeighboursRequest(5)
    attribution = AttributionRequest.from_form(
        {"real_job_id": "1", "synthetic_job_id": "2", "methods": "occlusion", "n_images": "3"}
    )
    assert attribution == AttributionRequest(1, 2, methods=("occlusion",), n_images=3)
