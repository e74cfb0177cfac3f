"""Import and subset options as researchers type them (form fields, CLI flags) -> checked values.

The web form and the CLI both go through these parsers, so `--resolutions 32,64` and the form's
"32, 64" mean the same thing and fail with the same message. Errors are `SpecError`s naming
the field, for inline form errors.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from typing import Any

from app.domain.form_values import whole_number
from app.jobs.specs import SpecError
from ml.data.colour import COLOUR_MODES
from ml.data.ct_windows import CT_WINDOW_PRESETS
from ml.data.formats import FORMATS
from ml.data.resize import RULES
from ml.data.versions import SUBSET_KINDS

UNCERTAINTY_POLICIES = ("ignore", "u-ones", "u-zeros")
WINDOW_STACK = "stack"  # brain, subdural and bone windows as three channels
MAX_RESOLUTION = 1024
MAX_RESOLUTIONS = 6
NAME_MAX = 200
_NAME_OK = re.compile(r"^[^\x00-\x1f\x7f]+$")


@dataclass(frozen=True)
class ImportOptions:
    format: str
    resolutions: tuple[int, ...] = (32, 64)
    uncertain: str = "ignore"
    window: str | None = None
    seed: int = 0
    rule: str = "pad"
    format_options: dict[str, Any] = field(default_factory=dict)
    colour: str = "auto"

    def as_params(self) -> dict[str, Any]:
        return {
            "format": self.format,
            "resolutions": list(self.resolutions),
            "uncertain": self.uncertain,
            "window": self.window,
            "seed": self.seed,
            "rule": self.rule,
            "format_options": dict(self.format_options),
            "colour": self.colour,
        }


@dataclass(frozen=True)
class SubsetOptions:
    kind: str
    value: int
    seed: int = 0
    resolutions: tuple[int, ...] | None = None

    def as_params(self) -> dict[str, Any]:
        res = list(self.resolutions) if self.resolutions else None
        return {"kind": self.kind, "value": self.value, "seed": self.seed, "resolutions": res}


def parse_name(raw: str) -> str:
    name = " ".join((raw or "").split())
    if not name:
        raise SpecError("name", "Give the dataset a name.")
    if len(name) > NAME_MAX or not _NAME_OK.match(name):
        raise SpecError("name", f"Use at most {NAME_MAX} printable characters for the name.")
    return name


def parse_resolutions(raw: str | list[int] | tuple[int, ...] | None) -> tuple[int, ...]:
    if raw is None or raw == "":
        raise SpecError("resolutions", "Give at least one resolution, e.g. 32,64.")
    parts = raw if isinstance(raw, list | tuple) else re.split(r"[,\s]+", str(raw).strip())
    values: set[int] = set()
    for part in parts:
        if part == "":
            continue
        try:
            value = int(part)
        except (TypeError, ValueError):
            raise SpecError("resolutions", f"{part!r} is not a whole number of pixels.") from None
        if not 4 <= value <= MAX_RESOLUTION:
            raise SpecError(
                "resolutions", f"Resolutions must be between 4 and {MAX_RESOLUTION}, got {value}."
            )
        values.add(value)
    if not values:
        raise SpecError("resolutions", "Give at least one resolution, e.g. 32,64.")
    if len(values) > MAX_RESOLUTIONS:
        raise SpecError("resolutions", f"At most {MAX_RESOLUTIONS} resolutions per dataset.")
    return tuple(sorted(values))


def parse_import_options(
    fmt: str,
    *,
    resolutions: str | list[int] | tuple[int, ...] | None = "32,64",
    uncertain: str | None = None,
    window: str | None = None,
    seed: int | str = 0,
    rule: str | None = "pad",
    colour: str | None = "auto",
) -> ImportOptions:
    key = (fmt or "").strip().lower().replace("_", "-")
    if key not in FORMATS:
        raise SpecError("format", f"Unknown format {fmt!r}; choose one of {', '.join(FORMATS)}.")
    policy = (uncertain or "ignore").strip().lower()
    if policy not in UNCERTAINTY_POLICIES:
        raise SpecError(
            "uncertain",
            f"Unknown uncertainty policy {policy!r}; choose {', '.join(UNCERTAINTY_POLICIES)}.",
        )
    preset = (window or "").strip().lower() or None
    if preset is not None and preset not in CT_WINDOW_PRESETS and preset != WINDOW_STACK:
        choices = ", ".join([*CT_WINDOW_PRESETS, WINDOW_STACK])
        raise SpecError("window", f"Unknown window {preset!r}; choose one of {choices}.")
    square = (rule or "pad").strip().lower()
    if square not in RULES:
        raise SpecError("rule", f"Unknown rule {square!r}; choose one of {', '.join(RULES)}.")
    tint = (colour or "auto").strip().lower()
    if tint not in COLOUR_MODES:
        choices = ", ".join(COLOUR_MODES)
        raise SpecError("colour", f"Unknown colour {tint!r}; choose one of {choices}.")
    if tint == "rgb" and preset == WINDOW_STACK:
        raise SpecError("colour", "A window stack has its own three channels; it cannot be RGB.")
    if preset == WINDOW_STACK:
        tint = "grey"  # the stack's channels are CT windows, never a colour sample
    format_options = {"policy": policy} if key == "chexpert" else {}
    return ImportOptions(
        format=key,
        resolutions=parse_resolutions(resolutions),
        uncertain=policy,
        window=preset,
        seed=_int("seed", seed, 0, 2**31 - 1),
        rule=square,
        format_options=format_options,
        colour=tint,
    )


def parse_subset_options(
    kind: str,
    value: int | str | None,
    *,
    seed: int | str = 0,
    resolutions: str | list[int] | tuple[int, ...] | None = None,
    available: tuple[int, ...] = (),
) -> SubsetOptions:
    key = (kind or "").strip().lower().replace("-", "_")
    if key not in SUBSET_KINDS:
        raise SpecError("kind", f"Unknown subset kind {kind!r}; choose {', '.join(SUBSET_KINDS)}.")
    number = 0 if key == "all" else _int("value", value, 1, 10_000_000)
    chosen = parse_resolutions(resolutions) if resolutions not in (None, "") else None
    if chosen and available:
        missing = [r for r in chosen if r not in available]
        if missing:
            stored = ", ".join(str(r) for r in available)
            raise SpecError("resolutions", f"{missing} not stored in this dataset (have {stored}).")
    return SubsetOptions(key, number, _int("seed", seed, 0, 2**31 - 1), chosen)


def _int(field_name: str, raw: int | str | None, lo: int, hi: int) -> int:
    return whole_number(field_name, raw, lo, hi, f"Give a whole number between {lo} and {hi:,}.")
