"""The JSON-lines logs of a training run (ticks, snapshots), shared by every training loop.

One record per line with a `kimg` field. A run resumed from a checkpoint first drops the
records logged after that checkpoint (they will be logged again), so a log read after any
number of restarts has each tick and snapshot exactly once.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from ml.progress import StopFn


def stop_before_write(should_stop: StopFn) -> bool:
    """`should_stop`, asked right before a checkpoint or a log line is written.

    A host whose `should_stop` is throttled (one database read per interval) offers an
    unthrottled `should_stop.now()`: a job attempt that has just lost its job to another one
    must stop before it writes one more line into the run folder they share.
    """
    now = getattr(should_stop, "now", None)
    return bool(now()) if callable(now) else bool(should_stop())


def truncate_after(path: Path, kimg: float) -> None:
    """Drop the records logged after `kimg` thousand images (the checkpoint resumed from)."""
    if not path.exists():
        return
    lines = path.read_text(encoding="utf-8").splitlines()
    keep = [s for s in lines if s.strip() and json.loads(s)["kimg"] <= kimg + 1e-9]
    path.write_text("".join(f"{s}\n" for s in keep), encoding="utf-8")


def append(path: Path, record: Mapping[str, Any]) -> None:
    with path.open("a", encoding="utf-8") as fh:
        fh.write(json.dumps(record) + "\n")


def tick_record(
    tick: int, nimg: int, tick_nimg: int, seconds: float, means: Mapping[str, float]
) -> dict[str, Any]:
    """The common fields of a tick: position, duration, speed, and the mean statistics."""
    return {
        "tick": tick,
        "kimg": round(nimg / 1000.0, 6),
        "sec_per_tick": round(seconds, 4),
        "images_per_second": round((nimg - tick_nimg) / max(seconds, 1e-9), 2),
        **{k: round(v, 6) for k, v in means.items()},
    }
