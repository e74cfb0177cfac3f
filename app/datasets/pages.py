"""What a dataset's page shows, computed from its prepared store (read-only).

Opening a manifest of many thousand entries and counting them is not free: at CheXpert size
(200,000 images, some 46,000 label combinations) it took most of a minute on a busy 2-core
machine (bench/pages_at_scale.py). So the view is computed once per dataset, by the job that
made the dataset (`precompute`) or else by its first page view, and kept as JSON under the
home's cache folder, keyed by content hash: a dataset never changes under its hash, so the
cache is never stale. Each process also keeps the views it has read in memory.
"""

from __future__ import annotations

import io
import json
import os
from dataclasses import asdict, dataclass
from functools import lru_cache
from pathlib import Path
from typing import Any

import numpy as np
from PIL import Image

from app.config import get_settings
from app.domain.dataset_summary import Counts, LabelRow, examples_per_label, summarise
from app.models import Dataset
from app.web.charts import bar_chart, heatmap, stacked_bar_chart
from ml.data.store import PreparedDataset, open_dataset

EXAMPLES_PER_LABEL = 8
GRID_RESOLUTION = 64
_SPLITS = ("train", "val", "test")
# The class chart's bars: the largest label combinations (CheXpert has tens of thousands).
CLASS_BARS = 40
# Part of the cache file's name: change it when what a cached view holds changes.
VIEW_FORMAT = 2


@dataclass(frozen=True)
class PageSummary:
    """The part of a `DatasetSummary` the page's tables show: small whatever the dataset's
    size (the classes, one per label combination, feed only the chart and the ratio)."""

    n_images: int
    splits: dict[str, int]
    labels: tuple[LabelRow, ...]
    imbalance_ratio: float | None


def _store(path: str, content_hash: str) -> PreparedDataset:
    store = open_dataset(path)
    if store.info.content_hash != content_hash:
        raise ValueError(f"{path} no longer holds the dataset the database describes")
    return store


@lru_cache(maxsize=4)
def _pixels(path: str, content_hash: str) -> tuple[dict[int, np.memmap], int]:
    """The store's image memmaps by resolution and its largest code. Only these are kept: the
    store's entries (a Python object per image, 200,000 at CheXpert size) would sit in every
    web process's heap and slow each of its garbage collections."""
    store = _store(path, content_hash)
    return {res: store.images(res) for res in store.info.resolutions}, store.max_code


def compute_view(store: PreparedDataset) -> dict[str, Any]:
    """The page's numbers, example rows and what its charts are drawn from, JSON-safe."""
    names = store.info.label_names
    summary = summarise(names, ((e.labels, e.split) for e in store.entries))
    examples = examples_per_label(
        names, ((i, e.labels) for i, e in enumerate(store.entries)), EXAMPLES_PER_LABEL, seed=0
    )
    shown = PageSummary(summary.n_images, summary.splits, summary.labels, summary.imbalance_ratio)
    return {
        "summary": asdict(shown),
        "examples": examples,
        "label_names": list(summary.label_names),
        # Classes come largest first: the chart's bars, and how many classes there are.
        "class_bars": [[c.name, c.counts.total] for c in summary.classes[:CLASS_BARS]],
        "n_classes": len(summary.classes),
        "cooccurrence": summary.cooccurrence,
        "channels": store.channels,  # 3: colour (or a CT window stack), thumbnails in RGB
    }


def _context(view: dict[str, Any]) -> dict[str, Any]:
    """The template's summary, examples and charts from a computed (or cached) view."""
    data = view["summary"]
    labels = tuple(
        LabelRow(
            name=row["name"],
            positives=Counts(**row["positives"]),
            negatives=Counts(**row["negatives"]),
            missing=Counts(**row["missing"]),
            prevalence=row["prevalence"],
        )
        for row in data["labels"]
    )
    summary = PageSummary(data["n_images"], data["splits"], labels, data["imbalance_ratio"])
    bars = [(name, n) for name, n in view["class_bars"]]
    charts = _charts(summary, view["label_names"], bars, view["n_classes"], view["cooccurrence"])
    # A view cached before channels were recorded shows no channel count (taken as 1).
    channels = view.get("channels", 1)
    return {
        "summary": summary,
        "examples": view["examples"],
        "charts": charts,
        "channels": channels,
    }


def _charts(
    summary: PageSummary,
    label_names: list[str],
    class_bars: list[tuple[str, int]],
    n_classes: int,
    cooccurrence: list[list[int]],
) -> dict[str, Any]:
    series = [s for s in summary.splits if s in _SPLITS] + [
        s for s in summary.splits if s not in _SPLITS
    ]
    title = "Class balance (unique label combinations)"
    if n_classes > len(class_bars):
        title = f"Class balance: the {len(class_bars)} largest of {n_classes:,} label combinations"
    return {
        "classes": bar_chart(
            class_bars,
            title=title,
            x_label="images",
            max_bars=CLASS_BARS,
        ),
        "labels": stacked_bar_chart(
            [(row.name, row.positives.by_split) for row in summary.labels],
            series=series,
            title="Positive images per label and split",
            x_label="images",
        ),
        "cooccurrence": heatmap(
            label_names,
            label_names,
            cooccurrence,
            title="Label co-occurrence (images positive for both)",
            value_label="images",
        )
        if len(label_names) > 1
        else None,
    }


def _cache_file(content_hash: str) -> Path:
    return get_settings().home / "cache" / "dataset-pages" / f"{content_hash}-v{VIEW_FORMAT}.json"


def _read_cached(content_hash: str) -> dict[str, Any] | None:
    try:
        return json.loads(_cache_file(content_hash).read_text(encoding="utf-8"))
    except (FileNotFoundError, ValueError):
        return None  # not computed yet (or unreadable): compute it again


def _write_cached(content_hash: str, view: dict[str, Any]) -> None:
    path = _cache_file(content_hash)
    path.parent.mkdir(parents=True, exist_ok=True)
    # Through a temporary file and a rename: a reader sees the whole view or none.
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    tmp.write_text(json.dumps(view), encoding="utf-8")
    os.replace(tmp, path)


def precompute(path: str | Path, content_hash: str) -> None:
    """Compute and keep a new dataset's view, so that no page view has to wait for it (the
    import and subset jobs call this once their dataset is finished)."""
    if _read_cached(content_hash) is None:
        _write_cached(content_hash, compute_view(_store(str(path), content_hash)))


@lru_cache(maxsize=16)
def _view(path: str, content_hash: str) -> dict[str, Any]:
    view = _read_cached(content_hash)
    if view is None:
        view = compute_view(_store(path, content_hash))
        _write_cached(content_hash, view)
    return _context(view)


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
    if not dataset.content_hash:
        raise ValueError(f"dataset {dataset.id} is not ready")
    by_res, max_code = _pixels(dataset.path, dataset.content_hash)
    resolution = res or max(by_res)
    if resolution not in by_res:
        raise KeyError(f"resolution {resolution} not stored; have {tuple(by_res)}")
    images = by_res[resolution]
    if not 0 <= row < images.shape[0]:
        raise IndexError(f"row {row} is outside 0..{images.shape[0] - 1}")
    codes = np.asarray(images[row])
    if codes.dtype != np.uint8:
        codes = (codes.astype(np.float32) * (255.0 / max_code)).round().astype(np.uint8)
    if codes.ndim == 3:
        codes = np.ascontiguousarray(codes.transpose(1, 2, 0))
    out = io.BytesIO()
    Image.fromarray(codes).save(out, format="PNG")
    return out.getvalue()
