"""The tick loop every adversarial trainer runs (GANs, CycleGAN): steps counted in images, a
tick every `tick_kimg` thousand images (its mean statistics logged), a snapshot every
`snapshot_ticks` ticks and at the end.

Written once so that the GAN and the CycleGAN trainers agree on what a tick, a snapshot, a stop
and a resumed run mean; each trainer passes its own step, tick record and snapshot.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any, Protocol

from ml.progress import Stopped
from ml.training import run_log


class Position(Protocol):
    """Where a run is: images seen and ticks done (both restored from a checkpoint)."""

    nimg: int
    tick: int


@dataclass(frozen=True)
class Schedule:
    kimg: float
    batch_size: int
    tick_kimg: float
    snapshot_ticks: int

    @property
    def total(self) -> int:
        return int(self.kimg * 1000)


def _identity(sums: dict[str, float]) -> Mapping[str, float]:
    return sums


def run_ticks(
    run: Position,
    schedule: Schedule,
    step: Callable[[], Mapping[str, float]],
    *,
    should_stop: Callable[[], bool],
    stop_before_write: Callable[[], bool],
    write_tick: Callable[[dict[str, Any]], None],
    snapshot: Callable[[], bool],
    reduce: Callable[[dict[str, float]], Mapping[str, float]] = _identity,
    kimg_decimals: int = 2,
) -> bool:
    """Train from `run.nimg` to the schedule's end; True when `snapshot` asked to stop early.

    `should_stop` is asked before every step, `stop_before_write` right before each tick is
    written (a job that lost its run must not write one more line); either raises `Stopped`.
    `reduce` turns this process's sums into the global ones (DDP: the mean over ranks).
    """
    total = schedule.total
    tick_start, tick_nimg = time.perf_counter(), run.nimg
    sums: dict[str, float] = {}
    steps = 0
    while run.nimg < total:
        if should_stop():
            raise Stopped(f"stopped at {run.nimg / 1000:.{kimg_decimals}f} kimg")
        for key, value in step().items():
            sums[key] = sums.get(key, 0.0) + value
        steps += 1
        run.nimg += schedule.batch_size
        done = run.nimg >= total
        if run.nimg - tick_nimg < schedule.tick_kimg * 1000 and not done:
            continue
        run.tick += 1
        seconds = time.perf_counter() - tick_start
        means = {k: v / steps for k, v in reduce(sums).items()}
        record = run_log.tick_record(run.tick, run.nimg, tick_nimg, seconds, means)
        if stop_before_write():
            raise Stopped(f"stopped at {run.nimg / 1000:.{kimg_decimals}f} kimg")
        write_tick(record)
        if (run.tick % schedule.snapshot_ticks == 0 or done) and snapshot():
            return True
        tick_start, tick_nimg, sums, steps = time.perf_counter(), run.nimg, {}, 0
    return False
