"""Pages of a privacy job's gallery: every synthetic image, most at risk first, a page at a time.

The worker (workers/evaluation.py) keeps the riskiest images of each feature space, with their
paired quality scores, in gallery.json, and every image's distances in neighbours_{space}.npz.
Page 1 is gallery.json as written; later pages rank the arrays as
`MemorisationReport.risk_order` does, from the thresholds stored in the job's summary, so page 2
goes on where page 1 ends. A set of 10,000 images is 209 pages of 48, each read in a few
milliseconds: the page never builds all 10,000 rows.
"""

from __future__ import annotations

import json
import math
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import numpy as np
from sqlalchemy import select
from sqlalchemy.orm import Session

from app.models import Image, Job

PAGE_SIZE = 48  # workers/evaluation.py GALLERY_SIZE: page 1 is exactly its gallery.json
_ARRAYS = ("image_ids", "dcr", "nndr", "neighbour_rows", "neighbour_distances")


def risk_order(
    dcr: np.ndarray,
    nndr: np.ndarray,
    thresholds: Mapping[str, float],
    percentiles: Mapping[str, float],
) -> np.ndarray:
    """Positions most suspicious first: smallest dcr / threshold at the highest percentile, then
    smallest nndr, then position (`MemorisationReport.risk_order()` from its stored summary)."""
    level = max(thresholds, key=lambda name: percentiles.get(name, 0.0))
    ratio = np.asarray(dcr, dtype=np.float64)
    threshold = float(thresholds[level])
    if threshold > 0:  # a zero threshold (split leak) leaves the order by dcr alone
        ratio = ratio / threshold
    return np.lexsort((np.arange(ratio.size), np.asarray(nndr), ratio))


def page_items(
    arrays: Mapping[str, np.ndarray],
    summary: Mapping[str, Any],
    level: str,
    page: int,
    size: int = PAGE_SIZE,
) -> list[dict[str, Any]]:
    """Gallery items (as gallery.json holds them, less label and quality) of page `page`
    (1-based) from a space's neighbours arrays and stored summary."""
    order = risk_order(arrays["dcr"], arrays["nndr"], summary["thresholds"], summary["percentiles"])
    chosen = order[(page - 1) * size : page * size]
    # In float64 both ways, as the report compared them (float32 dcr, float64 threshold).
    threshold = np.float64(summary["thresholds"][level])
    return [
        {
            "image_id": int(arrays["image_ids"][i]),
            "dcr": float(arrays["dcr"][i]),
            "nndr": float(arrays["nndr"][i]),
            "flagged": bool(np.float64(arrays["dcr"][i]) < threshold),
            "neighbours": [
                {"row": int(r), "distance": float(d)}
                for r, d in zip(
                    arrays["neighbour_rows"][i].tolist(),
                    arrays["neighbour_distances"][i].tolist(),
                    strict=True,
                )
            ],
        }
        for i in chosen.tolist()
    ]


def _quality(path: Path) -> dict[int, dict[str, float]]:
    """Per image id, the paired quality scores the worker kept (a sample plus the gallery)."""
    if not path.is_file():
        return {}
    with np.load(path) as data:
        metrics = {
            k.removeprefix("quality_"): data[k] for k in data.files if k.startswith("quality_")
        }
        ids = data["image_ids"].tolist()
    return {
        int(image_id): {m: float(v[n]) for m, v in metrics.items()}
        for n, image_id in enumerate(ids)
    }


def gallery_context(db: Session, job: Job, page: int) -> dict[str, Any]:
    """Template context of page `page`: per space its items, and the paging."""
    out = Path(job.artefact_dir or "")
    path = out / "gallery.json"
    stored = json.loads(path.read_text(encoding="utf-8")) if path.is_file() else {}
    result = job.result or {}
    n = max((int(s.get("n_synthetic") or 0) for s in result.get("spaces", {}).values()), default=0)
    spaces: dict[str, Any] = {}
    for space, data in stored.items():
        arrays_path = out / f"neighbours_{space}.npz"
        if page == 1 or not arrays_path.is_file():
            # Jobs from before the arrays were kept have their first page only.
            spaces[space] = {**data, "gallery": data["gallery"] if page == 1 else []}
            continue
        with np.load(arrays_path) as npz:
            # Each npz[key] decompresses its array again: read every one once.
            arrays = {key: npz[key] for key in _ARRAYS}
        summary = result["spaces"][space]
        items = page_items(arrays, summary, result.get("level", "p5"), page)
        quality = _quality(out / f"quality_{space}.npz")
        for item in items:
            item["quality"] = quality.get(item["image_id"])
        spaces[space] = {**data, "gallery": items}
    _add_labels(db, spaces, page)
    kept = all((out / f"neighbours_{s}.npz").is_file() for s in stored)
    pages = max(1, math.ceil(n / PAGE_SIZE)) if kept else 1
    return {
        "spaces": spaces,
        "result": result,
        "page": page,
        "pages": pages,
        "page_size": PAGE_SIZE,
        "n_images": n,
    }


def _add_labels(db: Session, spaces: dict[str, Any], page: int) -> None:
    """The arrays hold image ids only: labels come from the set's rows, one query per page."""
    if page == 1:
        return
    ids = {item["image_id"] for data in spaces.values() for item in data["gallery"]}
    if not ids:
        return
    found = db.execute(select(Image.id, Image.label).where(Image.id.in_(ids)))
    labels = {image_id: label for image_id, label in found}
    for data in spaces.values():
        for item in data["gallery"]:
            item["label"] = labels.get(item["image_id"]) or "no label"
