"""Wall time, device and an energy / CO2 estimate for one job attempt.

The estimate comes from codecarbon's offline tracker (no network: the grid's carbon intensity
is looked up by country in codecarbon's bundled tables). It measures this process's CPU share
against the CPU's rated power, RAM, and NVIDIA GPUs through NVML; on machines where it cannot
read power it says so rather than guessing. Seed 004 tracked the same figures for its GANs.

Attempts add up: a job resumed after its worker died reports the sum of its attempts, because
the energy was spent either way.
"""

from __future__ import annotations

import logging
import platform
import time
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

log = logging.getLogger(__name__)

SUMMED = ("wall_s", "energy_kwh", "co2_kg")


def device_name() -> str:
    try:
        import torch

        if torch.cuda.is_available():
            return f"cuda ({torch.cuda.get_device_name(0)})"
    except ImportError:  # pragma: no cover - torch is a dependency
        pass
    return f"cpu ({platform.processor() or platform.machine()})"


def _tracker(country: str) -> Any:
    from codecarbon import OfflineEmissionsTracker

    # Importing codecarbon sets its logger to INFO, and the tracker logs before it applies
    # log_level: quieten it after the import, before the tracker starts.
    logging.getLogger("codecarbon").setLevel(logging.ERROR)

    return OfflineEmissionsTracker(
        country_iso_code=country,
        save_to_file=False,
        log_level="error",
        tracking_mode="process",
        measure_power_secs=15,
        allow_multiple_runs=True,
    )


@contextmanager
def measure(*, tracking: bool = True, country: str = "USA") -> Iterator[dict[str, Any]]:
    """Yields a dict filled in when the block ends (also when it raises)."""
    record: dict[str, Any] = {"device": device_name()}
    tracker = None
    if tracking:
        try:
            tracker = _tracker(country)
            tracker.start()
        except Exception as exc:  # the estimate is a courtesy; never fail a job for it
            log.warning("energy tracking unavailable: %s", exc)
            record["energy_note"] = f"codecarbon unavailable: {exc}"[:300]
            tracker = None
    else:
        record["energy_note"] = "energy tracking is off (SYNTHBENCH_ENERGY_TRACKING=0)"
    started = time.perf_counter()
    try:
        yield record
    finally:
        record["wall_s"] = round(time.perf_counter() - started, 3)
        if tracker is not None:
            _stop(tracker, record, country)


def _stop(tracker: Any, record: dict[str, Any], country: str) -> None:
    try:
        emissions = tracker.stop()
        data = tracker.final_emissions_data
    except Exception as exc:
        record["energy_note"] = f"codecarbon failed: {exc}"[:300]
        return
    if data is None or emissions is None:
        record["energy_note"] = "codecarbon returned no measurement"
        return
    record.update(
        energy_kwh=float(data.energy_consumed),
        co2_kg=float(emissions),
        tracker="codecarbon (offline, process mode)",
        country=country,
        cpu_model=str(data.cpu_model or ""),
        gpu_model=str(data.gpu_model or ""),
    )


def add_attempt(previous: dict[str, Any] | None, attempt: dict[str, Any]) -> dict[str, Any]:
    """The job's running totals after one more attempt."""
    total = dict(previous or {})
    attempts = int(total.get("attempts", 0)) + 1
    # A total is only an energy figure if every attempt was measured.
    all_measured = "energy_kwh" in attempt and (not previous or "energy_kwh" in previous)
    for key, value in attempt.items():
        if key in SUMMED:
            total[key] = round(float(total.get(key, 0.0)) + float(value), 9)
        else:
            total[key] = value
    if not all_measured:
        total.pop("energy_kwh", None)
        total.pop("co2_kg", None)
    total["attempts"] = attempts
    return total
