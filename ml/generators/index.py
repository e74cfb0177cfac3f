"""The JSON index that stands for a checkpoint: its file names, writing and reading (no torch).

A per-class run writes two (`generators-last.json`, `generators-best.json`): each names one
checkpoint per class, the second each sub-run's `best.pt` where it kept one. An imported
TorchScript generator's folder holds `generator.json`: the module's file, its manifest and
its hash.
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

PER_CLASS_LAST = "generators-last.json"
PER_CLASS_BEST = "generators-best.json"
TORCHSCRIPT_INDEX = "generator.json"
INDEX_NAMES = (PER_CLASS_LAST, PER_CLASS_BEST, TORCHSCRIPT_INDEX)
KINDS = ("per_class", "torchscript")


def is_index(path: Path) -> bool:
    return path.name in INDEX_NAMES


def write_index(path: Path, index: dict[str, Any]) -> None:
    if index.get("kind") not in KINDS:
        raise ValueError(f"index kind must be one of {KINDS}")
    tmp = path.with_suffix(".json.tmp")
    tmp.write_text(json.dumps(index, indent=2), encoding="utf-8")
    os.replace(tmp, path)  # a reader never sees half an index


def read_index(path: Path) -> dict[str, Any]:
    index = json.loads(path.read_text(encoding="utf-8"))
    if not isinstance(index, dict) or index.get("kind") not in KINDS:
        raise ValueError(f"{path} is not a generator index (kind one of {KINDS})")
    return index
