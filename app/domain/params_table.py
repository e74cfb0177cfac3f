"""A job's parameters as a table a researcher reads: grouped by what they are about, values
formatted, and the ones that differ from the preset the job was launched with marked.

Pure: the caller passes the preset's values (or None when the job recorded no preset).
"""

from __future__ import annotations

import json
import math
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

SECTIONS = ("data", "network", "training", "augmentation", "privacy", "evaluation", "lineage")
OTHER = "other"

# Keys not listed fall into "other": a new option shows up, just not in the best place.
_SECTION_OF: dict[str, str] = {
    **dict.fromkeys(
        (
            "dataset_id",
            "dataset_path",
            "dataset_hash",
            "dataset_a_id",
            "dataset_a_path",
            "dataset_a_hash",
            "dataset_b_id",
            "dataset_b_path",
            "dataset_b_hash",
            "collection",
            "source",
            "dest",
            "parent",
            "resolution",
            "split",
            "translate_split",
            "train_on",
            "image_set_id",
            "test_set_ids",
            "max_images",
            "name",
            "per_class",
            "dicom",
        ),
        "data",
    ),
    **dict.fromkeys(("arch", "arch_options", "truncation_psi"), "network"),
    **dict.fromkeys(
        (
            "batch_size",
            "kimg",
            "tick_kimg",
            "snapshot_ticks",
            "ema_kimg",
            "epochs",
            "lr",
            "balanced",
            "seed",
            "device",
            "amp",
            "channels_last",
        ),
        "training",
    ),
    **dict.fromkeys(("augment", "ada_target", "ada_kimg", "mirror"), "augmentation"),
    **dict.fromkeys(
        (
            "dp_noise_multiplier",
            "dp_max_grad_norm",
            "dp_delta",
            "domain_classifier",
            "domain_lambda",
        ),
        "privacy",
    ),
    **dict.fromkeys(
        (
            "fid_features",
            "fid_images",
            "fid_patience",
            "features",
            "features_path",
            "classifier_job_id",
            "classifiers",
            "k",
            "method",
            "methods",
        ),
        "evaluation",
    ),
    **dict.fromkeys(("preset", "retry_of", "cloned_from", "train_job_id", "checkpoint"), "lineage"),
}


@dataclass(frozen=True)
class ParamRow:
    key: str  # dotted, as in the raw JSON: "config.kimg", "config.arch_options.base_channels"
    label: str  # the last part of the key, for reading
    value: str
    preset_value: str | None  # set only when the value differs from the preset's


@dataclass(frozen=True)
class ParamSection:
    title: str
    rows: list[ParamRow]


def format_value(value: Any) -> str:
    if value is None:
        return "—"
    if isinstance(value, bool):
        return "yes" if value else "no"
    if isinstance(value, float):
        if math.isfinite(value) and value == int(value) and abs(value) < 1e15:
            return str(int(value))
        return f"{value:.4g}"
    if isinstance(value, list | dict):
        return json.dumps(value, sort_keys=True) if value else "none"
    return str(value)


def flatten(params: Mapping[str, Any], prefix: str = "") -> dict[str, Any]:
    """Nested dicts as dotted keys; lists and empty dicts stay values."""
    flat: dict[str, Any] = {}
    for key, value in params.items():
        name = f"{prefix}{key}"
        if isinstance(value, Mapping) and value:
            flat.update(flatten(value, f"{name}."))
        else:
            flat[name] = value
    return flat


def section_of(key: str) -> str:
    """The section of a dotted key: its first part that names one, else "other"
    ("config.arch_options.base_channels" is about the network)."""
    for part in key.split("."):
        if part in _SECTION_OF:
            return _SECTION_OF[part]
    return OTHER


def _preset_value(key: str, preset: Mapping[str, Any]) -> tuple[bool, Any]:
    """(whether the preset says anything about `key`, its value); the preset holds a config's
    fields, so "config.kimg" is looked up as "kimg"."""
    flat = flatten(preset)
    for candidate in (key, key.removeprefix("config.")):
        if candidate in flat:
            return True, flat[candidate]
    return False, None


def _same(a: Any, b: Any) -> bool:
    if isinstance(a, int | float) and isinstance(b, int | float) and not isinstance(a, bool):
        return math.isclose(float(a), float(b), rel_tol=1e-9, abs_tol=0.0)
    return bool(a == b)


def params_table(params: Mapping[str, Any], preset: Mapping[str, Any] | None) -> list[ParamSection]:
    """Sections in a fixed order (empty ones left out), rows in the params' own order."""
    grouped: dict[str, list[ParamRow]] = {}
    for key, value in flatten(params).items():
        differs_from: str | None = None
        if preset is not None:
            known, expected = _preset_value(key, preset)
            if known and not _same(value, expected):
                differs_from = format_value(expected)
        row = ParamRow(key, key.rsplit(".", 1)[-1], format_value(value), differs_from)
        grouped.setdefault(section_of(key), []).append(row)
    return [ParamSection(t, grouped[t]) for t in (*SECTIONS, OTHER) if t in grouped]
