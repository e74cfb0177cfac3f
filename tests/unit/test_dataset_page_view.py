"""A dataset page's counts are computed once per dataset and kept: a new process reads them
back without opening the store, and they are the counts `summarise` makes from the store.

The dataset is a real import: CheXpert's layout with the repository's X-rays."""

from __future__ import annotations

import random
from pathlib import Path

import pytest
from dataset_fixtures import write_chexpert

from app.datasets import pages
from app.domain.dataset_summary import summarise
from app.models import Dataset
from ml.data.prepare import prepare_dataset
from ml.data.store import MANIFEST, open_dataset


@pytest.fixture
def dataset(sqlite_env, tmp_path: Path) -> Dataset:  # type: ignore[no-untyped-def]
    source = write_chexpert(tmp_path / "source").root
    info = prepare_dataset(source, "chexpert", tmp_path / "ds", resolutions=(32,), salt="s").info
    pages._view.cache_clear()
    pages._pixels.cache_clear()
    return Dataset(
        id=1, path=str(tmp_path / "ds"), content_hash=info.content_hash, info={"resolutions": [32]}
    )


def _forget() -> None:
    """As in a freshly started web process."""
    pages._view.cache_clear()
    pages._pixels.cache_clear()


def test_the_kept_view_is_what_the_store_gives_and_needs_no_store(dataset: Dataset) -> None:
    store = open_dataset(dataset.path)
    expected = summarise(store.info.label_names, ((e.labels, e.split) for e in store.entries))
    pages.precompute(dataset.path, dataset.content_hash)
    _forget()
    # Without its manifest the store cannot be opened: the page must not need it.
    manifest = Path(dataset.path) / MANIFEST
    manifest.rename(manifest.with_suffix(".away"))
    view = pages.dataset_view(dataset)
    summary = view["summary"]
    assert summary.labels == expected.labels
    assert summary.splits == expected.splits and summary.n_images == expected.n_images
    assert summary.imbalance_ratio == expected.imbalance_ratio
    assert any(view["examples"].values())
    assert "Class balance" in view["charts"]["classes"]
    assert view["grid_res"] == 32
    manifest.with_suffix(".away").rename(manifest)


def test_a_first_page_view_computes_the_same_view_and_keeps_it(dataset: Dataset) -> None:
    first = pages.dataset_view(dataset)  # nothing kept yet: computed from the store
    assert pages._cache_file(dataset.content_hash).is_file()
    _forget()
    again = pages.dataset_view(dataset)  # read back
    assert again["summary"] == first["summary"]
    assert again["examples"] == first["examples"]
    assert {k: str(v) for k, v in again["charts"].items()} == {
        k: str(v) for k, v in first["charts"].items()
    }


def _many_classes(root: Path) -> str:
    """300 scikit-learn digits with six labels of four states each (1, 0, -1, blank), as in
    CheXpert: far more label combinations than the class chart draws."""
    from sklearn.datasets import load_digits

    from ml.data.store import DatasetWriter

    digits = load_digits().images[:300] / 16.0
    names = [f"finding {j}" for j in range(6)]
    writer = DatasetWriter(root, (8,), len(digits), label_names=names)
    splits = {}
    rng = random.Random(0)
    for i, pixels in enumerate(digits):
        # Skewed, so that class sizes differ: mostly blank, then 0, 1, -1.
        states = rng.choices((None, 0, 1, -1), weights=(5, 3, 2, 1), k=len(names))
        labels = {n: s for n, s in zip(names, states, strict=True) if s is not None}
        writer.add(f"digit-{i}", f"patient-{i}", labels, f"{i:064x}", pixels)
        splits[f"digit-{i}"] = ("train", "val", "test")[i % 3]
    return writer.finish(splits, fsync=False).content_hash


def test_the_class_chart_draws_the_largest_classes_and_says_how_many_there_are(
    sqlite_env, tmp_path: Path
) -> None:  # type: ignore[no-untyped-def]
    content_hash = _many_classes(tmp_path / "ds")
    store = open_dataset(tmp_path / "ds")
    entries = ((e.labels, e.split) for e in store.entries)
    classes = summarise(store.info.label_names, entries).classes
    assert len(classes) > pages.CLASS_BARS
    _forget()
    dataset = Dataset(id=2, path=str(tmp_path / "ds"), content_hash=content_hash, info={})
    chart = str(pages.dataset_view(dataset)["charts"]["classes"])
    expected = f"the {pages.CLASS_BARS} largest of {len(classes):,} label combinations"
    assert expected in chart
    largest, rest = classes[: pages.CLASS_BARS], classes[pages.CLASS_BARS :]
    assert all(f"<title>{c.name}: {c.counts.total:,}</title>" in chart for c in largest)
    # Names are not unique (beyond two unknown labels only their number is named).
    drawn = {c.name for c in largest}
    assert not any(f"<title>{c.name}: " in chart for c in rest if c.name not in drawn)


def test_a_row_image_is_the_stored_row(dataset: Dataset) -> None:
    import io

    import numpy as np
    from PIL import Image

    store = open_dataset(dataset.path)
    png = pages.row_png(dataset, 3, 32)
    assert np.array_equal(np.asarray(Image.open(io.BytesIO(png))), np.asarray(store.images(32)[3]))
    with pytest.raises(IndexError):
        pages.row_png(dataset, len(store), 32)
    with pytest.raises(KeyError):
        pages.row_png(dataset, 0, 64)
