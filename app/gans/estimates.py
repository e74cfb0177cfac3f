"""What a GAN training run will need, shown on the form before anything is started.

Memory is computed, not guessed: the chosen networks are built on PyTorch's `meta` device
(shapes only, no storage; in a child process, see `ml.networks.gan_sizes`) and their
parameters counted, which gives a hard lower bound on
what training keeps resident (weights, gradients, Adam's two moments, the EMA generator).
Activation memory is deliberately *not* estimated: it depends on autograd's saved tensors,
the loss (gradient penalties double the graph), cuDNN workspaces and the allocator, and a
forward pass measured under `no_grad` would understate it badly.

Run time comes only from measurements: the speed (`images_per_second`) that finished
training jobs of the same architecture and resolution recorded. Without one we say so
rather than print a number nobody measured.
"""

from __future__ import annotations

import json
import math
import subprocess
import sys
from collections.abc import Sequence
from dataclasses import dataclass
from functools import lru_cache
from typing import Any, NamedTuple

from sqlalchemy import select
from sqlalchemy.orm import Session

from app.gans.options import PRESETS
from app.jobs.specs import SpecError
from app.models import Dataset, Job, JobStatus
from ml.data.classes import split_classes
from ml.data.store import open_dataset
from ml.training.gan_config import GanConfig

# The loop keeps weights, gradients and Adam moments in float32 (bf16 autocast only changes
# activations), so 4 bytes per value is exact for parameters and a floor for buffers.
BYTES_PER_VALUE = 4
MB = 1_000_000  # decimal megabytes, as the label says
# Newest finished training jobs scanned for a speed: the JSON config is filtered in Python
# (portable across SQLite and PostgreSQL), so the scan is bounded.
SCAN_JOBS = 500
# Building the networks on the meta device takes well under a second; importing torch most of
# this.
SIZE_TIMEOUT_S = 120
CALIBRATION_PRESET = "tiny-cpu"


@dataclass(frozen=True)
class ModelSize:
    """Element counts of the two networks, split into what Adam trains and what it does not."""

    g_params: int
    d_params: int
    g_trainable: int
    d_trainable: int
    g_buffers: int
    d_buffers: int

    @property
    def params(self) -> int:
        return self.g_params + self.d_params


@dataclass(frozen=True)
class MemoryEstimate:
    """Bytes that training keeps resident whatever the batch size (plus DP's per-sample grads)."""

    weights: int
    gradients: int
    adam: int
    ema: int
    dp_per_sample: int = 0

    @property
    def total(self) -> int:
        return self.weights + self.gradients + self.adam + self.ema + self.dp_per_sample


class Measurement(NamedTuple):
    job_id: int
    images_per_second: float
    device: str


@dataclass(frozen=True)
class Estimate:
    n_classes: int
    channels: int
    size: ModelSize
    memory: MemoryEstimate
    memory_text: str
    memory_parts: list[str]
    run_time: list[str]
    measured: bool  # False: `run_time` says that no speed has been measured yet


def model_size(
    arch: str, resolution: int, n_classes: int, arch_options: dict[str, Any] | None = None
) -> ModelSize:
    """Sizes of `build_gan(arch, resolution, n_classes, **arch_options)`, cached."""
    # JSON text as the cache key: options may hold lists, which lru_cache cannot hash.
    key = json.dumps(arch_options or {}, sort_keys=True)
    return _model_size(arch, resolution, n_classes, key)


@lru_cache(maxsize=128)
def _model_size(arch: str, resolution: int, n_classes: int, options_json: str) -> ModelSize:
    # The networks are built in a child interpreter so that torch (7 s and 230 MB to import)
    # never enters the web process; the answer is cached for the life of this one.
    argv = [sys.executable, "-m", "ml.networks.gan_sizes", arch, str(resolution)]
    done = subprocess.run(  # noqa: S603 - fixed argv, no shell, our own module
        [*argv, str(n_classes), options_json],
        capture_output=True,
        text=True,
        timeout=SIZE_TIMEOUT_S,
        check=False,
    )
    if done.returncode != 0:
        raise RuntimeError(f"counting the networks failed: {done.stderr.strip()[-500:]}")
    answer = json.loads(done.stdout)
    if "error" in answer:
        raise ValueError(answer["error"])
    return ModelSize(**answer)


