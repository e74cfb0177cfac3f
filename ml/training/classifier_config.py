"""The classifier's configuration, checked without importing torch (the web forms use it)."""

from __future__ import annotations

import math
from dataclasses import dataclass

from ml.devices import check_device_name
from ml.networks.classifier_archs import ARCHS, MIN_RESOLUTION

TASKS = ("auto", "multilabel", "multiclass")


def _positive_int(name: str, value: object, minimum: int = 1) -> None:
    if isinstance(value, bool) or not isinstance(value, int) or value < minimum:
        raise ValueError(f"{name} must be a whole number >= {minimum}, got {value!r}")


@dataclass
class ClassifierConfig:
    arch: str = "densenet121"
    resolution: int = 64
    epochs: int = 20
    batch_size: int = 32
    lr: float = 1e-3
    weight_decay: float = 1e-5
    # Small random rotation, shift and zoom. No flips: a chest radiograph is not left-right
    # symmetric (heart, lateralised findings), and upside-down images never occur.
    augment: bool = True
    balanced: bool = False  # sample each label combination equally often
    task: str = "auto"
    patience: int = 0  # epochs without a better val macro AUC before stopping; 0 = off
    seed: int = 0
    device: str = "cpu"  # "auto": CUDA when available

    def __post_init__(self) -> None:
        self.check()

    def check(self) -> None:
        """Raise ValueError with a message fit for a user when a field is out of range."""
        if self.arch not in ARCHS:
            raise ValueError(f"arch must be one of {', '.join(ARCHS)}, got {self.arch!r}")
        _positive_int("resolution", self.resolution)
        if self.resolution < MIN_RESOLUTION[self.arch]:
            raise ValueError(
                f"{self.arch} needs images of at least {MIN_RESOLUTION[self.arch]} px, "
                f"got resolution {self.resolution}"
            )
        _positive_int("epochs", self.epochs)
        # Batch normalisation needs two images per batch to estimate its statistics.
        _positive_int("batch_size", self.batch_size, 2)
        _positive_int("patience", self.patience, 0)
        _positive_int("seed", self.seed, 0)
        for name in ("lr", "weight_decay"):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, int | float):
                raise ValueError(f"{name} must be a number, got {value!r}")
        if not (math.isfinite(self.lr) and self.lr > 0):
            raise ValueError(f"lr must be a positive number, got {self.lr!r}")
        if not (math.isfinite(self.weight_decay) and self.weight_decay >= 0):
            raise ValueError(f"weight_decay must be >= 0, got {self.weight_decay!r}")
        for name in ("augment", "balanced"):
            if not isinstance(getattr(self, name), bool):
                raise ValueError(f"{name} must be true or false, got {getattr(self, name)!r}")
        if self.task not in TASKS:
            raise ValueError(f"task must be one of {', '.join(TASKS)}, got {self.task!r}")
        check_device_name(self.device)
