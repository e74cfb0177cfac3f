"""A small labelled colour dataset from real photographs shipped in a package.

scikit-learn bundles two colour JPEGs (`sklearn.datasets.load_sample_images`: a Chinese temple,
"china", and a flower, "flower"; CC BY 2.0, see sklearn/datasets/images/README.txt). Each is one
class: `write_colour_folder` cuts crops from it at seeded random places, each crop turned,
flipped and brightened its own way, so no two images of a class are alike, and writes them as
RGB PNGs (or JPEGs) in the folder format (`root/<class>/<image>`). The two classes differ in
colour (the flower is red and green, the temple blue and grey), which a colour pipeline keeps
and a grey one loses.
"""

from __future__ import annotations

import io
from dataclasses import dataclass, field
from functools import cache
from pathlib import Path

import numpy as np
from PIL import Image, ImageEnhance

__all__ = ["CLASSES", "ColourFolder", "colour_crops", "photo", "write_colour_folder"]

CLASSES = ("china", "flower")


@cache
def photo(name: str) -> Image.Image:
    """One of scikit-learn's bundled photographs (427 x 640 RGB)."""
    import sklearn.datasets

    folder = Path(sklearn.datasets.__file__).parent / "images"
    with Image.open(folder / f"{name}.jpg") as im:
        return im.convert("RGB")


def colour_crops(name: str, n: int, *, side: int = 48, seed: int = 0) -> list[Image.Image]:
    """`n` RGB crops of photo `name`, `side` px square, each with its own transform."""
    rng = np.random.default_rng([seed, CLASSES.index(name)])
    source = photo(name)
    crops = []
    for _ in range(n):
        box = int(rng.integers(120, 240))
        x = int(rng.integers(0, source.width - box))
        y = int(rng.integers(0, source.height - box))
        crop = source.crop((x, y, x + box, y + box)).resize((side, side), Image.Resampling.LANCZOS)
        crop = crop.rotate(90 * int(rng.integers(4)))
        if rng.random() < 0.5:
            crop = crop.transpose(Image.Transpose.FLIP_LEFT_RIGHT)
        crop = ImageEnhance.Brightness(crop).enhance(float(rng.uniform(0.8, 1.2)))
        crops.append(crop)
    return crops


@dataclass
class ColourFolder:
    root: Path
    files: dict[str, list[Path]] = field(default_factory=dict)  # class -> written files


def write_colour_folder(
    root: Path, *, per_class: int = 12, side: int = 48, jpeg: bool = False
) -> ColourFolder:
    """`root/china/` and `root/flower/`, `per_class` RGB crops each, as PNG (or JPEG)."""
    result = ColourFolder(root=root)
    for name in CLASSES:
        folder = root / name
        folder.mkdir(parents=True, exist_ok=True)
        for i, crop in enumerate(colour_crops(name, per_class, side=side)):
            out = io.BytesIO()
            crop.save(out, format="JPEG" if jpeg else "PNG", **({"quality": 92} if jpeg else {}))
            path = folder / f"{name}-{i:02d}.{'jpg' if jpeg else 'png'}"
            path.write_bytes(out.getvalue())
            result.files.setdefault(name, []).append(path)
    return result
