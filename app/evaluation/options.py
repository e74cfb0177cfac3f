"""Evaluation-job options from a form or the CLI -> checked job parameters.

Everything here is a pure function of the submitted strings and the dataset's facts; the
service adds what needs the database (is the set visible, is the classifier job finished).
Presets carry the seed studies' settings; explicit fields override them.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import asdict, fields
from typing import Any

from app.domain.form_values import decimal_number, whole_number
from app.jobs.specs import SpecError
from ml.training.classifier_config import ClassifierConfig

TRAIN_ON = ("real", "synthetic", "mixed")
CLASSIFIER_PRESETS: dict[str, dict[str, Any]] = {
    # Seconds on a laptop CPU: enough to see the whole benchmark on the demo data.
    "tiny-cpu": {"arch": "tiny-densenet", "epochs": 30, "batch_size": 8, "lr": 2e-3},
    # Seed 000: DenseNet-121, standard augmentation, model selection on validation AUC.
    "seed000-densenet121": {"arch": "densenet121", "epochs": 30, "batch_size": 32, "lr": 1e-4},
    # Seed 003: EfficientNet-B0 with an imbalance-aware sampler.
    "seed003-efficientnet-b0": {
        "arch": "efficientnet-b0",
        "epochs": 30,
        "batch_size": 32,
        "lr": 1e-3,
        "balanced": True,
    },
}
FEATURES = ("inception", "domain", "path")
# ml.metrics.features.RESIZES, repeated because the web process does not import torch
# (tests/unit/test_fid_options.py checks they agree).
FID_RESIZES = ("antialias", "tf", "clean")
FID_RESIZE_LABELS = {
    "antialias": "synthbench (antialiased bilinear)",
    "tf": "TF1 reference (resize_bilinear)",
    "clean": "clean-fid (PIL bicubic)",
}
ATTRIBUTION_METHODS = ("integrated_gradients", "grad_cam", "occlusion")
LEVELS = ("p1", "p5")
MAX_IMAGES = 50_000
DEFAULT_MAX_IMAGES = 10_000
MAX_ID = 2**31 - 1
CHOOSE_SET = "Choose the synthetic image set."


def _raw(values: Mapping[str, Any], key: str) -> object:
    # Not `values.get(key) or ""`: a typed request's 0 is a value to check, not a blank.
    raw = values.get(key)
    return "" if raw is None else raw


def _int(values: Mapping[str, Any], key: str, default: int, low: int, high: int, what: str) -> int:
    message = f"{what}: a whole number from {low} to {high}."
    return whole_number(key, _raw(values, key), low, high, message, default)


def _float(
    values: Mapping[str, Any], key: str, default: float, low: float, high: float, what: str
) -> float:
    message = f"{what}: a number from {low:g} to {high:g}."
    return decimal_number(key, _raw(values, key), low, high, message, default)


def _flag(values: Mapping[str, Any], key: str, default: bool) -> bool:
    raw = values.get(key)
    if raw is None or raw == "":
        return default
    if isinstance(raw, bool):
        return raw
    return str(raw).strip().lower() in {"1", "true", "on", "yes"}


def resolution(values: Mapping[str, Any], available: list[int], default: int | None = None) -> int:
    if not available:
        raise SpecError("dataset", "The dataset has no stored resolution.")
    chosen = _int(values, "resolution", default or min(available), 1, 4096, "Resolution")
    if chosen not in available:
        known = ", ".join(str(r) for r in sorted(available))
        raise SpecError("resolution", f"The dataset is stored at {known} px, not {chosen}.")
    return chosen


def optional_resolution(values: Mapping[str, Any]) -> int | None:
    """The resolution asked for; None: the dataset's smallest (checked against the dataset by
    `resolution`)."""
    if not str(values.get("resolution") or "").strip():
        return None
    return _int(values, "resolution", 0, 1, 4096, "Resolution")


def record_id(values: Mapping[str, Any], key: str, missing: str) -> int:
    """The id of a set or job picked in a form; `missing` is the message when none is."""
    number = _int(values, key, 0, 1, MAX_ID, "An id")
    if not number:
        raise SpecError(key, missing)
    return number


def train_on(values: Mapping[str, Any]) -> tuple[str, int | None]:
    """('real', None) or ('synthetic' | 'mixed', image set id)."""
    source = str(values.get("train_on", "real") or "real").strip().lower()
    if source not in TRAIN_ON:
        raise SpecError("train_on", f"Train on one of {', '.join(TRAIN_ON)}.")
    if source == "real":
        return source, None
    return source, record_id(values, "image_set_id", "Choose the synthetic image set.")


def _id_list(values: Mapping[str, Any], field: str, what: str) -> list[int]:
    """A form's or CLI's list of record ids ("3,7" or a list), sorted and without repeats."""
    raw = values.get(field) or ""
    items = raw if isinstance(raw, list | tuple) else str(raw).split(",")
    ids = []
    for item in (str(i).strip() for i in items):
        if not item:
            continue
        ids.append(whole_number(field, item, 1, MAX_ID, f"{what}, not {item!r}."))
    return sorted(set(ids))


def test_sets(values: Mapping[str, Any]) -> list[int]:
    """Synthetic sets to score the classifier on besides the real test split ("3,7")."""
    return _id_list(values, "test_set_ids", "Test sets: image set ids")


def external_datasets(values: Mapping[str, Any]) -> list[int]:
    """Datasets of another site to validate the classifier on, whole ("4,9")."""
    return _id_list(values, "external_dataset_id", "External datasets: ids")


def external_label_order(
    trained: Sequence[str], external: Sequence[str], external_name: str = "the external dataset"
) -> list[int]:
    """For each label the classifier was trained on, its position in the external dataset's
    label names: the same names are required, in any order (matched by name, never by
    position, so 'normal, pneumonia' and 'pneumonia, normal' line up)."""
    trained, external = list(trained), list(external)
    missing = [n for n in trained if n not in external]
    extra = [n for n in external if n not in trained]
    if missing or extra or len(set(external)) != len(external):
        parts = []
        if missing:
            parts.append(f"it lacks {', '.join(repr(n) for n in missing)}")
        if extra:
            parts.append(f"it has {', '.join(repr(n) for n in extra)} besides")
        if not parts:
            parts.append("it repeats a label name")
        raise SpecError(
            "external_dataset_id",
            f"{external_name} cannot validate this classifier: its labels must be the training "
            f"dataset's ({', '.join(trained)}), but {'; '.join(parts)}.",
        )
    return [external.index(n) for n in trained]


def classifier_preset(values: Mapping[str, Any]) -> str:
    preset_name = str(values.get("preset", "") or "tiny-cpu").strip()
    if preset_name not in CLASSIFIER_PRESETS:
        raise SpecError("preset", f"Unknown preset; choose one of {', '.join(CLASSIFIER_PRESETS)}.")
    return preset_name


def classifier_overrides(values: Mapping[str, Any]) -> dict[str, Any]:
    """The settings given explicitly, typed; None where the preset's value stands."""

    def given(key: str) -> bool:
        raw = values.get(key)
        return raw is not None and (isinstance(raw, bool) or str(raw).strip() != "")

    return {
        "resolution": optional_resolution(values),
        "arch": str(values["arch"]).strip() if given("arch") else None,
        "epochs": _int(values, "epochs", 0, 1, 1000, "Epochs") if given("epochs") else None,
        "batch_size": (
            _int(values, "batch_size", 0, 1, 4096, "Batch size") if given("batch_size") else None
        ),
        "lr": _float(values, "lr", 0.0, 1e-7, 1.0, "Learning rate") if given("lr") else None,
        "augment": _flag(values, "augment", False) if given("augment") else None,
        "balanced": _flag(values, "balanced", False) if given("balanced") else None,
        "seed": _int(values, "seed", 0, 0, MAX_ID, "Seed") if given("seed") else None,
    }


