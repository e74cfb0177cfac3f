"""Per-attempt wall time and energy, summed over a job's attempts."""

from __future__ import annotations

import time

import pytest

from workers.energy import add_attempt, measure


def test_measure_records_wall_time_device_and_an_energy_estimate() -> None:
    with measure(country="DEU") as usage:
        end = time.perf_counter() + 0.3
        while time.perf_counter() < end:
            sum(i * i for i in range(1000))  # some CPU work for the process tracker
    assert usage["wall_s"] >= 0.3
    assert usage["device"].startswith(("cpu", "cuda"))
    assert usage["energy_kwh"] >= 0.0
    assert usage["co2_kg"] >= 0.0
    assert usage["country"] == "DEU"
    assert "codecarbon" in usage["tracker"]


def test_measure_still_records_when_the_block_raises() -> None:
    with pytest.raises(RuntimeError), measure(tracking=False) as usage:
        raise RuntimeError("boom")
    assert usage["wall_s"] >= 0.0
    assert "off" in usage["energy_note"]
    assert "energy_kwh" not in usage


def test_attempts_add_up_and_an_unmeasured_attempt_voids_the_energy_total() -> None:
    first = {"wall_s": 2.0, "energy_kwh": 0.5, "co2_kg": 0.2, "device": "cpu (x)"}
    second = {"wall_s": 3.0, "energy_kwh": 0.25, "co2_kg": 0.1, "device": "cpu (x)"}
    total = add_attempt(add_attempt(None, first), second)
    assert total["wall_s"] == 5.0
    assert total["energy_kwh"] == pytest.approx(0.75)
    assert total["co2_kg"] == pytest.approx(0.3)
    assert total["attempts"] == 2
    unmeasured = add_attempt(total, {"wall_s": 1.0, "device": "cpu (x)", "energy_note": "off"})
    assert unmeasured["wall_s"] == 6.0
    assert "energy_kwh" not in unmeasured
    assert "energy_kwh" not in add_attempt(unmeasured, second)
