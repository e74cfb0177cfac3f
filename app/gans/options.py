"""GAN training and sampling options from a form or the CLI -> checked job parameters.

Presets fill in the settings of the seed studies; any field given explicitly overrides them.
The checked parameters are exactly `ml.training.gan.GanConfig`'s fields (plus the dataset id),
so the job record is a complete recipe for rerunning the training.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import asdict, fields
from pathlib import Path
from typing import Any

from app.domain.form_values import decimal_number, whole_number
from app.jobs.specs import SpecError
from ml.networks.gan_families import FAMILIES as ARCHS
from ml.training.cyclegan_config import CycleGanConfig
from ml.training.gan_config import AUGMENTS, GanConfig, progressive_kimg


def _progan_preset(resolution: int, batch_size: int) -> dict[str, Any]:
    """ProGAN as the paper trained it (800k images per phase from 4 px), long enough to reach
    `resolution` and stabilise there for one phase; FID is tracked (and `best.pt` kept) but
    never stops the run, so growth cannot be cut short by a plateau at a lower level."""
    return {
        "arch": "progan",
        "resolution": resolution,
        "batch_size": batch_size,
        "kimg": progressive_kimg(resolution),
        "tick_kimg": 20.0,
        "snapshot_ticks": 10,
        "ema_kimg": 10.0,
        "fid_features": "inception",
        "fid_images": 5000,
    }


PRESETS: dict[str, dict[str, Any]] = {
    # A minute on a laptop CPU: enough to watch curves and grids move on the demo data.
    "tiny-cpu": {
        "arch": "dcgan",
        "resolution": 32,
        "batch_size": 16,
        "kimg": 1.0,
        "tick_kimg": 0.1,
        "snapshot_ticks": 2,
        "ema_kimg": 0.5,
        "arch_options": {"base_channels": 32},
    },
    # Seed 000: progressive growing to 32x32, conditional on label combinations, stopped
    # early when FID stops improving. 400k images per phase: 4 -> 32 px is 7 phases (32 px
    # fully faded in at 2400 kimg, then 600 kimg there); the paper's 800k would end the
    # 3000 kimg budget at 16 px, fading in 32.
    "seed000-progan-32": {
        "arch": "progan",
        "resolution": 32,
        "batch_size": 64,
        "kimg": 3000.0,
        "tick_kimg": 10.0,
        "snapshot_ticks": 5,
        "ema_kimg": 10.0,
        "fid_features": "inception",
        "fid_images": 5000,
        "fid_patience": 5,
        "arch_options": {"kimg_per_phase": 400.0},
    },
    # Progressive growing at the resolutions of the resolution benchmark, with the paper's
    # minibatch sizes (ProGAN appendix A.1: 16 up to 128 px, 14 at 256, 6 at 512).
    "progan-128": _progan_preset(128, 16),
    "progan-256": _progan_preset(256, 14),
    "progan-512": _progan_preset(512, 6),
    # Seed 001: conditional StyleGAN2-ADA (ADA target 0.6, EMA 10 kimg, x-flips).
    "seed001-stylegan2-ada": {
        "arch": "stylegan2",
        "resolution": 256,
        "batch_size": 32,
        "kimg": 5000.0,
        "tick_kimg": 4.0,
        "snapshot_ticks": 50,
        "ema_kimg": 10.0,
        "augment": "ada",
        "ada_target": 0.6,
        "ada_kimg": 500.0,
        "mirror": True,
        "fid_features": "inception",
        "fid_images": 10000,
    },
}

# What each preset is, for the launch form: the workflow it reproduces, its seed number kept in
# brackets for those who know the seeds by number.
PRESET_LABELS: dict[str, str] = {
    "tiny-cpu": "tiny-cpu: a minute on a laptop CPU (demo)",
    "seed000-progan-32": (
        "Benchmark by resolution, classes and samples (Schönfeld et al.): progressive GAN, "
        "32 px (seed 000)"
    ),
    "seed001-stylegan2-ada": (
        "Domain-classifier loss and differential privacy: StyleGAN2-ADA, 256 px (seed 001)"
    ),
    **{
        f"progan-{r}": f"Progressive GAN, {r} px ({progressive_kimg(r):,.0f} kimg, 800 per phase)"
        for r in (128, 256, 512)
    },
}

_FLOATS = {
    "kimg",
    "tick_kimg",
    "ema_kimg",
    "ada_target",
    "ada_kimg",
    "dp_noise_multiplier",
    "dp_max_grad_norm",
    "dp_delta",
    "domain_lambda",
}
_INTS = {"resolution", "batch_size", "snapshot_ticks", "seed", "fid_images", "fid_patience"}
_BOOLS = {"mirror", "amp", "channels_last", "per_class"}
_LIMITS: dict[str, tuple[float, float]] = {
    "resolution": (8, 1024),
    "batch_size": (1, 4096),
    "kimg": (0.001, 100_000),
    "tick_kimg": (0.001, 1000),
    "snapshot_ticks": (1, 10_000),
    "seed": (0, 2**31 - 1),
    "fid_images": (2, 100_000),
    "fid_patience": (0, 1000),
    "ema_kimg": (0.001, 1000),
    "ada_target": (0.0, 1.0),
    "ada_kimg": (0.001, 100_000),
    "dp_noise_multiplier": (0.01, 100.0),
    "dp_max_grad_norm": (1e-4, 1000.0),
    "dp_delta": (1e-12, 0.01),
    "domain_lambda": (0.0, 1000.0),
}
FIELDS = {f.name for f in fields(GanConfig)}
# Fields where None means something (no EMA, no FID, not private...); a job's stored config may
# hold it, while a form leaves a field empty to mean "the preset's value".
_NULLABLE = {f.name for f in fields(GanConfig) if "None" in str(f.type)}


def gan_config(
    values: dict[str, Any], *, preset: str | None, resolutions: tuple[int, ...]
) -> GanConfig:
    """Preset, overridden by every non-empty value; `resolutions` are those the dataset has."""
    # The worker picks the device it has; a notebook calling GanConfig directly gets the CPU.
    merged: dict[str, Any] = {"device": "auto"}
    if preset:
        if preset not in PRESETS:
            raise SpecError("preset", f"Unknown preset {preset!r}; choose {', '.join(PRESETS)}.")
        merged.update(PRESETS[preset])
    for key, raw in values.items():
        if key not in FIELDS:
            raise SpecError(key, f"Unknown option {key!r}.")
        if raw is None or raw == "":
            continue
        merged[key] = _convert(key, raw)
    if preset and merged["arch"] != PRESETS[preset]["arch"] and "arch_options" not in values:
        # A preset's builder options belong to its family (kimg_per_phase means nothing to a
        # DCGAN, whose builder would refuse it when the job starts).
        merged.pop("arch_options", None)
    return _checked(merged, resolutions)


def stored_gan_config(config: Any, *, resolutions: tuple[int, ...]) -> GanConfig:
    """A training job's stored config (GanConfig as a dict, as a clone edits it) through the
    launch form's own checks, so a clone cannot queue what the form would refuse."""
    if not isinstance(config, dict):
        raise SpecError("config", "config must be a mapping of GAN settings.")
    merged: dict[str, Any] = {}
    for key, raw in config.items():
        if key not in FIELDS:
            raise SpecError(key, f"Unknown option {key!r}.")
        if raw is None and key not in _NULLABLE:
            raise SpecError(key, f"{key} needs a value.")
        merged[key] = None if raw is None else _convert(key, raw)
    return _checked(merged, resolutions)


