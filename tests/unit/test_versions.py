"""Benchmark subsets written as datasets of their own (`ml.data.versions.derive_subset`)."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from ml.data.store import DatasetWriter, open_dataset
from ml.data.versions import derive_subset
from ml.progress import Stopped

SPLITS = ["train"] * 12 + ["val"] * 3 + ["test"] * 5


def _parent(root: Path) -> Path:
    """20 images, classes a (10), b (6), c (4); two resolutions; distinct pixels per row."""
    writer = DatasetWriter(root, (8, 16), 20, label_names=("a", "b", "c"))
    classes = ["a"] * 10 + ["b"] * 6 + ["c"] * 4
    order = np.random.default_rng(1).permutation(20)
    splits = {}
    for row, i in enumerate(order):
        key = f"img{i:02d}"
        labels = {name: int(name == classes[i]) for name in ("a", "b", "c")}
        writer.add(key, f"p{i:02d}", labels, f"{i:064x}", np.full((20, 30), row / 20.0))
        splits[key] = SPLITS[i]
    writer.finish(splits, fsync=False)
    return root


@pytest.fixture
def parent(tmp_path: Path) -> Path:
    return _parent(tmp_path / "parent")


def test_samples_per_class_caps_train_keeps_heldout_and_copies_rows(
    parent: Path, tmp_path: Path
) -> None:
    derived = derive_subset(parent, tmp_path / "sub", kind="samples_per_class", value=2)
    source, sub = open_dataset(parent), open_dataset(tmp_path / "sub")
    assert sub.verify() and derived.info == sub.info
    # Train holds classes a (10) and b (2) only, so two per class keep 4 of 12.
    assert sub.info.splits == {"test": 5, "train": 4, "val": 3}
    by_key = {e.key: i for i, e in enumerate(source.entries)}
    for res in (8, 16):
        for i, entry in enumerate(sub.entries):
            # Rows are copied, never resized again: bit-identical to the parent's.
            assert np.array_equal(sub.images(res)[i], source.images(res)[by_key[entry.key]])
            assert entry == source.entries[by_key[entry.key]]
    manifest = json.loads((tmp_path / "sub" / "manifest.json").read_text())
    assert manifest["derived_from"]["content_hash"] == source.info.content_hash
    assert "at most 2 train images" in derived.description


def test_subset_of_three_channel_dataset_keeps_channels(tmp_path: Path) -> None:
    writer = DatasetWriter(tmp_path / "rgb", (8, 16), 6, label_names=("a",), channels=3)
    for i in range(6):
        stack = np.stack([np.full((10, 12), (i + c) / 10.0) for c in range(3)])
        writer.add(f"k{i}", f"p{i}", {"a": i % 2}, f"{i:064x}", stack)
    writer.finish({f"k{i}": "train" if i < 4 else "test" for i in range(6)}, fsync=False)
    derive_subset(tmp_path / "rgb", tmp_path / "sub", kind="all", resolutions=[16])
    source, sub = open_dataset(tmp_path / "rgb"), open_dataset(tmp_path / "sub")
    assert sub.verify() and sub.channels == 3 and sub.manifest["channels"] == 3
    assert sub.images(16).shape == (6, 3, 16, 16)
    np.testing.assert_array_equal(sub.images(16), source.images(16))


def test_classes_and_resolution_axes(parent: Path, tmp_path: Path) -> None:
    two = derive_subset(parent, tmp_path / "two", kind="classes", value=2, resolutions=[8])
    sub = open_dataset(tmp_path / "two")
    assert sub.info.resolutions == (8,) and sub.info.n_images == 16
    assert {sub.label_tuple(e) for e in sub.entries} == {(1, 0, 0), (0, 1, 0)}
    assert "resolutions 8" in two.description
    everything = derive_subset(parent, tmp_path / "all", kind="all", resolutions=[16])
    assert everything.info.n_images == 20 and everything.info.resolutions == (16,)
    assert everything.info.content_hash != open_dataset(parent).info.content_hash


def test_same_inputs_same_hash_and_refusals(parent: Path, tmp_path: Path) -> None:
    a = derive_subset(parent, tmp_path / "a", kind="samples_per_class", value=3, seed=4)
    b = derive_subset(parent, tmp_path / "b", kind="samples_per_class", value=3, seed=4)
    c = derive_subset(parent, tmp_path / "c", kind="samples_per_class", value=3, seed=5)
    assert a.info.content_hash == b.info.content_hash != c.info.content_hash
    with pytest.raises(ValueError, match="not stored in the parent"):
        derive_subset(parent, tmp_path / "d", kind="all", resolutions=[32])
    with pytest.raises(FileExistsError):
        derive_subset(parent, tmp_path / "a", kind="all")
    with pytest.raises(ValueError, match="subset kind"):
        derive_subset(parent, tmp_path / "e", kind="nonsense")  # type: ignore[arg-type]
    with pytest.raises(Stopped):
        derive_subset(parent, tmp_path / "f", kind="all", should_stop=lambda: True)
    assert not (tmp_path / "f" / "manifest.json").exists()
