"""Pure rules behind the runs pages: ETA and duration, the params table, job names, and lining
up compared runs."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from app.domain.eta import duration_text, elapsed_seconds, eta_seconds, eta_text
from app.domain.params_table import format_value, params_table, section_of
from app.evaluation.compare import common_snapshots, pick_snapshot
from app.jobs.listing import JobFilters, parse_filters
from app.jobs.naming import clean_name, copy_name, dataset_of, default_name


def test_eta_is_linear_in_progress_and_silent_while_too_early() -> None:
    assert eta_seconds(0.25, 300) == 900
    assert eta_seconds(0.5, 60) == 60
    assert eta_seconds(0.02, 10) is None  # start-up cost dominates
    assert eta_seconds(0.0, 10) is None
    assert eta_seconds(1.0, 10) is None
    assert eta_seconds(0.5, -1) is None
    assert eta_text(900) == "about 15 min"
    assert eta_text(30) == "under a minute"
    assert eta_text(3 * 3600) == "about 3.0 h"
    assert eta_text(None) == ""


def test_duration_is_finished_minus_started_or_running_for() -> None:
    start = datetime(2026, 1, 1, 12, 0, tzinfo=UTC)
    now = start + timedelta(minutes=7, seconds=5)
    assert elapsed_seconds(start, start + timedelta(seconds=42), now) == 42
    assert elapsed_seconds(start, None, now) == 425
    assert elapsed_seconds(None, None, now) is None
    assert duration_text(42) == "42 s"
    assert duration_text(425) == "7 min 5 s"
    assert duration_text(120) == "2 min"
    assert duration_text(3 * 3600 + 60) == "3 h 1 min"
    assert duration_text(None) == ""


def test_params_table_groups_formats_and_marks_what_differs_from_the_preset() -> None:
    params = {
        "dataset_id": 3,
        "config": {
            "arch": "dcgan",
            "kimg": 2.0,
            "batch_size": 16,
            "augment": "ada",
            "dp_noise_multiplier": None,
            "arch_options": {"base_channels": 64},
            "mystery": "x",
        },
        "preset": "tiny-cpu",
    }
    preset = {"arch": "dcgan", "kimg": 1.0, "batch_size": 16, "arch_options": {"base_channels": 32}}
    sections = {s.title: {r.key: r for r in s.rows} for s in params_table(params, preset)}
    assert list(sections) == [
        "data",
        "network",
        "training",
        "augmentation",
        "privacy",
        "lineage",
        "other",
    ]
    assert sections["training"]["config.kimg"].value == "2"
    assert sections["training"]["config.kimg"].preset_value == "1"
    assert sections["training"]["config.batch_size"].preset_value is None  # as the preset
    assert sections["network"]["config.arch_options.base_channels"].preset_value == "32"
    assert sections["network"]["config.arch"].preset_value is None
    assert sections["privacy"]["config.dp_noise_multiplier"].value == "—"
    assert "config.mystery" in sections["other"]
    # No recorded preset: nothing is marked.
    plain = params_table(params, None)
    assert all(r.preset_value is None for s in plain for r in s.rows)
    assert section_of("config.ada_target") == "augmentation"
    assert format_value(True) == "yes" and format_value(0.000123) == "0.000123"
    assert format_value([1, 2]) == "[1, 2]" and format_value({}) == "none"


def test_default_names_read_like_a_run_and_clones_say_copy() -> None:
    gan = {"dataset_id": 4, "config": {"arch": "dcgan", "resolution": 32}}
    assert default_name("train_gan", gan, "Demo: paediatric chest X-rays") == (
        "DCGAN 32px · Demo: paediatric chest X-rays"
    )
    assert default_name("image_stats", {"collection": "cxr"}, None) == "Image statistics · cxr"
    classifier = {"train_on": "synthetic", "image_set_id": 9, "config": {"arch": "tiny-densenet"}}
    assert default_name("train_classifier", classifier, "D") == "tiny-densenet on set #9 · D"
    # The suite's three classifiers all carry the set; their names must still differ.
    names = {
        default_name("train_classifier", {**classifier, "train_on": on}, "D")
        for on in ("real", "synthetic", "mixed")
    }
    assert names == {
        "tiny-densenet on real · D",
        "tiny-densenet on set #9 · D",
        "tiny-densenet on real + set #9 · D",
    }
    assert default_name("sample", {"train_job_id": 5, "name": "S"}, "D") == "Samples of run #5 · S"
    assert len(default_name("train_gan", gan, "x" * 500)) == 200
    assert dataset_of({"dataset_a_id": 7}) == 7 and dataset_of({"dataset_id": True}) is None
    assert clean_name("  two   words ") == "two words" and clean_name("   ") is None
    assert copy_name("DCGAN 32px", "Job 3") == "DCGAN 32px (copy)"
    assert copy_name(None, "Job 3") == "Job 3 (copy)"


def test_filters_ignore_unknown_values_and_keep_themselves_across_pages() -> None:
    filters = parse_filters(
        job_type="train_gan",
        status="running",
        dataset="12",
        owner="4",
        q="  dcgan  run ",
        known_types={"train_gan"},
        may_filter_owner=False,
    )
    assert filters == JobFilters("train_gan", "running", 12, None, "dcgan run")
    assert filters.query_string(2) == "?type=train_gan&status=running&dataset=12&q=dcgan+run&page=2"
    stale = parse_filters(
        job_type="gone",
        status="exploded",
        dataset="x",
        owner="2",
        q="",
        known_types={"train_gan"},
        may_filter_owner=True,
    )
    assert stale == JobFilters(owner_id=2) and stale.active
    assert JobFilters().query_string(1) == "" and JobFilters().query_string(2) == "?page=2"


def test_compared_grids_line_up_at_a_shared_snapshot_or_each_ones_latest() -> None:
    assert common_snapshots([[1, 2, 3], [1, 2], [2, 3]]) == [2]
    assert common_snapshots([]) == []
    shots = [{"snapshot": 1}, {"snapshot": 2}]
    assert pick_snapshot(shots, 1) == {"snapshot": 1}
    assert pick_snapshot(shots, 9) == {"snapshot": 2}
    assert pick_snapshot(shots, None) == {"snapshot": 2}
    assert pick_snapshot([], 1) is None
