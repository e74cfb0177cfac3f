"""Pure pieces behind issue 18's rough edges: repeats, defaults, CSV numbers, AUC with too few
validation images, paging, forest-plot labels, the results cache and the demo set's name."""

from __future__ import annotations

import json
from dataclasses import dataclass, replace
from pathlib import Path

import numpy as np
import pytest

from app.datasets.choice import main_dataset_id
from app.demo.gan import DEMO_SAMPLES, demo_samples_name
from app.domain.reader_study import ImageRef, Selection, StudyDesign, reader_schedule
from app.studies.export import csv_safe
from app.studies.results import forest_plot, page_of
from app.studies.results_cache import BoundedLru
from app.web.charts import label_width
from ml.data.store import DatasetWriter
from ml.metrics.auc import label_aucs
from ml.training.classifier import ClassifierConfig, train_classifier


def test_the_design_states_the_repeats_every_schedule_holds() -> None:
    # The newcomer's case: "17%" of 12 read as 2 on the design page, and readers were shown 3.
    design = StudyDesign(n_images=12, synthetic_share=0.5, repeat_share=0.17)
    scored = tuple(ImageRef(f"i{i:02d}", "real" if i % 2 else "synthetic") for i in range(12))
    for seed in range(10):
        schedule = reader_schedule(Selection(scored=scored, practice=()), seed, 0.17)
        assert sum(item.repeat for item in schedule) == design.repeats_for(12) == 2


@dataclass
class _Row:
    id: int
    parent_id: int | None


def test_forms_preselect_the_newest_main_dataset() -> None:
    assert main_dataset_id([]) is None
    # The subset (4) is newer than its parent (3): the parent is chosen.
    assert main_dataset_id([_Row(4, 3), _Row(3, None), _Row(1, None)]) == 3
    assert main_dataset_id([_Row(5, 2), _Row(6, 2)]) == 6  # only subsets: the newest


def test_csv_writes_whole_numbers_as_given() -> None:
    assert csv_safe(4.0) == "4"
    assert csv_safe(4.5) == "4.5"
    assert csv_safe(0.0) == "0"
    assert csv_safe(3) == "3"
    assert csv_safe(None) == ""


def test_auc_from_one_image_per_class_is_undefined_when_asked_for_two() -> None:
    y = np.array([[1.0], [0.0]])
    scores = np.array([[0.1], [0.9]])  # wrong way round: the "0.000" of the issue
    assert label_aucs(y, scores, ["a"]) == {"a": 0.0}
    assert label_aucs(y, scores, ["a"], min_per_class=2) == {"a": None}
    y4 = np.array([[1.0], [1.0], [0.0], [0.0]])
    assert label_aucs(y4, np.array([[0.9], [0.8], [0.1], [0.2]]), ["a"], min_per_class=2) == {
        "a": 1.0
    }


def test_a_classifier_with_one_val_image_per_class_logs_no_val_auc(tmp_path: Path) -> None:
    n = 20
    writer = DatasetWriter(tmp_path / "data", (16,), n, label_names=("left", "right"))
    rng = np.random.default_rng(0)
    splits = {}
    for i in range(n):
        side = i % 2
        image = rng.uniform(0.0, 0.2, (20, 20))
        image[:, side * 10 : side * 10 + 10] += 0.7
        key = f"k{i:03d}"
        labels = {"left": int(side == 0), "right": int(side == 1)}
        writer.add(key, f"p{i}", labels, f"{i:064x}", image.clip(0, 1))
        # One val image of each class (i = 12, 13); the rest train and test.
        splits[key] = "val" if i in (12, 13) else ("test" if i >= 14 else "train")
    writer.finish(splits, fsync=False)
    messages: list[str] = []
    config = ClassifierConfig(
        arch="tiny-densenet", resolution=16, epochs=2, batch_size=8, lr=3e-3, augment=False
    )
    result = train_classifier(
        tmp_path / "data", tmp_path / "run", config, progress=lambda d, t, m: messages.append(m)
    )
    assert result.n_val == 2 and result.val_macro_auc is None
    assert result.selection == "last_epoch"
    assert any("2 or more images of each class" in note for note in result.notes)
    lines = (tmp_path / "run" / "metrics.jsonl").read_text().splitlines()
    assert [json.loads(line)["val_macro_auc"] for line in lines] == [None, None]
    epoch_lines = [m for m in messages if " val AUC " in m]
    assert epoch_lines and all(m.endswith("val AUC n/a") for m in epoch_lines)


def test_pages_of_a_list() -> None:
    items = list(range(120))
    assert page_of(items, 1, 50) == (items[:50], 1, 3)
    assert page_of(items, 3, 50) == (items[100:], 3, 3)
    assert page_of(items, 9, 50)[1:] == (3, 3)  # past the end: the last page
    assert page_of(items, 0, 50)[1] == 1
    assert page_of([], 1, 50) == ([], 1, 1)
    with pytest.raises(ValueError):
        page_of(items, 1, 0)


def test_forest_plot_labels_get_the_room_they_need() -> None:
    short = forest_plot([("R1", 10, 0.5, 0.2, 0.8, False)], title="t", x_label="x", margin=0.1)
    name = "ca-baseline-128px-with-a-long-tail"
    long = forest_plot([(name, 10, 0.5, 0.2, 0.8, False)], title="t", x_label="x", margin=0.1)
    assert long.left >= label_width([name]) > short.left
    # The 0..1 axis keeps its length: the plot grows instead of squeezing it.
    assert long.right - long.left == short.right - short.left
    assert long.width - short.width == long.left - short.left
    row = long.rows[0]
    assert row.label == name and row.short_label.endswith("…") and len(row.short_label) == 30
    assert replace(row, label="R1").short_label == "R1"


def test_bounded_lru_evicts_the_least_recently_used() -> None:
    cache = BoundedLru(2)
    cache.put("a", 1)
    cache.put("b", 2)
    assert cache.get("a") == 1  # a is now the most recent
    cache.put("c", 3)
    assert cache.get("b") is None and cache.get("a") == 1 and cache.get("c") == 3
    assert len(cache) == 2
    with pytest.raises(ValueError):
        BoundedLru(0)


def test_the_demo_sample_set_names_the_images_it_was_trained_on() -> None:
    assert demo_samples_name(11) == f"{DEMO_SAMPLES} (trained on 11 demo X-rays)"
    assert "16" not in demo_samples_name(11)
