"""The GAN training configuration and the run folder's checkpoint names, without torch.

The launch form, the clone check and the demo validate a `GanConfig` in the web tier, which
must not import torch for that; `ml.training.gan` trains with it.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Any

from ml import run_folder

AUGMENTS = ("none", "diffaugment", "ada")
CHECKPOINT = run_folder.CHECKPOINT
BEST = run_folder.BEST
# Progressive growing's defaults (ProGAN section A.1: 800k images per fade-in or stabilise
# phase, from 4x4); `build_progan` takes them as options of the same names.
PROGAN_KIMG_PER_PHASE = 800.0
PROGAN_START_RESOLUTION = 4


@dataclass
class GanConfig:
    arch: str = "dcgan"
    resolution: int = 32
    batch_size: int = 32
    kimg: float = 2.0
    tick_kimg: float = 0.5
    snapshot_ticks: int = 2
    seed: int = 0
    ema_kimg: float | None = 1.0  # EMA half-life; None disables the average generator
    augment: str = "none"
    ada_target: float = 0.6
    ada_kimg: float = 100.0  # ADA: images (k) for p to go 0 -> 1 at full speed
    mirror: bool = True  # x-flip real images: chest X-rays are roughly symmetric in texture
    fid_features: str | None = None  # "inception", a TorchScript path, or None for no FID
    fid_images: int = 1000
    fid_patience: int = 0  # snapshots without FID improvement before stopping; 0 = never
    split: str = "train"
    device: str = "cpu"
    # bfloat16 autocast: fast on CUDA GPUs and on CPUs with AVX512-BF16 / AMX, emulated (slow)
    # on others, so it is opt-in.
    amp: bool = False
    # NHWC memory format: oneDNN's and cuDNN's fast convolution layout (+15% on this CPU).
    channels_last: bool = True
    arch_options: dict[str, Any] = field(default_factory=dict)
    # DP-SGD on the discriminator (ml.training.privacy): noise sigma (None = not private),
    # per-sample clipping norm C, and delta (None: min(1e-5, n_train^-1.1)).
    dp_noise_multiplier: float | None = None
    dp_max_grad_norm: float = 1.0
    dp_delta: float | None = None
    # Seed 001's domain-classifier loss: a frozen classifier trained on the real data (a
    # TorchScript file mapping images in [-1, 1] to logits) scores each fake against its
    # requested class; the (binary) cross-entropy, weighted by `domain_lambda`, is added to
    # the generator's loss. A classifier run's classifier.pt (multiclass, multilabel or
    # binary, read from the result.json beside it), or logits over this run's classes in
    # `class_names` order (`ml.training.domain_loss`).
    domain_classifier: str | None = None
    domain_lambda: float = 0.0
    # Seed 002: one generator per class, each trained on that class's images alone in a
    # sub-run folder of its own (`ml.generators.per_class`); `only_class` is the class one
    # such sub-run trains on (set by the driver, not by users).
    per_class: bool = False
    only_class: str | None = None

    def check(self) -> None:
        if self.augment not in AUGMENTS:
            raise ValueError(f"augment must be one of {AUGMENTS}, got {self.augment!r}")
        if self.batch_size < 1 or self.kimg <= 0 or self.tick_kimg <= 0:
            raise ValueError("batch_size, kimg and tick_kimg must be positive")
        if self.snapshot_ticks < 1:
            raise ValueError("snapshot_ticks must be >= 1")
        if self.fid_patience and not self.fid_features:
            raise ValueError("fid_patience needs fid_features (early stopping is on FID)")
        if self.dp_noise_multiplier is not None:
            check_private_config(self)
        if self.domain_lambda < 0 or (self.domain_lambda > 0) != bool(self.domain_classifier):
            raise ValueError("domain_lambda > 0 and domain_classifier go together")
        if self.per_class and (self.domain_classifier or self.only_class is not None):
            # A one-class generator has no class to steer towards: the domain loss is moot.
            raise ValueError("per_class trains one generator per class: no domain classifier")


def check_private_config(config: GanConfig) -> None:
    """Refuse options that would steer a private run with un-noised real-data statistics."""
    if config.dp_noise_multiplier <= 0 or config.dp_max_grad_norm <= 0:
        raise ValueError("dp_noise_multiplier and dp_max_grad_norm must be positive")
    if config.dp_delta is not None and not 0 < config.dp_delta < 1:
        raise ValueError("dp_delta must be in (0, 1)")
    if config.augment == "ada":
        raise ValueError("ADA tunes p from D's outputs on real images, which is not private")
    if config.fid_patience:
        raise ValueError("FID early stopping selects on the training images: not private")


def progressive_schedule(kimg: float, kimg_per_phase: float, n_levels: int) -> tuple[int, float]:
    """(level, alpha) after `kimg` thousand images (ProGAN section 2 and A.1).

    Level 0 trains for one phase; every later level fades in linearly over one phase (alpha
    0 -> 1) and then stabilises for one phase (alpha = 1). After the last level it stays there.
    """
    if kimg_per_phase <= 0:
        raise ValueError("kimg_per_phase must be positive")
    t = max(kimg, 0.0) / kimg_per_phase
    if t < 1.0 or n_levels == 1:
        return 0, 1.0
    level = 1 + int((t - 1.0) // 2)
    if level >= n_levels:
        return n_levels - 1, 1.0
    return level, min(t - 1.0 - 2 * (level - 1), 1.0)


def _progressive_options(config: GanConfig) -> tuple[int, float, int]:
    """(start resolution, kimg per phase, number of levels) of a progressive run."""
    start = int(config.arch_options.get("start_resolution", PROGAN_START_RESOLUTION))
    per_phase = float(config.arch_options.get("kimg_per_phase", PROGAN_KIMG_PER_PHASE))
    return start, per_phase, _n_levels(config.resolution, start)


def _n_levels(resolution: int, start: int) -> int:
    if start < 4 or resolution < start:
        raise ValueError(f"cannot grow from {start} px to {resolution} px")
    return int(math.log2(resolution // start)) + 1


def final_resolution(config: GanConfig) -> int:
    """The resolution of the level the generator is at when the run has shown all its `kimg`
    images. Only progressive growing can end below `config.resolution`; it may also end with
    that level still fading in (see `kimg_to_full_resolution`)."""
    if config.arch != "progan":
        return config.resolution
    start, per_phase, n_levels = _progressive_options(config)
    level, _ = progressive_schedule(config.kimg, per_phase, n_levels)
    return start * 2**level


def kimg_to_full_resolution(config: GanConfig) -> float:
    """Images (k) after which the generator works at `config.resolution` (0 unless progressive):
    one phase at the start level, then a fade-in and a stabilisation phase per level, the last
    level's stabilisation excepted."""
    if config.arch != "progan":
        return 0.0
    _, per_phase, n_levels = _progressive_options(config)
    return per_phase * (2 * n_levels - 2) if n_levels > 1 else 0.0


def progressive_kimg(resolution: int, *, kimg_per_phase: float = PROGAN_KIMG_PER_PHASE) -> float:
    """Training length of a progressive run from 4 px that grows to `resolution` and then
    stabilises there for one phase, as at every level before it: 2 n - 1 phases for n levels."""
    return kimg_per_phase * (2 * _n_levels(resolution, PROGAN_START_RESOLUTION) - 1)
