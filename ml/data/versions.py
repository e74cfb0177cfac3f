"""Named dataset versions: a benchmark subset of a prepared dataset, written as a dataset itself.

Seed 000 benchmarks along three axes: resolution, number of classes (unique label
combinations) and samples per class. `derive_subset` picks the rows (`ml.data.subsets`), keeps
the requested resolutions, and copies the already-resized rows into a new store, so a subset is
an ordinary `PreparedDataset` with its own content hash, and a job trained on it records
exactly which images it saw. Splits are inherited, never recomputed: the held-out test images
of a subset are the parent's test images, so points along an axis are scored alike.

The manifest names its parent (`derived_from`: parent content hash and the subset's
description), which is part of the hashed manifest.
"""

from __future__ import annotations

import json
import os
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

import numpy as np

from ml.data.store import (
    FORMAT_VERSION,
    MANIFEST,
    DatasetInfo,
    PreparedDataset,
    content_hash,
    image_path,
    open_dataset,
)
from ml.data.subsets import Subset, SubsetEntry, by_label_combinations, by_samples_per_class
from ml.progress import ProgressFn, StopFn, Stopped, never_stop, no_progress

SubsetKind = Literal["all", "classes", "samples_per_class"]
SUBSET_KINDS: tuple[str, ...] = ("all", "classes", "samples_per_class")
_CHUNK_ROWS = 512

__all__ = ["SUBSET_KINDS", "DerivedDataset", "SubsetKind", "derive_subset", "select_subset"]


@dataclass(frozen=True, slots=True)
class DerivedDataset:
    info: DatasetInfo
    description: str


def select_subset(parent: PreparedDataset, kind: SubsetKind, value: int, seed: int = 0) -> Subset:
    """The rows of `parent` along one benchmark axis (keys in parent order)."""
    entries: list[SubsetEntry] = [(e.key, parent.label_tuple(e), e.split) for e in parent.entries]
    if kind == "classes":
        return by_label_combinations(entries, value, seed)
    if kind == "samples_per_class":
        return by_samples_per_class(entries, value, seed)
    if kind == "all":
        return Subset([e[0] for e in entries], f"all {len(entries)} images")
    raise ValueError(f"subset kind must be one of {SUBSET_KINDS}, got {kind!r}")


def derive_subset(
    parent_root: Path | str,
    out: Path | str,
    *,
    kind: SubsetKind,
    value: int = 0,
    seed: int = 0,
    resolutions: Sequence[int] | None = None,
    progress: ProgressFn = no_progress,
    should_stop: StopFn = never_stop,
) -> DerivedDataset:
    """Write the subset of the dataset at `parent_root` into the new folder `out`.

    `resolutions` (default: all of the parent's) must be stored in the parent: a subset never
    resizes again, so its pixels are bit-identical to the parent's rows.
    """
    parent = open_dataset(parent_root)
    res = tuple(sorted(set(resolutions or parent.info.resolutions)))
    missing = [r for r in res if r not in parent.info.resolutions]
    if missing:
        raise ValueError(
            f"resolution(s) {missing} are not stored in the parent; "
            f"choose from {list(parent.info.resolutions)}"
        )
    subset = select_subset(parent, kind, value, seed)
    wanted = set(subset.keys)
    rows = np.asarray([i for i, e in enumerate(parent.entries) if e.key in wanted], np.int64)
    if rows.size == 0:
        raise ValueError("the subset is empty")
    description = subset.description
    if res != parent.info.resolutions:
        description += f"; resolutions {', '.join(str(r) for r in res)}"
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    if (out / MANIFEST).exists():
        raise FileExistsError(f"{out} already holds a prepared dataset")
    total = rows.size * len(res)
    done = 0
    for r in res:
        source = parent.images(r)
        with image_path(out, r, parent.info.dtype).open("wb") as fh:
            for start in range(0, rows.size, _CHUNK_ROWS):
                if should_stop():
                    raise Stopped(f"subset stopped after {done} of {total} rows")
                chunk = rows[start : start + _CHUNK_ROWS]
                fh.write(np.ascontiguousarray(source[chunk]).tobytes())
                done += chunk.size
                progress(done, total, f"copied {done}/{total} rows")
            fh.flush()
            os.fsync(fh.fileno())
    manifest = _manifest(parent, rows, res, description)
    manifest["content_hash"] = content_hash(out, manifest)
    tmp = out / f".{MANIFEST}.tmp"
    with tmp.open("w", encoding="utf-8") as fh:
        json.dump(manifest, fh, indent=1, sort_keys=True)
        fh.flush()
        os.fsync(fh.fileno())
    os.replace(tmp, out / MANIFEST)
    return DerivedDataset(open_dataset(out).info, description)


def _manifest(
    parent: PreparedDataset, rows: np.ndarray, res: tuple[int, ...], description: str
) -> dict[str, Any]:
    source = parent.manifest
    manifest: dict[str, Any] = {
        "format_version": FORMAT_VERSION,
        "created_by": "ml.data.versions.derive_subset",
        "dtype": source["dtype"],
        "resize_rule": source.get("resize_rule", "pad"),
        "resolutions": list(res),
        "label_names": list(source["label_names"]),
        "entries": [source["entries"][i] for i in rows.tolist()],
        "derived_from": {"content_hash": parent.info.content_hash, "description": description},
    }
    if parent.channels != 1:  # as DatasetWriter: absent for single-channel datasets
        manifest["channels"] = parent.channels
    return manifest
