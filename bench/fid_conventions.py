"""How far apart the three Inception resize conventions put the features of one X-ray (issue 17).

The 16 demo chest X-rays (pneumonia-model-package), each made 8-bit grey at `--size` px (PIL
bilinear, as a stored dataset would hold them), go through the packaged Inception-v3 in each
convention of `ml.metrics.features` (antialias: synthbench; tf: TF1 resize_bilinear; clean:
clean-fid's PIL bicubic). Printed: per pair of conventions, the relative L2 distance
|f1 - f2| / |f1| of each image's 2048-d features (median, min, max over the images), and the FID
between the two feature sets of the same images, which would be 0 if the convention did not
matter (16 images < 2048 dimensions: read it as a rough scale only).

    .venv/bin/python bench/fid_conventions.py
    .venv/bin/python bench/fid_conventions.py --size 256
"""

from __future__ import annotations

import argparse
import itertools
import sys
from pathlib import Path

import numpy as np
import torch

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from ml.data.collections import available_collections  # noqa: E402
from ml.metrics.features import RESIZES, InceptionFeatures, extract  # noqa: E402
from ml.metrics.fid import fid  # noqa: E402


def xrays(size: int) -> torch.Tensor:
    from PIL import Image

    images = []
    for path in sorted(available_collections()["paediatric-cxr"].files):
        with Image.open(path) as image:
            grey = image.convert("L").resize((size, size), Image.Resampling.BILINEAR)
        images.append(np.asarray(grey, dtype=np.float32))
    return torch.from_numpy(np.stack(images)).unsqueeze(1) / 127.5 - 1


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--size", type=int, default=128, help="stored image size in px")
    args = parser.parse_args()
    images = xrays(args.size)
    inception = InceptionFeatures()
    feats = {}
    for resize in RESIZES:
        inception.resize = resize
        feats[resize] = extract(inception, images, batch_size=8)
    print(f"{len(images)} demo X-rays at {args.size} px, Inception-v3 pool features")
    print("pair\trelative L2 median [min, max]\tFID between the two")
    for first, second in itertools.combinations(RESIZES, 2):
        a, b = feats[first], feats[second]
        rel = np.linalg.norm(a - b, axis=1) / np.linalg.norm(a, axis=1)
        print(
            f"{first} vs {second}\t{np.median(rel):.3f} [{rel.min():.3f}, {rel.max():.3f}]"
            f"\t{fid(a, b):.2f}"
        )


if __name__ == "__main__":
    main()