def memory_estimate(size: ModelSize, *, ema: bool, dp_batch: int | None = None) -> MemoryEstimate:
    """Resident bytes: weights and buffers of G and D, a gradient and two Adam moments per
    trainable parameter, the EMA copy of G (parameters and buffers), and with DP-SGD at least
    one per-sample gradient of D per image of the batch (Opacus' `grad_sample`)."""
    d_buffers = size.d_buffers
    if dp_batch:
        # Opacus needs D without batch norm: BatchNorm becomes GroupNorm, whose affine
        # parameters are the same but which keeps no running statistics.
        d_buffers = 0
    trainable = size.g_trainable + size.d_trainable
    return MemoryEstimate(
        weights=(size.params + size.g_buffers + d_buffers) * BYTES_PER_VALUE,
        gradients=trainable * BYTES_PER_VALUE,
        adam=2 * trainable * BYTES_PER_VALUE,
        ema=(size.g_params + size.g_buffers) * BYTES_PER_VALUE if ema else 0,
        dp_per_sample=(dp_batch or 0) * size.d_trainable * BYTES_PER_VALUE,
    )


def format_mb(n_bytes: int) -> str:
    """'0.4 MB', '7.2 MB', '1,234 MB': one decimal only where it carries information."""
    mb = n_bytes / MB
    return f"{mb:.1f} MB" if mb < 10 else f"{mb:,.0f} MB"


def memory_lines(memory: MemoryEstimate) -> tuple[str, list[str]]:
    """The headline and its breakdown."""
    parts = [
        f"weights {format_mb(memory.weights)}",
        f"gradients {format_mb(memory.gradients)}",
        f"Adam moments {format_mb(memory.adam)}",
    ]
    if memory.ema:
        parts.append(f"EMA generator {format_mb(memory.ema)}")
    if memory.dp_per_sample:
        parts.append(f"DP per-sample gradients of D {format_mb(memory.dp_per_sample)}")
    return f"at least {format_mb(memory.total)} for weights and optimiser state", parts


def format_duration(seconds: float) -> str:
    minutes = seconds / 60
    if minutes < 1:
        return "under 1 min"
    if minutes < 120:
        return f"{minutes:.0f} min"
    hours = minutes / 60
    if hours < 48:
        return f"{hours:.1f} h"
    return f"{hours / 24:.1f} days"


def format_speed(images_per_second: float) -> str:
    ips = images_per_second
    return f"{ips:.1f}" if ips < 10 else f"{ips:,.0f}"


def run_time_lines(
    arch: str, resolution: int, kimg: float, measurements: Sequence[Measurement]
) -> list[str]:
    """One line per device, from the newest measurement on it (`measurements` newest first)."""
    newest: dict[str, Measurement] = {}
    for m in measurements:
        if m.images_per_second > 0 and math.isfinite(m.images_per_second):
            newest.setdefault(m.device, m)
    if not newest:
        return [f"No measured run of {arch} at {resolution} px yet: {_calibrate(arch, resolution)}"]
    return [
        f"about {format_duration(kimg * 1000 / m.images_per_second)} on {m.device}, "
        f"from job #{m.job_id}'s measured {format_speed(m.images_per_second)} images/s"
        for m in newest.values()
    ]


def _calibrate(arch: str, resolution: int) -> str:
    # The tiny preset only calibrates its own arch and resolution; elsewhere it would mislead.
    preset = PRESETS[CALIBRATION_PRESET]
    if (arch, resolution) == (preset["arch"], preset["resolution"]):
        return f"run the {CALIBRATION_PRESET} preset once to calibrate"
    return f"run a short training (1 kimg) of {arch} at {resolution} px once to calibrate"


