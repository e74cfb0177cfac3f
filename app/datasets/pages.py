"""What a dataset's page shows, computed from its prepared store (read-only).

Opening a manifest of many thousand entries and counting them is not free, so the view is
cached by content hash: a dataset never changes under its hash, so the cache is never stale.
"""

from __future__ import annotations

import io
from functools import lru_cache
from typing import Any

import numpy as np
from PIL import Image

from app.domain.dataset_summary import DatasetSummary, examples_per_label, summarise
from app.models import Dataset
from app.web.charts import bar_chart, heatmap, stacked_bar_chart
from ml.data.store import PreparedDataset, open_dataset

EXAMPLES_PER_LABEL = 8
GRID_RESOLUTION = 64
_SPLITS = ("train", "val", "test")


@lru_cache(maxsize=4)
def _store(path: str, content_hash: str) -> PreparedDataset:
    store = open_dataset(path)
    if store.info.content_hash != content_hash:
        raise ValueError(f"{path} no longer holds the dataset the database describes")
    return store


def _open(dataset: Dataset) -> PreparedDataset:
    if not dataset.content_hash:
        raise ValueError(f"dataset {dataset.id} is not ready")
    return _store(dataset.path, dataset.content_hash)


@lru_cache(maxsize=16)
def _view(path: str, content_hash: str) -> dict[str, Any]:
    store = _store(path, content_hash)
    names = store.info.label_names
    summary = summarise(names, ((e.labels, e.split) for e in store.entries))
    examples = examples_per_label(
        names, ((i, e.labels) for i, e in enumerate(store.entries)), EXAMPLES_PER_LABEL, seed=0
    )
    return {"summary": summary, "examples": examples, "charts": _charts(summary)}


def _charts(summary: DatasetSummary) -> dict[str, Any]:
    series = [s for s in summary.splits if s in _SPLITS] + [
        s for s in summary.splits if s not in _SPLITS
    ]
    return {
        "classes": bar_chart(
            [(c.name, c.counts.total) for c in summary.classes],
            title="Class balance (unique label combinations)",
            x_label="images",
        ),
        "labels": stacked_bar_chart(
            [(row.name, row.positives.by_split) for row in summary.labels],
            series=series,
            title="Positive images per label and split",
            x_label="images",
        ),
        "cooccurrence": heatmap(
            list(summary.label_names),
            list(summary.label_names),
            summary.cooccurrence,
            title="Label co-occurrence (images positive for both)",
            value_label="images",
        )
        if len(summary.label_names) > 1
        else None,
    }


def dataset_view(dataset: Dataset) -> dict[str, Any]:
    """Summary, charts and example rows per label for a ready dataset."""
    if not dataset.content_hash:
        raise ValueError(f"dataset {dataset.id} is not ready")
    view = _view(dataset.path, dataset.content_hash)
    resolutions = dataset.info.get("resolutions") or [GRID_RESOLUTION]
    grid_res = min(resolutions, key=lambda r: (r < GRID_RESOLUTION, abs(r - GRID_RESOLUTION)))
    return {**view, "grid_res": grid_res}


def row_png(dataset: Dataset, row: int, res: int | None) -> bytes:
    """One stored image as PNG (8-bit for display; a 3-channel image as RGB, channels as
    R, G, B); IndexError / KeyError for bad arguments."""
    store = _open(dataset)
    resolution = res or max(store.info.resolutions)
    images = store.images(resolution)
    if not 0 <= row < images.shape[0]:
        raise IndexError(f"row {row} is outside 0..{images.shape[0] - 1}")
    codes = np.asarray(images[row])
    if codes.dtype != np.uint8:
        codes = (codes.astype(np.float32) * (255.0 / store.max_code)).round().astype(np.uint8)
    if codes.ndim == 3:
        codes = np.ascontiguousarray(codes.transpose(1, 2, 0))
    out = io.BytesIO()
    Image.fromarray(codes).save(out, format="PNG")
    return out.getvalue()
