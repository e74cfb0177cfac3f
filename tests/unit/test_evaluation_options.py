"""Evaluation form / CLI values -> checked job parameters, and the paired DeLong comparison of
saved test predictions (pure functions: no database, no worker)."""

from __future__ import annotations

import numpy as np
import pytest

from app.evaluation import options
from app.evaluation.utility import paired_delong
from app.jobs.specs import SpecError
from ml.metrics.delong import delong_test


def test_classifier_config_takes_the_preset_then_explicit_fields() -> None:
    config = options.classifier_config(
        {"preset": "seed003-efficientnet-b0", "epochs": "4"}, [32, 64]
    )
    assert config["arch"] == "efficientnet-b0" and config["balanced"] is True
    assert config["epochs"] == 4 and config["resolution"] == 32 and config["device"] == "auto"
    tiny = options.classifier_config({"resolution": "64", "augment": ""}, [32, 64])
    assert tiny["arch"] == "tiny-densenet" and tiny["resolution"] == 64 and tiny["augment"] is True
    assert options.classifier_config({"augment": "off"}, [32])["augment"] is False


@pytest.mark.parametrize(
    ("values", "field", "message"),
    [
        ({"preset": "nope"}, "preset", "Unknown preset"),
        ({"resolution": "48"}, "resolution", "stored at 32, 64 px, not 48"),
        ({"epochs": "0"}, "epochs", "Epochs: a whole number from 1"),
        ({"lr": "fast"}, "lr", "Learning rate"),
        ({"arch": "resnet"}, "arch", "resnet"),
    ],
)
def test_classifier_config_errors_name_their_field(values, field, message) -> None:  # type: ignore[no-untyped-def]
    with pytest.raises(SpecError) as caught:
        options.classifier_config(values, [32, 64])
    assert caught.value.field == field and message in caught.value.message


def test_train_on_needs_a_set_for_synthetic_and_mixed() -> None:
    assert options.train_on({}) == ("real", None)
    assert options.train_on({"train_on": "Mixed", "image_set_id": "7"}) == ("mixed", 7)
    with pytest.raises(SpecError, match="Choose the synthetic image set"):
        options.train_on({"train_on": "synthetic"})
    with pytest.raises(SpecError, match="Train on one of"):
        options.train_on({"train_on": "imagined"})


def test_features_neighbours_and_attribution_options() -> None:
    assert options.features({}) == ("inception", None, None)
    assert options.features({"features": "domain", "classifier_job_id": "3"}) == ("domain", 3, None)
    assert options.features({"features": "path", "features_path": "/m.pt"}) == (
        "path",
        None,
        "/m.pt",
    )
    with pytest.raises(SpecError, match="real-trained classifier"):
        options.features({"features": "domain"})
    assert options.neighbour_options({}) == {"k": 5, "alpha": 0.05, "level": "p5"}
    # A stale max_share from an old form or clone is ignored: the gate is a test now.
    assert options.neighbour_options({"max_share": "0.5"})["alpha"] == 0.05
    with pytest.raises(SpecError, match="NNDR needs 2"):
        options.neighbour_options({"k": "1"})
    with pytest.raises(SpecError, match="Release gate"):
        options.neighbour_options({"alpha": "0.9"})
    chosen = options.attribution_options({"methods": ["grad_cam"], "n_images": "3"})
    assert chosen == {"methods": ["grad_cam"], "n_images": 3, "n_steps": 32}
    assert options.attribution_options({"methods": "occlusion, grad_cam"})["methods"] == [
        "occlusion",
        "grad_cam",
    ]
    with pytest.raises(SpecError, match="Methods"):
        options.attribution_options({"methods": ["saliency"]})


def _predictions(y: np.ndarray, scores: np.ndarray) -> dict[str, np.ndarray]:
    return {"y_true": y, "scores": scores, "keys": np.asarray([f"k{i}" for i in range(len(y))])}


def test_paired_delong_per_label_masks_unknowns_and_explains_undefined_labels() -> None:
    rng = np.random.default_rng(0)
    n = 60
    y = rng.integers(0, 2, (n, 3)).astype(float)
    y[:5, 0] = np.nan  # unknown labels stay out of that label's comparison
    y[:, 2] = 1.0  # a label with no negative test case has no AUC
    good = y + rng.normal(0, 0.4, y.shape)
    poor = y + rng.normal(0, 1.5, y.shape)
    result = paired_delong(
        _predictions(y, np.nan_to_num(good)), _predictions(y, np.nan_to_num(poor)), ["a", "b", "c"]
    )
    known = ~np.isnan(y[:, 0])
    expected = delong_test(y[known, 0].astype(int), good[known, 0], poor[known, 0])
    assert result["a"]["difference"] == pytest.approx(expected.difference)
    assert result["a"]["p_value"] == pytest.approx(expected.p_value)
    assert result["b"]["difference"] > 0  # the less noisy model is better
    assert "note" in result["c"] and "negative" in result["c"]["note"]


def test_paired_delong_refuses_models_tested_on_different_images() -> None:
    y = np.asarray([[0.0], [1.0], [0.0], [1.0]])
    a = _predictions(y, y)
    b = {**_predictions(y, y), "keys": np.asarray(["x", "y", "z", "w"])}
    with pytest.raises(ValueError, match="not tested on the same images"):
        paired_delong(a, b, ["a"])
