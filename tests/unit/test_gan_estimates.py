"""Memory and run-time estimates for the GAN form: parameter counts on the meta device match
the real networks, the byte arithmetic, and run time only from measured speeds."""

from __future__ import annotations

import pytest

from app.gans.estimates import (
    MB,
    Measurement,
    MemoryEstimate,
    ModelSize,
    format_duration,
    format_mb,
    memory_estimate,
    memory_lines,
    model_size,
    run_time_lines,
)
from ml.networks.gan import build_gan


def test_meta_count_matches_the_real_dcgan_at_32_px() -> None:
    real = build_gan("dcgan", 32, 3, base_channels=16)
    size = model_size("dcgan", 32, 3, {"base_channels": 16})
    assert size.g_params == sum(p.numel() for p in real.generator.parameters())
    assert size.d_params == sum(p.numel() for p in real.discriminator.parameters())
    assert size.g_buffers == sum(b.numel() for b in real.generator.buffers())
    assert size.d_trainable == size.d_params  # nothing in a DCGAN is frozen
    assert model_size("dcgan", 32, 3, {"base_channels": 16}) is size  # cached


def test_options_and_classes_change_the_count() -> None:
    small = model_size("dcgan", 32, 1, {"base_channels": 16})
    assert model_size("dcgan", 32, 1, {"base_channels": 32}).params > small.params
    assert model_size("dcgan", 32, 5, {"base_channels": 16}).params > small.params


def test_bad_resolution_is_reported_not_swallowed() -> None:
    with pytest.raises(ValueError, match="power of two"):
        model_size("dcgan", 8, 1)


SIZE = ModelSize(
    g_params=1000, d_params=500, g_trainable=1000, d_trainable=400, g_buffers=10, d_buffers=20
)


def test_memory_arithmetic() -> None:
    memory = memory_estimate(SIZE, ema=True)
    assert memory.weights == (1500 + 10 + 20) * 4
    assert memory.gradients == 1400 * 4
    assert memory.adam == 2 * 1400 * 4
    assert memory.ema == (1000 + 10) * 4
    assert memory.dp_per_sample == 0
    assert memory.total == (1530 + 1400 + 2800 + 1010) * 4
    assert memory_estimate(SIZE, ema=False).ema == 0


def test_dp_adds_per_sample_gradients_and_drops_batch_norm_statistics() -> None:
    memory = memory_estimate(SIZE, ema=False, dp_batch=8)
    assert memory.dp_per_sample == 8 * 400 * 4
    assert memory.weights == (1500 + 10) * 4


def test_mb_text() -> None:
    assert format_mb(0) == "0.0 MB"
    assert format_mb(7_250_000) == "7.2 MB"
    assert format_mb(1_234 * MB) == "1,234 MB"
    headline, parts = memory_lines(MemoryEstimate(4 * MB, 4 * MB, 8 * MB, 2 * MB))
    assert headline == "at least 18 MB for weights and optimiser state"
    assert parts == [
        "weights 4.0 MB",
        "gradients 4.0 MB",
        "Adam moments 8.0 MB",
        "EMA generator 2.0 MB",
    ]
    assert len(memory_lines(MemoryEstimate(1, 1, 2, 0))[1]) == 3  # no EMA, no EMA part


def test_durations() -> None:
    assert format_duration(30) == "under 1 min"
    assert format_duration(25 * 60) == "25 min"
    assert format_duration(3 * 3600) == "3.0 h"
    assert format_duration(72 * 3600) == "3.0 days"


def test_run_time_without_a_measurement_says_so() -> None:
    assert run_time_lines("dcgan", 32, 1.0, []) == [
        "No measured run of dcgan at 32 px yet: run the tiny-cpu preset once to calibrate"
    ]
    # The tiny preset would not calibrate another arch: the advice names the right run.
    (line,) = run_time_lines("stylegan2", 256, 5000.0, [])
    assert line.startswith("No measured run of stylegan2 at 256 px yet")
    assert "1 kimg" in line and "tiny-cpu" not in line
    # A recorded speed of zero measures nothing.
    assert run_time_lines("dcgan", 32, 1.0, [Measurement(3, 0.0, "cpu")])[0].startswith("No ")


def test_run_time_from_the_newest_measurement_per_device() -> None:
    measured = [
        Measurement(9, 200.0, "cuda"),
        Measurement(7, 50.0, "cpu"),
        Measurement(4, 100.0, "cuda"),  # older: superseded by job 9
    ]
    assert run_time_lines("dcgan", 32, 12.0, measured) == [
        "about 1 min on cuda, from job #9's measured 200 images/s",
        "about 4 min on cpu, from job #7's measured 50 images/s",
    ]
    (slow,) = run_time_lines("dcgan", 32, 1.0, [Measurement(2, 2.5, "cpu")])
    assert slow == "about 7 min on cpu, from job #2's measured 2.5 images/s"  # 400 s