def _checked(merged: dict[str, Any], resolutions: tuple[int, ...]) -> GanConfig:
    config = GanConfig(**merged)
    if config.arch not in ARCHS:
        raise SpecError("arch", f"Unknown architecture {config.arch!r}; choose {', '.join(ARCHS)}.")
    if config.augment not in AUGMENTS:
        raise SpecError("augment", f"Unknown augmentation; choose {', '.join(AUGMENTS)}.")
    if config.resolution not in resolutions:
        stored = ", ".join(str(r) for r in resolutions) or "none"
        raise SpecError(
            "resolution", f"The dataset is stored at {stored} px, not {config.resolution}."
        )
    if config.resolution & (config.resolution - 1):
        raise SpecError("resolution", "GAN resolutions must be powers of two (16, 32, 64...).")
    if config.fid_patience and not config.fid_features:
        raise SpecError("fid_patience", "Early stopping needs FID: choose a feature extractor.")
    if config.dp_noise_multiplier and config.arch not in ("dcgan", "acgan", "stylegan2"):
        raise SpecError(
            "dp_noise_multiplier",
            "Differential privacy works with dcgan, acgan and stylegan2 (WGAN-GP's gradient "
            "penalty pairs real and fake images, and spectral norm cannot be cloned by Opacus).",
        )
    if config.only_class is not None:
        raise SpecError("only_class", "only_class is set by a per-class run for its sub-runs.")
    if config.per_class and config.domain_classifier:
        raise SpecError(
            "per_class",
            "One GAN per class has no class to steer: leave out the domain classifier.",
        )
    if config.domain_lambda and not config.domain_classifier:
        raise SpecError("domain_classifier", "The domain loss needs a classifier file.")
    if config.domain_classifier and not Path(config.domain_classifier).is_file():
        raise SpecError("domain_classifier", f"No file {config.domain_classifier}.")
    if config.fid_features not in (None, "inception"):
        raise SpecError("fid_features", "FID features: inception, or none.")
    return config


def _convert(key: str, raw: Any) -> Any:
    if key in _FLOATS or key in _INTS:
        lo, hi = _LIMITS[key]
        messages = {
            "message": f"{raw!r} is not a number.",
            "out_of_range": f"Choose a value between {lo:g} and {hi:g}.",
        }
        if key in _FLOATS:
            return decimal_number(key, raw, lo, hi, **messages)
        return whole_number(key, raw, int(lo), int(hi), **messages)
    if key in _BOOLS:
        return raw if isinstance(raw, bool) else str(raw).lower() in {"1", "true", "on", "yes"}
    if key == "fid_features":
        return None if str(raw) == "none" else str(raw)
    if key == "arch_options":
        if not isinstance(raw, dict):
            raise SpecError(key, "arch_options must be a mapping.")
        return raw
    return str(raw).strip()


def config_params(config: GanConfig) -> dict[str, Any]:
    return asdict(config)


TRANSLATE_FIELDS = ("resolution", "kimg", "batch_size", "tick_kimg", "snapshot_ticks", "seed")
_ANY_INT = (-(2**63), 2**63 - 1)  # CycleGanConfig.check() then says what a run allows


def translate_config(values: Mapping[str, Any]) -> CycleGanConfig:
    """The CycleGAN form's numbers, parsed (kimg as decimals, the rest whole numbers), as the
    run's typed settings (checked by `app.gans.service.start_translation`)."""
    config: dict[str, Any] = {"device": "auto"}
    for key in TRANSLATE_FIELDS:
        raw = values.get(key, "")
        message = f"{str(raw).strip()!r} is not a number."
        if "kimg" in key:
            config[key] = decimal_number(key, raw, -math.inf, math.inf, message)
        else:
            config[key] = whole_number(key, raw, *_ANY_INT, message)
    return CycleGanConfig(**config)
