"""The one tick loop of the GAN and CycleGAN trainers (`ml.training.ticks`): ticks fall every
`tick_kimg`, snapshots every `snapshot_ticks` ticks and at the end, a resumed run continues
from its position, and a stop is honoured before a step and before a tick is written."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import pytest

from ml.progress import Stopped
from ml.training.ticks import Schedule, run_ticks


@dataclass
class _Run:
    nimg: int = 0
    tick: int = 0


def _loop(run: _Run, schedule: Schedule, **overrides: Any) -> tuple[bool, list, list]:
    records: list[dict[str, Any]] = []
    snapshots: list[int] = []
    values = iter(range(1, 10_000))

    def snapshot() -> bool:
        snapshots.append(run.nimg)
        return False

    options: dict[str, Any] = {
        "should_stop": lambda: False,
        "stop_before_write": lambda: False,
        "write_tick": records.append,
        "snapshot": snapshot,
        **overrides,
    }
    early = run_ticks(run, schedule, lambda: {"loss": float(next(values))}, **options)
    return early, records, snapshots


def test_ticks_snapshots_and_means_fall_where_the_schedule_says() -> None:
    run = _Run()
    # 100 images in batches of 8: 13 steps (104 images); a tick every 24 images (3 steps).
    early, records, snapshots = _loop(run, Schedule(0.1, 8, 0.024, 2))
    assert not early
    assert run.nimg == 104 and run.tick == 5
    assert [r["kimg"] for r in records] == [0.024, 0.048, 0.072, 0.096, 0.104]
    # Each tick's loss is the mean of its own steps: (1+2+3)/3, (4+5+6)/3, ... then step 13.
    assert [r["loss"] for r in records] == [2.0, 5.0, 8.0, 11.0, 13.0]
    assert snapshots == [48, 96, 104]  # every 2nd tick, and the last one


def test_a_resumed_run_continues_from_its_position() -> None:
    run = _Run(nimg=48, tick=2)
    _, records, snapshots = _loop(run, Schedule(0.1, 8, 0.024, 2))
    assert [r["tick"] for r in records] == [3, 4, 5]
    assert snapshots == [96, 104]


def test_a_snapshot_can_stop_the_run_early() -> None:
    run = _Run()
    early, records, _ = _loop(run, Schedule(0.1, 8, 0.024, 1), snapshot=lambda: run.tick == 2)
    assert early and run.tick == 2 and len(records) == 2


def test_stops_before_a_step_and_before_a_tick_is_written() -> None:
    run = _Run()
    with pytest.raises(Stopped, match=r"at 0\.02 kimg"):
        _loop(run, Schedule(0.1, 8, 0.024, 1), should_stop=lambda: run.nimg >= 24)
    run = _Run()
    with pytest.raises(Stopped, match=r"at 0\.024 kimg"):
        _loop(run, Schedule(0.1, 8, 0.024, 1), stop_before_write=lambda: True, kimg_decimals=3)
    assert run.tick == 1  # counted, but nothing written


def test_reduce_sees_the_sums_before_the_mean() -> None:
    run = _Run()
    _, records, _ = _loop(
        run,
        Schedule(0.024, 8, 0.024, 1),
        reduce=lambda s: {"loss": 0.0, **{k + "_x2": 2 * v for k, v in s.items()}},
    )
    assert records[0]["loss_x2"] == 2 * (1 + 2 + 3) / 3