def classifier_config(values: Mapping[str, Any], available: list[int]) -> dict[str, Any]:
    preset_name = classifier_preset(values)
    base = {**asdict(ClassifierConfig()), **CLASSIFIER_PRESETS[preset_name]}
    # The settings given override the preset's; each is parsed once, by classifier_overrides.
    given = {k: v for k, v in classifier_overrides(values).items() if v is not None}
    config = {
        **base,
        **given,
        "resolution": resolution(values, available),
        "device": "auto",
    }
    known = {f.name for f in fields(ClassifierConfig)}
    try:
        ClassifierConfig(**{k: v for k, v in config.items() if k in known and k != "device"})
    except (TypeError, ValueError) as exc:
        field = "arch" if "arch" in str(exc) else "preset"
        raise SpecError(field, str(exc)) from None
    return {k: v for k, v in config.items() if k in known}


def features(values: Mapping[str, Any]) -> tuple[str, int | None, str | None]:
    """(kind, classifier job id for 'domain', TorchScript path for 'path')."""
    kind = str(values.get("features", "inception") or "inception").strip().lower()
    if kind not in FEATURES:
        raise SpecError("features", f"Features: one of {', '.join(FEATURES)}.")
    if kind == "domain":
        message = "Domain features need a real-trained classifier."
        return kind, record_id(values, "classifier_job_id", message), None
    if kind == "path":
        path = str(values.get("features_path", "") or "").strip()
        if not path:
            raise SpecError("features_path", "Give the path of a TorchScript feature extractor.")
        return kind, None, path
    return kind, None, None


