"""The manifest of a generator trained elsewhere, checked without torch (the web tier reads it).

    {"name": "my StyleGAN", "latent_size": 512, "classes": ["normal", "pneumonia"],
     "resolution": 256, "channels": 1, "output_range": [-1, 1]}

The module maps z (N, latent_size) float32 and y (N,) int64 class indices into `classes` to
images (N, channels, resolution, resolution) with values in `output_range`.
"""

from __future__ import annotations

import json
import math
from dataclasses import asdict, dataclass
from typing import Any

REQUIRED = ("latent_size", "classes", "resolution", "channels", "output_range")
MAX_LATENT = 8192
MAX_CLASSES = 1000
MAX_RESOLUTION = 2048
CHANNELS = (1, 3)


class ManifestError(ValueError):
    """The manifest is not usable; the message says which field and why."""


@dataclass(frozen=True)
class GeneratorManifest:
    latent_size: int
    classes: tuple[str, ...]
    resolution: int
    channels: int
    output_range: tuple[float, float]
    name: str = ""

    def as_dict(self) -> dict[str, Any]:
        data = asdict(self)
        data["classes"], data["output_range"] = list(self.classes), list(self.output_range)
        return data


def parse_manifest_text(text: str) -> GeneratorManifest:
    try:
        data = json.loads(text)
    except json.JSONDecodeError as exc:
        raise ManifestError(f"The manifest is not JSON: {exc.msg} (line {exc.lineno}).") from None
    return parse_manifest(data)


def _whole(data: dict[str, Any], key: str, low: int, high: int) -> int:
    value = data[key]
    if isinstance(value, bool) or not isinstance(value, int) or not low <= value <= high:
        raise ManifestError(f"{key}: a whole number from {low} to {high}, not {value!r}.")
    return value


def parse_manifest(data: Any) -> GeneratorManifest:
    if not isinstance(data, dict):
        raise ManifestError("The manifest must be a JSON object.")
    missing = [key for key in REQUIRED if key not in data]
    if missing:
        raise ManifestError(
            f"The manifest lacks {', '.join(missing)} (it needs {', '.join(REQUIRED)})."
        )
    latent = _whole(data, "latent_size", 1, MAX_LATENT)
    resolution = _whole(data, "resolution", 4, MAX_RESOLUTION)
    channels = data["channels"]
    if channels not in CHANNELS or isinstance(channels, bool):
        raise ManifestError(f"channels: 1 (grey) or 3 (RGB), not {channels!r}.")
    classes = data["classes"]
    if (
        not isinstance(classes, list)
        or not 1 <= len(classes) <= MAX_CLASSES
        or not all(isinstance(c, str) and c.strip() and len(c) <= 200 for c in classes)
    ):
        raise ManifestError(
            f"classes: a list of 1 to {MAX_CLASSES} class names (text), index i being class i."
        )
    names = tuple(c.strip() for c in classes)
    if len(set(names)) != len(names):
        raise ManifestError("classes: each class name once.")
    bounds = data["output_range"]
    if (
        not isinstance(bounds, list)
        or len(bounds) != 2
        or not all(isinstance(b, int | float) and not isinstance(b, bool) for b in bounds)
        or not all(math.isfinite(b) for b in bounds)
        or not bounds[0] < bounds[1]
    ):
        raise ManifestError("output_range: [low, high] with low < high, e.g. [-1, 1] or [0, 1].")
    name = data.get("name", "")
    if not isinstance(name, str) or len(name) > 200:
        raise ManifestError("name: text of at most 200 characters.")
    return GeneratorManifest(
        latent, names, resolution, int(channels), (float(bounds[0]), float(bounds[1])), name
    )
