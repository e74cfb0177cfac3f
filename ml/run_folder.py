"""The run folder: the one place that names the files a training run writes and reads them back.

Trainers (GAN, CycleGAN, classifier, one GAN per class), sampling, the workers and the web pages
all find a run's files through these names, so a file renamed here is renamed everywhere, and a
page never guesses at a string a trainer wrote. Nothing here imports torch: the web tier reads
run folders too.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

CHECKPOINT = "checkpoint.pt"  # the last snapshot: what a resumed run continues from
BEST = "best.pt"  # the snapshot with the lowest FID (GANs) or best validation AUC (classifiers)
METRICS = "metrics.jsonl"  # one record per tick (GANs) or epoch (classifiers)
SNAPSHOTS = "snapshots.jsonl"  # one record per snapshot: kimg, FID, grid file
RUN_INFO = "run.json"  # the finished run's summary
RESULT = "result.json"  # a finished classifier's (or per-class sub-run's) result
MANIFEST = "manifest.csv"  # images written by sampling or translation: file, source, label
GRIDS = "grids"  # one sample grid per snapshot
FEATURES = "features.pt"  # a classifier's penultimate-layer feature extractor (TorchScript)
CLASSIFIER = "classifier.pt"  # the classifier itself (TorchScript)
LOG = "log.txt"


def read_jsonl(path: Path) -> list[dict[str, Any]]:
    """Every complete record of a JSON-lines log; [] when there is none yet."""
    if not path.is_file():
        return []
    rows = []
    for line in path.read_text(encoding="utf-8").splitlines():
        if line.strip():
            try:
                rows.append(json.loads(line))
            except json.JSONDecodeError:
                break  # a line being written right now
    return rows


def write_run_info(out: Path, info: dict[str, Any]) -> None:
    (out / RUN_INFO).write_text(json.dumps(info, indent=2), encoding="utf-8")


def read_run_info(folder: Path) -> dict[str, Any] | None:
    path = folder / RUN_INFO
    if not path.is_file():
        return None
    return json.loads(path.read_text(encoding="utf-8"))