def fid_options(values: Mapping[str, Any]) -> dict[str, Any]:
    """Inception resize convention and bootstrap resamples per FID (0: no interval)."""
    resize = str(values.get("fid_resize", "") or "antialias").strip().lower()
    if resize not in FID_RESIZES:
        raise SpecError("fid_resize", f"FID convention: one of {', '.join(FID_RESIZES)}.")
    resamples = _int(values, "fid_resamples", 200, 0, 2000, "Bootstrap resamples per FID")
    if resamples == 1:
        raise SpecError("fid_resamples", "Bootstrap resamples per FID: 0 (none) or at least 2.")
    return {"fid_resize": resize, "fid_resamples": resamples}


def max_images(values: Mapping[str, Any], default: int = DEFAULT_MAX_IMAGES) -> int:
    return _int(values, "max_images", default, 2, MAX_IMAGES, "Images compared at most")


def neighbour_options(values: Mapping[str, Any]) -> dict[str, Any]:
    level = str(values.get("level", "p5") or "p5").strip().lower()
    if level not in LEVELS:
        raise SpecError("level", f"Flag level: one of {', '.join(LEVELS)}.")
    return {
        "k": _int(values, "k", 5, 2, 50, "Neighbours per image (k; NNDR needs 2)"),
        # The gate's one-sided significance level (exact test of the flagged count against
        # chance, ml.metrics.neighbours.release_verdict); a stale max_share field is ignored.
        "alpha": _float(values, "alpha", 0.05, 0.0001, 0.5, "Release gate: significance level"),
        "level": level,
    }


def attribution_options(values: Mapping[str, Any]) -> dict[str, Any]:
    raw = values.get("methods") or "integrated_gradients,grad_cam"
    chosen = raw if isinstance(raw, list | tuple) else str(raw).split(",")
    methods = [m.strip() for m in chosen if str(m).strip()]
    unknown = [m for m in methods if m not in ATTRIBUTION_METHODS]
    if unknown or not methods:
        raise SpecError("methods", f"Methods: any of {', '.join(ATTRIBUTION_METHODS)}.")
    return {
        "methods": methods,
        "n_images": _int(values, "n_images", 6, 1, 64, "Images to explain"),
        "n_steps": _int(values, "n_steps", 32, 4, 512, "Integrated-gradients steps"),
    }