def measured_speeds(
    db: Session, arch: str, resolution: int, device: str | None = None
) -> list[Measurement]:
    """Speeds of succeeded training jobs of this arch and resolution, newest first. Any
    owner's: only the speed and the job number are shown, never data or settings."""
    query = (
        select(Job.id, Job.params, Job.result)
        .where(Job.type == "train_gan", Job.status == JobStatus.succeeded)
        .order_by(Job.finished_at.desc().nulls_last(), Job.id.desc())
        .limit(SCAN_JOBS)
    )
    found: list[Measurement] = []
    for job_id, params, result in db.execute(query):
        config = (params or {}).get("config") or {}
        result = result or {}
        speed = result.get("images_per_second")
        if config.get("arch") != arch or config.get("resolution") != resolution:
            continue
        if not isinstance(speed, int | float) or isinstance(speed, bool):
            continue
        if not (speed > 0 and math.isfinite(speed)):  # a run too short to time measures nothing
            continue
        ran_on = str(result.get("device") or "an unrecorded device")
        if device is not None and ran_on != device:
            continue
        found.append(Measurement(job_id, float(speed), ran_on))
    return found


def dataset_shape(dataset: Dataset, split: str) -> tuple[int, int]:
    """(classes, channels) exactly as the training loop will see them."""
    if not dataset.is_ready:
        raise SpecError("dataset", "The dataset is not ready yet; wait for its import.")
    return _dataset_shape(dataset.path, dataset.content_hash, split)


@lru_cache(maxsize=32)
def _dataset_shape(path: str, content_hash: str, split: str) -> tuple[int, int]:
    # Keyed by content hash: a re-imported dataset at the same path is counted again.
    try:
        store = open_dataset(path)
        # The training loop numbers classes with the same function: they cannot disagree.
        classes = split_classes(store, split)
    except (OSError, ValueError) as exc:
        raise SpecError("dataset", f"Cannot read the dataset: {exc}") from None
    return len(classes.names), store.channels


def training_options(config: GanConfig, channels: int) -> dict[str, Any]:
    """The builder options the loop passes that change the networks' shapes."""
    options = dict(config.arch_options)
    # As `ml.training.gan._Run`: channels only when not 1, so single-channel builds match.
    # StyleGAN2's `batch` option is left out: it sets the R1 weight, not any shape.
    if channels != 1:
        options["channels"] = channels
    return options


def estimate(db: Session, dataset: Dataset, config: GanConfig) -> Estimate:
    n_classes, channels = dataset_shape(dataset, config.split)
    # One GAN per class: one-class networks, trained one after the other on `kimg` each.
    n_runs = n_classes if config.per_class else 1
    try:
        size = model_size(
            config.arch,
            config.resolution,
            1 if config.per_class else n_classes,
            training_options(config, channels),
        )
    except (ValueError, TypeError) as exc:
        raise SpecError(
            "arch", f"{config.arch} cannot be built with these settings: {exc}"
        ) from None
    memory = memory_estimate(
        size,
        ema=bool(config.ema_kimg),
        dp_batch=config.batch_size if config.dp_noise_multiplier is not None else None,
    )
    headline, parts = memory_lines(memory)
    # The form leaves the device to the worker ("auto"): then every device's speed is shown.
    device = None if config.device == "auto" else config.device
    speeds = measured_speeds(db, config.arch, config.resolution, device)
    return Estimate(
        n_classes=n_classes,
        channels=channels,
        size=size,
        memory=memory,
        memory_text=headline,
        memory_parts=parts,
        run_time=run_time_lines(config.arch, config.resolution, config.kimg * n_runs, speeds),
        measured=bool(speeds),
    )
